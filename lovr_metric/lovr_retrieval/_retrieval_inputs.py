"""Validation of `retrieval_metrics` inputs: every check names the argument, the value seen and what was expected."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

_SHOW = 5  # how many offending ids or positions an error message lists


@dataclass
class RetrievalInputs:
    """Checked inputs: L2-normalised embeddings on one device and the relevant (text, video) pairs."""

    texts: torch.Tensor
    videos: torch.Tensor
    pair_text: torch.Tensor  # (P,) text row of each relevant pair, sorted by text
    pair_video: torch.Tensor  # (P,) video row of each relevant pair
    num_skipped: int


def from_nested_lists(embeddings):
    """Nested lists (the Space's JSON, quick examples) become float32 arrays; arrays and tensors pass unchanged."""
    if isinstance(embeddings, (list, tuple)):
        return np.asarray(embeddings, dtype=np.float32)
    return embeddings


def _as_matrix(name: str, value, device) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"`{name}` must be a numpy array or a torch tensor, but got {type(value).__name__}.")
    if value.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (num_items, dim), but got shape {tuple(value.shape)}.")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(f"`{name}` must be non-empty, but got shape {tuple(value.shape)}.")
    if not value.is_floating_point():
        raise ValueError(f"`{name}` must hold floats, but got dtype {value.dtype}.")
    finite = torch.isfinite(value).all(dim=1)
    if not finite.all():
        rows = torch.nonzero(~finite).flatten()[:_SHOW].tolist()
        raise ValueError(f"`{name}` must be finite, but rows {rows} hold NaN or inf.")
    return value.to(device)


def unit_rows(name: str, matrix: torch.Tensor, label) -> torch.Tensor:
    """The rows of `matrix` (finite floats) divided by their L2 norms; all-zero rows are refused, each named by
    `label(row)`.

    Squares of float32 entries from about 1e19 up overflow (the norm becomes inf and the row 0), and from about
    1e-19 down they underflow (the row no longer comes out of unit length). The few rows whose norm lies outside
    the range where its sum of squares is exact to rounding are divided by their largest entry first, in float64;
    every other row is divided by its norm directly, as `torch.nn.functional.normalize` does.
    """
    norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
    unit = matrix / norms
    info = torch.finfo(matrix.dtype)
    # Each underflowed square loses at most `tiny`: relative to a squared norm above this, less than rounding.
    smallest = math.sqrt(info.tiny * matrix.shape[1] / info.eps)
    unsafe = torch.nonzero((norms[:, 0] < smallest) | torch.isinf(norms[:, 0])).flatten()
    if unsafe.numel():
        rows = matrix[unsafe].to(torch.float64)
        largest = rows.abs().amax(dim=1, keepdim=True)
        zero = unsafe[largest[:, 0] == 0].tolist()
        if zero:
            shown = ", ".join(label(row) for row in zero[:_SHOW]) + (", ..." if len(zero) > _SHOW else "")
            raise ValueError(
                f"`{name}` has {len(zero)} all-zero rows ({shown}); a zero vector has no direction and ties with "
                "every item: expected rows with a nonzero entry."
            )
        unit[unsafe] = torch.nn.functional.normalize(rows / largest, dim=1).to(matrix.dtype)
    return unit


def _check_ids(name: str, ids, length: int, other: str) -> list:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence) and not isinstance(ids, np.ndarray):
        raise ValueError(f"`{name}` must be a list with one entry per row of `{other}`, but got {type(ids).__name__}.")
    ids = list(ids)
    if len(ids) != length:
        raise ValueError(f"`{name}` has {len(ids)} entries but `{other}` has {length} rows: they must match.")
    return ids


def _relevant_ids(position: int, entry) -> list[str]:
    entries = [entry] if isinstance(entry, str) else entry
    if not isinstance(entries, (list, tuple)) or not entries or not all(isinstance(e, str) for e in entries):
        raise ValueError(
            f"`text_ids[{position}]` must be a video id (str) or a non-empty list of video ids, but got {entry!r}."
        )
    return list(dict.fromkeys(entries))


