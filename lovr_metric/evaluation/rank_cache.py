"""Ranks kept for re-runs: a task's pair ranks and top ids, keyed by everything they depend on.

Researchers re-run `evaluate` to change `--k_values`, the bootstrap or the report, with every embedding cached;
none of those changes a rank. The core's pass (`retrieval_ranks`) is then most of a re-run, and what it gives is a
function of the text and item embeddings (their bytes, dtype and shape), the texts' targets and the gallery ids,
the number of top ids, and the core's code: the key hashes all of them, the code as the bytes of the metric's
source files (XXH3, 128 bits: 0.01 s for the 168 MB of a full-scale clip task, where BLAKE2b took 0.2 s; the key
needs no defence against forgery, only against chance). A hit gives back what
`retrieval_ranks` gave (the pairs, their ranks and the top items) without the normalised embeddings, which nothing
after the ranking reads. The pair ranks are those of the products this machine computed: a cache carried to
another machine may hold ranks that its BLAS would order otherwise where two scores lie within float32 rounding.

Files: `<cache_dir>/ranks/<key>.npz`, written to a temporary name and renamed, so a reader never sees half a file;
an unreadable one is ranked again and replaced, and a folder that cannot be written only costs the next run a
ranking. Delete the folder to free the space (about 7 MB per full-scale clip task).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import zipfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import xxhash

from lovr_metric.lovr_retrieval._retrieval_inputs import RetrievalInputs
from lovr_metric.lovr_retrieval.retrieval import RankedPairs, retrieval_ranks

logger = logging.getLogger(__name__)

RANKS_FOLDER = "ranks"
_FIELDS = ("pair_text", "pair_video", "text_ranks", "video_ranks", "num_skipped")
_TOP_FIELDS = ("text_top", "video_top")  # absent when no top items were asked for


def cached_ranks(cache_dir: Path | None, texts: torch.Tensor, targets, items: torch.Tensor, item_ids, top: int):
    """`retrieval_ranks(texts, targets, items, item_ids, top=top)`, read from `cache_dir` when an earlier run kept
    it, else computed and kept there (`cache_dir=None`: computed, not kept)."""
    if cache_dir is None:
        return retrieval_ranks(texts, targets, items, item_ids, top=top)
    path = Path(cache_dir) / RANKS_FOLDER / f"{ranks_key(texts, targets, items, item_ids, top)}.npz"
    if path.is_file():
        try:
            return _read(path)
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as err:
            logger.warning("%s could not be read (%s): ranking again", path, err)
    ranked = retrieval_ranks(texts, targets, items, item_ids, top=top)
    try:
        _write(path, ranked)
    except OSError as err:
        logger.warning("the ranks could not be kept in %s (%s): a re-run will rank again", path.parent, err)
    return ranked


def ranks_key(texts: torch.Tensor, targets, items: torch.Tensor, item_ids, top: int) -> str:
    """A hash of everything the ranks depend on (the module docstring)."""
    digest = xxhash.xxh3_128()
    header = {"top": top, "toolkit": version("lovr-toolkit"), "targets": list(targets), "item_ids": list(item_ids)}
    digest.update(json.dumps(header).encode())
    digest.update(_core_code())
    for matrix in (texts, items):
        array = np.ascontiguousarray(matrix.detach().cpu().numpy())
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@functools.cache
def _core_code() -> bytes:
    """A hash of the metric's source files (`lovr_metric/lovr_retrieval/*.py`): a change to the ranking code, even
    between two releases, keys the ranks anew."""
    digest = xxhash.xxh3_128()
    for source in sorted((Path(__file__).parents[1] / "lovr_retrieval").glob("*.py")):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.digest()


def _write(path: Path, ranked: RankedPairs) -> None:
    inputs = ranked.inputs
    arrays = dict(
        pair_text=inputs.pair_text,
        pair_video=inputs.pair_video,
        text_ranks=ranked.text_ranks,
        video_ranks=ranked.video_ranks,
        text_top=ranked.text_top,
        video_top=ranked.video_top,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    try:
        kept = {name: value.cpu().numpy() for name, value in arrays.items() if value is not None}
        np.savez(partial, num_skipped=np.int64(inputs.num_skipped), **kept)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _read(path: Path) -> RankedPairs:
    with np.load(path) as stored:
        missing = [name for name in _FIELDS if name not in stored.files]
        if missing:
            raise ValueError(f"lacks {missing}")
        arrays = {name: torch.from_numpy(stored[name]) for name in _FIELDS + _TOP_FIELDS if name in stored.files}
    # The normalised embeddings are not kept: nothing after the ranking reads them.
    empty = torch.empty(0, 0)
    inputs = RetrievalInputs(empty, empty, arrays["pair_text"], arrays["pair_video"], int(arrays["num_skipped"]))
    tops = (arrays.get(name) for name in _TOP_FIELDS)
    return RankedPairs(inputs, arrays["text_ranks"], arrays["video_ranks"], *tops)
