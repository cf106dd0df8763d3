"""Score a run of the original LoVR evaluation code with this toolkit's metrics (`lovr_metric.retrieval_metrics`).

The original evaluates a model in four stages (`encode_text`, `encode_video`, `video_merge`, `calc_pass`); the first
three leave two files, which this module reads:

    text.pt   {"feat": (T, d) tensor, "source": T ids}: every clip caption of all_clip.jsonl (source: the clip id,
              the file stem) then every video caption of all_video.jsonl (source: the video id); optionally
              "theme_feat": (H, d), "theme_src": H clip ids (theme texts)
    video.pt  {"image_feats": (N, d) tensor, "clip_src": N ids or None, "full_src": N ids or None,
              "video_dict_cost", "preprocess_cost", "encode_image_cost": seconds, summed over the videos}:
              one row per clip (clip_src set) or per full video (full_src set)

    python -m lovr_metric.interop score-original --text_pt RUN/text.pt --video_pt RUN/video.pt --name MODEL \
        --output OUT

What is ranked, as `lovr_metric evaluate` ranks it: `clip`, the texts whose source is a clip row's id against every
clip row, and back for the clip rows that have a text; `video`, the same with the full rows; `theme`, the theme
texts against every clip row, and back for the clip rows a theme names (both directions, as the original's
`calc_pass` ranks them). Texts are told apart by their source, not by position (the
original cuts at `len(feat) - 467`), so any number of videos works. A source that names no row at all is skipped:
counted and listed under `unmatched_texts` in results.json and logged (the original would have ranked it and
counted a miss); a source naming both a clip row and a full row is an error. An all-zero row (the original writes
one for a video without frames) ranks nothing: it is left out of the gallery, listed under `zero_rows`, and its
texts are counted in that granularity's `num_skipped_texts`, as the runner does with a video that fails to decode.

`cost_ms` has the runner's shape (milliseconds per clip and per video: decode, preprocess, encode, total with and
without decoding). The original times each video's rows together, so, as its `calc_pass` does, the totals are
shared evenly by row: a clip and a video get the same figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lovr_metric.evaluation.lovr_original import LoVROriginal
from lovr_metric.evaluation.outputs import check_output_folder, write_outputs
from lovr_metric.evaluation.ranking import (
    DirectionRanks,
    NoMetricError,
    RankOptions,
    cutoffs,
    direction_intervals,
    rank_embeddings,
)
from lovr_metric.evaluation.uncertainty import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED

logger = logging.getLogger(__name__)

DEFAULT_K_VALUES = (1, 5, 10, 20, 50, 100)
SHOW_UNMATCHED = 20  # sources listed in results.json; the count covers them all
COST_FIELDS = {"decode": "video_dict_cost", "preprocess": "preprocess_cost", "encode": "encode_image_cost"}


@dataclass(frozen=True)
class OriginalRun:
    """The embeddings of an original run, split by row kind: clip rows, full-video rows, texts, theme texts."""

    clip_ids: list[str]
    clip_feats: torch.Tensor
    video_ids: list[str]
    video_feats: torch.Tensor
    text_sources: list[str]
    text_feats: torch.Tensor
    theme_sources: list[str]
    theme_feats: torch.Tensor | None
    costs: dict[str, float]


def load_original_run(text_pt: str | os.PathLike, video_pt: str | os.PathLike, trust_pickle: bool = False):
    """Read and check `text.pt` and `video.pt`; raises `ValueError` naming the file and what is wrong."""
    texts, videos = _load(text_pt, trust_pickle), _load(video_pt, trust_pickle)
    text_feats, text_sources = _matrix(texts, "feat", text_pt), _ids(texts, "source", text_pt)
    _same_length(text_feats, text_sources, "feat", "source", text_pt)
    theme_feats, theme_sources = None, []
    if "theme_feat" in texts or "theme_src" in texts:
        theme_feats, theme_sources = _matrix(texts, "theme_feat", text_pt), _ids(texts, "theme_src", text_pt)
        _same_length(theme_feats, theme_sources, "theme_feat", "theme_src", text_pt)
    for key, feats, sources in (("feat", text_feats, text_sources), ("theme_feat", theme_feats, theme_sources)):
        zero = [] if feats is None else _zero_row_ids(sources, feats)
        if zero:
            raise ValueError(f"{text_pt}: the {key} row of text {zero[0]!r} is all zero; expected text embeddings")
    feats = _matrix(videos, "image_feats", video_pt)
    clip_src, full_src = _ids(videos, "clip_src", video_pt, none=True), _ids(videos, "full_src", video_pt, none=True)
    _same_length(feats, clip_src, "image_feats", "clip_src", video_pt)
    _same_length(feats, full_src, "image_feats", "full_src", video_pt)
    both = [i for i, (c, f) in enumerate(zip(clip_src, full_src, strict=True)) if (c is None) == (f is None)]
    if both:
        raise ValueError(
            f"{video_pt}: row {both[0]} has clip_src={clip_src[both[0]]!r} and full_src={full_src[both[0]]!r} "
            f"({len(both)} such row(s)); expected exactly one of them set per row"
        )
    clip_rows = [i for i, c in enumerate(clip_src) if c is not None]
    video_rows = [i for i, f in enumerate(full_src) if f is not None]
    return OriginalRun(
        clip_ids=_unique([clip_src[i] for i in clip_rows], "clip_src", video_pt),
        clip_feats=feats[clip_rows],
        video_ids=_unique([full_src[i] for i in video_rows], "full_src", video_pt),
        video_feats=feats[video_rows],
        text_sources=text_sources,
        text_feats=text_feats,
        theme_sources=theme_sources,
        theme_feats=theme_feats,
        costs=_costs(videos, video_pt),
    )


def _load(path, trust_pickle: bool) -> dict:
    if not Path(path).is_file():
        raise ValueError(f"{path} is not a file; expected a .pt file written by the original LoVR evaluation")
    try:
        data = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"{path} holds objects other than tensors, lists, strings and numbers (e.g. a pandas Series as "
            f"theme_src): {str(err).splitlines()[0]}; if you trust the file, pass --trust_pickle to unpickle it"
        ) from err
    except Exception as err:  # torch raises RuntimeError, EOFError, zipfile errors, ... on a file it cannot read
        raise ValueError(f"{path} cannot be read by torch.load: {type(err).__name__}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}; expected the dict the original evaluation saves")
    return data


def _matrix(data: dict, key: str, path) -> torch.Tensor:
    if key not in data:
        raise ValueError(f"{path} has no {key!r} (it has {sorted(data)}); expected a file of the original evaluation")
    value = data[key]
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or not value.is_floating_point():
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{path}: {key} is {shape}; expected a 2-D float tensor, one row per item")
    return value.float()


def _ids(data: dict, key: str, path, none: bool = False) -> list:
    if key not in data:
        raise ValueError(f"{path} has no {key!r} (it has {sorted(data)}); expected a file of the original evaluation")
    value = data[key]
    value = value.tolist() if hasattr(value, "tolist") else value  # a pandas Series, with --trust_pickle
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{path}: {key} is a {type(value).__name__}; expected a list of ids")
    bad = [i for i, v in enumerate(value) if not (isinstance(v, str) or (none and v is None))]
    if bad:
        expected = "a string or None" if none else "a string"
        raise ValueError(f"{path}: {key}[{bad[0]}] is {value[bad[0]]!r}; expected {expected} per item")
    return list(value)


def _same_length(feats: torch.Tensor, ids: list, feats_key: str, ids_key: str, path) -> None:
    if feats.shape[0] != len(ids):
        raise ValueError(
            f"{path}: {feats_key} has {feats.shape[0]} rows but {ids_key} {len(ids)} ids; expected one each"
        )


def _unique(ids: list[str], key: str, path) -> list[str]:
    seen: set[str] = set()
    twice = [i for i in ids if i in seen or seen.add(i)]
    if twice:
        raise ValueError(f"{path}: {key} names {twice[0]!r} on several rows; expected one row per clip and video")
    return ids


def _costs(videos: dict, path) -> dict[str, float]:
    """The run's total seconds per cost part; empty when the file holds none of the cost fields."""
    found = {part: videos[key] for part, key in COST_FIELDS.items() if key in videos}
    if not found:
        return {}
    bad = {
        k: v
        for k, v in found.items()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
    }
    if bad or len(found) < len(COST_FIELDS):
        raise ValueError(
            f"{path}: cost fields {dict((COST_FIELDS[k], v) for k, v in found.items())}; expected all of "
            f"{list(COST_FIELDS.values())} as finite seconds"
        )
    return {part: float(value) for part, value in found.items()}