def check_k_values(k_values, num_videos: int, num_texts: int) -> tuple[int, ...]:
    """Every k must be a positive int no larger than either gallery (videos for texts, texts for videos)."""
    k_values = tuple(k_values) if isinstance(k_values, (list, tuple)) else (k_values,)
    if not k_values:
        raise ValueError("`k_values` must hold at least one k, but got an empty sequence.")
    largest = min(num_videos, num_texts)
    for k in k_values:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= largest:
            raise ValueError(
                f"`k_values` must be integers in [1, {largest}] (the smaller gallery: {num_videos} videos, "
                f"{num_texts} texts), but got {k!r}."
            )
    return tuple(sorted({int(k) for k in k_values}))


def check_inputs(
    text_embeddings, text_ids, video_embeddings, video_ids, skip_missing: bool, device
) -> RetrievalInputs:
    """Validate, move to `device`, L2-normalise (`unit_rows`), and turn the ids into (text, video) pairs."""
    if device is None:
        device = text_embeddings.device if isinstance(text_embeddings, torch.Tensor) else "cpu"
    texts = _as_matrix("text_embeddings", text_embeddings, device)
    videos = _as_matrix("video_embeddings", video_embeddings, device)
    if texts.shape[1] != videos.shape[1]:
        raise ValueError(
            f"`text_embeddings` and `video_embeddings` must have the same dimension, but got {texts.shape[1]} "
            f"and {videos.shape[1]}."
        )
    video_ids = _check_ids("video_ids", video_ids, videos.shape[0], "video_embeddings")
    bad = [v for v in video_ids if not isinstance(v, str)][:_SHOW]
    if bad:
        raise ValueError(f"`video_ids` must be strings, but got {bad}.")
    row_of = {video_id: row for row, video_id in enumerate(video_ids)}
    if len(row_of) != len(video_ids):
        seen, duplicates = set(), []
        for video_id in video_ids:
            if video_id in seen and video_id not in duplicates:
                duplicates.append(video_id)
            seen.add(video_id)
        raise ValueError(f"`video_ids` must be unique, but these appear more than once: {duplicates[:_SHOW]}.")
    text_ids = _check_ids("text_ids", text_ids, texts.shape[0], "text_embeddings")

    kept, pair_text, pair_video, missing = [], [], [], []
    for position, entry in enumerate(text_ids):
        relevant = _relevant_ids(position, entry)
        unknown = [video_id for video_id in relevant if video_id not in row_of]
        if unknown:
            missing.append((position, unknown))
            continue
        pair_text.extend([len(kept)] * len(relevant))
        pair_video.extend(row_of[video_id] for video_id in relevant)
        kept.append(position)
    if missing and not skip_missing:
        shown = ", ".join(f"text_ids[{position}]={ids}" for position, ids in missing[:_SHOW])
        raise ValueError(
            f"{len(missing)} texts name video ids that are not in `video_ids` ({shown}); every relevant id must "
            "be in the gallery (pass skip_missing=True to skip these texts)."
        )
    if not kept:
        raise ValueError(f"No text is left to evaluate: all {len(text_ids)} texts name ids missing from `video_ids`.")
    if missing:
        texts = texts[torch.tensor(kept, device=texts.device)]

    # float64 stays float64; every other float dtype is ranked in float32 (fast matmul, half precision upcast).
    dtype = torch.float64 if torch.float64 in (texts.dtype, videos.dtype) else torch.float32
    return RetrievalInputs(
        texts=unit_rows(
            "text_embeddings", texts.to(dtype), lambda row: f"text_ids[{kept[row]}]={text_ids[kept[row]]!r}"
        ),
        videos=unit_rows("video_embeddings", videos.to(dtype), lambda row: f"video_ids[{row}]={video_ids[row]!r}"),
        pair_text=torch.tensor(pair_text, dtype=torch.long, device=texts.device),
        pair_video=torch.tensor(pair_video, dtype=torch.long, device=texts.device),
        num_skipped=len(missing),
    )