def cost_ms(run: OriginalRun) -> dict[str, dict[str, float]]:
    """Milliseconds per clip and per video (the runner's `cost_ms` shape), the run's totals shared evenly by row."""
    rows = len(run.clip_ids) + len(run.video_ids)
    if not run.costs or not rows:
        return {}
    per_row = {part: 1000 * seconds / rows for part, seconds in run.costs.items()}
    per_row["total_with_io"] = per_row["decode"] + per_row["preprocess"] + per_row["encode"]
    per_row["total_without_io"] = per_row["preprocess"] + per_row["encode"]
    kinds = [kind for kind, ids in (("clip", run.clip_ids), ("video", run.video_ids)) if ids]
    return {kind: dict(per_row) for kind in kinds}


@dataclass
class ScoreOriginalConfig:
    """Options of `score-original`."""

    text_pt: str = field(metadata={"help": "The run's text.pt (encode_text)."})
    video_pt: str = field(metadata={"help": "The run's merged video.pt (video_merge)."})
    output: str = field(metadata={"help": "Folder for results.json, per_query.parquet, results.md, pass_at_k.png."})
    name: str = field(default="lovr-original-run", metadata={"help": "The model's name, as results.json shows it."})
    k_values: list[int] = field(default_factory=lambda: list(DEFAULT_K_VALUES), metadata={"help": "Cut-offs k."})
    random_weights: bool = field(
        default=False, metadata={"help": "The run's model had random weights (a stand-in): label it meaningless."}
    )
    bootstrap_resamples: int = field(
        default=DEFAULT_RESAMPLES, metadata={"help": "Resampled query sets of the metrics' intervals (0: none)."}
    )
    bootstrap_seed: int = field(default=DEFAULT_SEED, metadata={"help": "Seed of the bootstrap."})
    confidence: float = field(default=DEFAULT_CONFIDENCE, metadata={"help": "Level of the bootstrap intervals."})
    trust_pickle: bool = field(
        default=False,
        metadata={"help": "Unpickle objects beyond tensors and lists (e.g. a pandas theme_src): trusted files only."},
    )

    def __post_init__(self):
        bad = [k for k in self.k_values if isinstance(k, bool) or not isinstance(k, int) or k < 1]
        if not self.k_values or bad:
            raise ValueError(f"k_values={self.k_values!r}; expected positive integers")
        if self.bootstrap_resamples < 0:
            raise ValueError(f"bootstrap_resamples={self.bootstrap_resamples}: expected 0 (no intervals) or more")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence={self.confidence}: expected a number strictly between 0 and 1")


@dataclass(frozen=True)
class _Granularity:
    """Texts of one granularity (rows of `feats`, each naming its relevant item) and the gallery they rank."""

    name: str
    feats: torch.Tensor
    targets: list[str]
    gallery_feats: torch.Tensor
    gallery_ids: list[str]
    directions: tuple[str, ...]


def score_original_run(
    run: OriginalRun,
    k_values=DEFAULT_K_VALUES,
    num_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict:
    """`metrics` per granularity (the runner's keys) with their bootstrap `intervals`, `per_query` (a
    `DirectionRanks` per granularity and direction), `unranked` (granularity -> why not), `unmatched_texts` and
    `zero_rows` of `run` (see the module docstring)."""
    clip_ids, video_ids = set(run.clip_ids), set(run.video_ids)
    _check_unambiguous(run.text_sources, clip_ids, video_ids)
    granularities = [
        _select("clip", run.text_feats, run.text_sources, clip_ids, run.clip_feats, run.clip_ids),
        _select("video", run.text_feats, run.text_sources, video_ids, run.video_feats, run.video_ids),
    ]
    if run.theme_feats is not None:
        theme = _select("theme", run.theme_feats, run.theme_sources, clip_ids, run.clip_feats, run.clip_ids)
        granularities.append(dataclasses.replace(theme, directions=LoVROriginal.theme_directions))
    unmatched = [s for s in run.text_sources if s not in clip_ids and s not in video_ids]
    unmatched += [s for s in run.theme_sources if s not in clip_ids]
    if unmatched:
        logger.warning("%d text(s) name no clip or video row and are skipped, e.g. %s", len(unmatched), unmatched[:3])
    metrics, unranked, per_query, intervals = {}, {}, [], {}
    options = RankOptions(list(k_values), num_resamples, confidence, seed)
    for granularity in granularities:
        try:
            metrics[granularity.name], directions = _rank(granularity, k_values)
        except NoMetricError as err:
            unranked[granularity.name] = str(err)
            continue
        per_query += directions
        if num_resamples:
            intervals[granularity.name] = direction_intervals(directions, metrics[granularity.name], options)
    zero = [
        i
        for ids, feats in ((run.clip_ids, run.clip_feats), (run.video_ids, run.video_feats))
        for i in _zero_row_ids(ids, feats)
    ]
    return {
        "metrics": metrics,
        "intervals": intervals,
        "bootstrap": {
            "num_resamples": num_resamples,
            "confidence": options.confidence,
            "seed": seed,
            "method": "percentile, queries resampled with replacement",
        },
        "per_query": per_query,
        "unranked": unranked,
        "unmatched_texts": {"count": len(unmatched), "sources": unmatched[:SHOW_UNMATCHED]},
        "zero_rows": zero,
    }


def _check_unambiguous(sources: list[str], clip_ids: set[str], video_ids: set[str]) -> None:
    both = sorted({s for s in sources if s in clip_ids and s in video_ids})
    if both:
        raise ValueError(
            f"text source {both[0]!r} names both a clip row (clip_src) and a video row (full_src) of video.pt "
            f"({len(both)} such source(s)); expected clip and video ids to differ"
        )


def _select(name, feats, sources, known: set[str], gallery_feats, gallery_ids) -> _Granularity:
    rows = [i for i, source in enumerate(sources) if source in known]
    directions = ("text_to_video", "video_to_text")
    return _Granularity(name, feats[rows], [sources[i] for i in rows], gallery_feats, gallery_ids, directions)


def _zero_row_ids(ids: list[str], feats: torch.Tensor) -> list[str]:
    return [ids[i] for i in torch.nonzero(~feats.any(dim=1)).flatten().tolist()]


def _rank(granularity: _Granularity, k_values) -> tuple[dict, list[DirectionRanks]]:
    """The metrics and per-query ranks of one granularity; texts whose item is an all-zero row are skipped and
    counted."""
    if not granularity.targets:
        raise NoMetricError(f"no text of the run names a {_ITEM[granularity.name]} row of video.pt")
    zero = set(_zero_row_ids(granularity.gallery_ids, granularity.gallery_feats))
    keep = [i for i, item in enumerate(granularity.gallery_ids) if item not in zero]
    texts = [i for i, target in enumerate(granularity.targets) if target not in zero]
    if not texts:
        raise NoMetricError(f"every {_ITEM[granularity.name]} its texts name is an all-zero row of video.pt")
    ks = cutoffs(k_values, len(texts), len(keep), f"{_ITEM[granularity.name]}s")
    scores, directions = rank_embeddings(
        granularity.name,
        granularity.directions,
        granularity.feats[texts],
        [granularity.targets[i] for i in texts],
        granularity.gallery_feats[keep],
        [granularity.gallery_ids[i] for i in keep],
        ks,
    )
    scores["num_skipped_texts"] = len(granularity.targets) - len(texts)
    return scores, directions


_ITEM = {"clip": "clip", "video": "video", "theme": "clip"}


def original_results(config: ScoreOriginalConfig, run: OriginalRun, scores: dict) -> dict:
    """The results.json dict: the fields `lovr_metric evaluate` writes that an original run can fill."""
    return {
        "model": config.name,
        "text_model": None,
        "random_weights": config.random_weights,
        "dataset": config.text_pt,
        "source": "lovr-original-run",
        # Another pipeline than `evaluate`'s: `compare` pairs such a run only with another original run's score.
        "protocol": "lovr-original-run",
        "dataset_fingerprint": _rows_fingerprint(run),
        "settings": {
            "text_pt": config.text_pt,
            "video_pt": config.video_pt,
            "k_values": config.k_values,
            "num_clips": len(run.clip_ids),
            "num_videos": len(run.video_ids),
            "num_texts": len(run.text_sources),
            "num_theme_texts": len(run.theme_sources),
            "missing": [],
            "random_weights": config.random_weights,
        },
        **{key: value for key, value in scores.items() if key != "per_query"},
        "cost_ms": cost_ms(run),
        "failed_videos": [],
    }


def _rows_fingerprint(run: OriginalRun) -> str:
    """A hash of the ids the run ranks (texts, clip rows, video rows, themes), in order."""
    digest = hashlib.sha256()
    for ids in (run.text_sources, run.clip_ids, run.video_ids, run.theme_sources):
        digest.update(("\0".join(ids) + "\n").encode())
    return digest.hexdigest()[:16]


def score_original(config: ScoreOriginalConfig) -> dict:
    """Load the run named by `config`, score it and write results.json; return the results. Raises `ValueError`
    when no granularity has anything to rank (nothing is written then)."""
    check_output_folder(Path(config.output))
    run = load_original_run(config.text_pt, config.video_pt, config.trust_pickle)
    scores = score_original_run(
        run, config.k_values, config.bootstrap_resamples, config.bootstrap_seed, config.confidence
    )
    if not scores["metrics"]:
        reasons = "; ".join(f"{name}: {why}" for name, why in scores["unranked"].items())
        raise ValueError(f"nothing to rank in {config.text_pt} against {config.video_pt} ({reasons})")
    for name, why in scores["unranked"].items():
        logger.warning("no metric for %s: %s", name, why)
    results = original_results(config, run, scores)
    write_outputs(results, scores["per_query"], Path(config.output))
    return results
