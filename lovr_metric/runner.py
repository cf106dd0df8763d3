"""Evaluate any model on LoVR: load the dataset, embed (cached, distributed), rank, write the results.

    python -m lovr_metric evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip
    accelerate launch -m lovr_metric evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip

Writes `OUT/results.json` (metrics per granularity, settings, revision, cost per clip and per video in ms with and
without decoding, the video files that failed to decode, and why a requested granularity has no metric),
`OUT/results.md` and `OUT/pass_at_k.png`. Video files are split between the processes; each writes its own cache
shard and the main process merges them and computes the metrics.

By default every granularity the dataset holds texts for is ranked. A requested granularity that produces no
metric is an error (`NoMetricError`): one the dataset holds no texts for is refused before anything is embedded;
one none of whose items could be embedded (say, an export read without `--video_root`) after the outputs of the
others are written (nothing is written when no granularity ranked).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from tqdm.auto import tqdm

from lovr_common.provenance import is_random_weights
from lovr_common.video import VideoError
from lovr_metric.cache import EmbeddingCache, folder_fingerprint, text_key
from lovr_metric.encoders import EncoderConfig, TextEncoder, VideoEncoder, load_encoder
from lovr_metric.frames import COST_PARTS, FrameSampling, VideoJob, embed_job
from lovr_metric.jobs import QUERY_SPLIT, EvalData, plan
from lovr_metric.registry import check_servable, get_baseline
from lovr_metric.report import plot_pass_at_k, results_markdown

logger = logging.getLogger(__name__)

GRANULARITIES = ("clip", "video", "theme")
DEFAULT_CACHE_DIR = Path(os.environ.get("LOVR_EMBEDDING_CACHE", ".cache/lovr-embeddings"))


@dataclass
class EvaluateConfig:
    """Arguments of `python -m lovr_metric evaluate` (and of `evaluate_model`)."""

    dataset: str = field(metadata={"help": "An export folder (load_dataset(DIR, 'clips')) or a Hub dataset repo id."})
    model: str = field(metadata={"help": "The clip/video encoder: a Hub id, a local folder or a registry name."})
    output: str = field(metadata={"help": "Folder for results.json, results.md and pass_at_k.png."})
    text_model: str | None = field(default=None, metadata={"help": "A separate text encoder (default: --model)."})
    revision: str | None = field(default=None, metadata={"help": "Hub revision of --model."})
    text_revision: str | None = field(default=None, metadata={"help": "Hub revision of --text_model."})
    granularity: list[str] | None = field(
        default=None,
        metadata={"help": "Any of clip video theme (default: each one the dataset holds texts for); one the dataset "
                  "cannot rank is an error."},
    )  # fmt: skip
    video_root: str | None = field(
        default=None, metadata={"help": "Where clip_path/video_path start (default: --dataset)."}
    )
    interval: int | None = field(default=None, metadata={"help": "Embed every interval-th frame (default: 10)."})
    num_frames: int | None = field(default=None, metadata={"help": "Embed N uniform frames per clip instead."})
    bgr: bool = field(default=False, metadata={"help": "Feed BGR frames, reproducing the original code's defect."})
    resize_in_decoder: bool = field(
        default=False, metadata={"help": "Resize frames with FFmpeg while decoding (faster, slightly other pixels)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Frames (clips for a video tower) per model call."})
    text_batch_size: int = field(default=256, metadata={"help": "Texts per model call."})
    text_max_length: int | None = field(default=None, metadata={"help": "Token limit (default: registry/tokenizer)."})
    dtype: str = field(default="auto", metadata={"help": "auto (half precision on GPU), float32, float16, bfloat16."})
    family: str | None = field(default=None, metadata={"help": "Force an encoder family (default: detected)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code shipped with the model to run."})
    k_values: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50, 100], metadata={"help": "Cut-offs k."})
    cache_dir: str = field(default=str(DEFAULT_CACHE_DIR), metadata={"help": "Embedding cache folder."})

    def __post_init__(self):
        if self.granularity is None:
            return
        unknown = sorted(set(self.granularity) - set(GRANULARITIES))
        if unknown or not self.granularity:
            raise ValueError(f"granularity={self.granularity}, expected a non-empty subset of {GRANULARITIES}")


def _encoder_config(config: EvaluateConfig, model: str, revision: str | None) -> EncoderConfig:
    baseline = get_baseline(model)
    if baseline is not None:
        check_servable(baseline, config.trust_remote_code)
    return EncoderConfig(
        model=baseline.repo_id if baseline else model,
        revision=revision,
        family=config.family if model == config.model else None,
        dtype=config.dtype,
        text_max_length=config.text_max_length or (baseline.text_max_length if baseline else None),
        trust_remote_code=config.trust_remote_code,
    )


def _sampling(config: EvaluateConfig, encoder) -> FrameSampling:
    common = {"bgr": config.bgr, "resize_in_decoder": config.resize_in_decoder, "batch_size": config.batch_size}
    if isinstance(encoder, VideoEncoder):  # a video tower takes exactly its number of frames
        return FrameSampling(interval=None, num_frames=encoder.num_frames, **common)
    if config.num_frames:
        return FrameSampling(interval=None, num_frames=config.num_frames, **common)
    baseline = get_baseline(config.model)
    interval = config.interval or (baseline.frame_interval if baseline and baseline.frame_interval else 10)
    return FrameSampling(interval=interval, **common)


def _identity(encoder_config: EncoderConfig, encoder) -> dict:
    """What identifies an encoder's outputs: the cache key and the results' record of the model."""
    model = getattr(encoder, "model", None)
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return {
        "model": encoder_config.model,
        "revision": encoder_config.revision or commit,
        "fingerprint": folder_fingerprint(encoder_config.model),
        "family": getattr(encoder, "family", type(encoder).__name__),
        "dtype": str(getattr(encoder, "dtype", encoder_config.dtype)),
        "text_max_length": getattr(encoder, "text_max_length", encoder_config.text_max_length),
    }


def load_rows(dataset: str) -> tuple[list[dict], list[dict], list[dict]]:
    """The rows of the clips (every split), videos and themes (when present) configs of `dataset`."""
    from datasets import get_dataset_config_names, load_dataset

    def rows(name: str) -> list[dict]:
        parts = load_dataset(dataset, name)
        return [row for split in parts.values() for row in split]

    themes = rows("themes") if "themes" in get_dataset_config_names(dataset) else []
    return rows("clips"), rows("videos"), themes


def encode_texts(encoder: TextEncoder, cache: EmbeddingCache, texts: list[str], batch_size: int) -> None:
    """Embed (on this process's share) every text the cache lacks."""
    state = PartialState()
    todo = list(dict.fromkeys(t for t in texts if not cache.has("text", text_key(t))))
    with state.split_between_processes(todo) as mine:
        for start in tqdm(range(0, len(mine), batch_size), desc="texts", disable=not state.is_main_process):
            batch = mine[start : start + batch_size]
            vectors = encoder.encode_text(batch)
            cache.put("text", {text_key(t): v for t, v in zip(batch, vectors.numpy(), strict=True)})


def _job_record(cache: EmbeddingCache, job: VideoJob) -> dict:
    """The cache's record of `job` if it was run on the same file and segments as now, else `{}`."""
    record = cache.records().get(("job", job.job_id), {})
    return record if record.get("signature") == job.signature else {}


def encode_videos(encoder, cache: EmbeddingCache, data: EvalData, sampling: FrameSampling) -> None:
    """Embed (on this process's share) every job the cache has not finished; a file that fails is recorded."""
    state = PartialState()
    todo = [job for job in data.jobs if _job_record(cache, job).get("status") != "ok"]
    with state.split_between_processes(todo) as mine:
        for job in tqdm(mine, desc="videos", disable=not state.is_main_process):
            try:
                result = embed_job(job, encoder, sampling)
            except VideoError as err:
                logger.warning("skipping %s: %s", job.job_id, err)
                cache.put_records([{"kind": "job", "key": job.job_id, "signature": job.signature, "status": "failed",
                                    "path": str(job.path), "reason": err.reason}])  # fmt: skip
                continue
            for kind in ("clip", "video"):
                cache.put(kind, {s.key: result.embeddings[s.key] for s in job.segments if s.kind == kind})
            counts = {kind: sum(s.kind == kind for s in job.segments) for kind in ("clip", "video")}
            cache.put_records([{"kind": "job", "key": job.job_id, "signature": job.signature, "status": "ok",
                                "seconds": result.seconds, "counts": counts, "num_frames": result.num_frames}])  # fmt: skip


def _sync(cache: EmbeddingCache) -> None:
    state = PartialState()
    state.wait_for_everyone()
    if state.is_main_process:
        cache.merge()
    state.wait_for_everyone()
    cache.reload()


def _embedded_ids(cache: EmbeddingCache, data: EvalData) -> set[str]:
    """Ids whose embeddings come from a job that succeeded on the current file and segments."""
    return {s.key for job in data.jobs if _job_record(cache, job).get("status") == "ok" for s in job.segments}


class NoMetricError(ValueError):
    """A requested granularity produced no metric: the dataset holds no texts for it, or none of their items could
    be embedded."""


@dataclass(frozen=True)
class _Task:
    """What one granularity ranks: query texts (text, relevant id) against a gallery of one kind of embedding."""

    queries: list[tuple[str, str]]
    kind: str  # "clip" or "video": the gallery's embeddings
    gallery: list[str]
    directions: tuple[str, ...]
    texts: str  # what the queries are, for messages


def _tasks(data: EvalData) -> dict[str, _Task]:
    both, text_to_item = ("text_to_video", "video_to_text"), ("text_to_video",)
    queries = f"query captions (clips of the '{QUERY_SPLIT}' split)"
    return {
        "clip": _Task(data.clip_queries, "clip", data.clip_ids, both, queries),
        "video": _Task(data.video_queries, "video", data.video_ids, both, "video captions"),
        # theme -> clip only
        "theme": _Task(data.theme_queries, "clip", data.clip_ids, text_to_item, "theme texts (a 'themes' config)"),
    }


def _plan(config: EvaluateConfig, clips, videos, themes, video_root: Path) -> tuple[list[str], EvalData]:
    """The granularities to rank (by default those the dataset holds texts for) and their plan; a requested one
    without texts is refused here, before a model is loaded or anything embedded."""
    requested = config.granularity or list(GRANULARITIES)
    data = plan(clips, videos, themes, video_root, requested)
    tasks = _tasks(data)
    textless = {g: f"the dataset holds no {tasks[g].texts}" for g in requested if not tasks[g].queries}
    if config.granularity is None and textless and len(textless) < len(requested):
        requested = [g for g in requested if g not in textless]
        return requested, plan(clips, videos, themes, video_root, requested)
    if textless:
        raise NoMetricError(_no_metric_message(textless, [], data, video_root, written=None))
    return requested, data


def _metrics(task: _Task, text_cache, item_cache, embedded_ids, k_values) -> dict:
    """Rank the embedded items of the gallery for the queries and back; texts whose item could not be embedded are
    skipped and counted. Raises `NoMetricError` saying why when nothing can be ranked (`task.queries` is never
    empty: `evaluate_model` refuses that before embedding anything)."""
    from lovr_metric import retrieval_metrics

    embedded = [key for key in task.gallery if key in embedded_ids]
    texts = [(text, target) for text, target in task.queries if target in embedded_ids]
    if not texts:
        targets = len({target for _, target in task.queries})
        raise NoMetricError(
            f"none of the {targets} {task.kind}s that its {len(task.queries)} {task.texts} are about could be embedded"
        )
    largest = min(len(embedded), len(texts))
    ks = [k for k in k_values if k <= largest]
    if not ks:
        raise NoMetricError(f"every k of --k_values {k_values} exceeds {largest}, the texts or {task.kind}s to rank")
    scores = retrieval_metrics(
        torch.from_numpy(text_cache.get("text", [text_key(text) for text, _ in texts])),
        [target for _, target in texts],
        torch.from_numpy(item_cache.get(task.kind, embedded)),
        embedded,
        k_values=ks,
    )
    scores = {key: value for key, value in scores.items() if key.startswith(task.directions)}
    scores["num_skipped_texts"] = len(task.queries) - len(texts)
    return scores


def _failed_jobs(cache: EmbeddingCache, data: EvalData) -> list[dict]:
    return [
        {"id": record["key"], "path": record["path"], "reason": record["reason"]}
        for job in data.jobs
        if (record := _job_record(cache, job)).get("status") == "failed"
    ]


def _no_metric_message(unranked: dict[str, str], failed, data: EvalData, video_root: Path, written) -> str:
    """Why each granularity in `unranked` has no metric, what failed, and where the video files were looked for."""
    lines = [f"no metric for granularity {granularity!r}: {reason}" for granularity, reason in unranked.items()]
    if failed:
        lines.append(
            f"{len(failed)} of {len(data.jobs)} video files could not be decoded, e.g. {failed[0]['path']}: "
            f"{failed[0]['reason']}"
        )
    if data.missing:
        lines.append(f"{len(data.missing)} clips or videos have no file, e.g. {data.missing[0]['id']}: "
                     f"{data.missing[0]['reason']}")  # fmt: skip
    if failed or data.missing:
        lines.append(
            f"clip_path and video_path were looked for under {video_root}: if the videos are elsewhere (an export "
            "holds no video files), pass --video_root DIR, the folder those paths start from"
        )
    lines.append(f"the others were ranked: see {written}" if written else "nothing was written")
    return "\n".join(lines)


def _costs(cache: EmbeddingCache, data: EvalData) -> dict[str, dict[str, float]]:
    """Milliseconds per clip and per video, from the cost each job recorded when it ran."""
    totals: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    for job in data.jobs:
        record = _job_record(cache, job)
        if record.get("status") != "ok":
            continue
        for kind, parts in record["seconds"].items():
            counts[kind] = counts.get(kind, 0) + record["counts"][kind]
            for part in COST_PARTS:
                totals.setdefault(kind, dict.fromkeys(COST_PARTS, 0.0))[part] += parts[part]
    return {kind: {p: 1000 * s / counts[kind] for p, s in parts.items()} for kind, parts in totals.items()}


def evaluate_model(config: EvaluateConfig, encoder=None, text_encoder=None) -> dict | None:
    """Run the evaluation; returns the results dict on the main process (None on the others).

    `encoder` / `text_encoder` may be adapters (`lovr_metric.encoders` protocols) used instead of loading `model`.
    A video file that does not decode is left out and listed (`failed_videos` in the results). Raises
    `NoMetricError` (a `ValueError`) when a requested granularity produced no metric, saying what was looked for;
    the outputs are written first when another granularity did rank, and not at all when none did.
    """
    state = PartialState()
    clips, videos, themes = load_rows(config.dataset)
    video_root = Path(config.video_root or config.dataset)
    granularities, data = _plan(config, clips, videos, themes, video_root)

    visual_config = _encoder_config(config, config.model, config.revision)
    text_config = _encoder_config(config, config.text_model or config.model, config.text_revision)
    encoder = encoder or load_encoder(visual_config, need="visual")
    if text_encoder is None:
        same = config.text_model in (None, config.model) and isinstance(encoder, TextEncoder)
        text_encoder = encoder if same else load_encoder(text_config, need="text")
    sampling = _sampling(config, encoder)

    sampling_settings = {k: v for k, v in dataclasses.asdict(sampling).items() if k != "batch_size"}
    visual_identity = _identity(visual_config, encoder)
    text_identity = _identity(text_config, text_encoder)
    root = Path(config.cache_dir)
    rank = state.process_index
    visual_cache = EmbeddingCache(root, visual_config.model, {**visual_identity, **sampling_settings}, rank)
    text_cache = EmbeddingCache(root, text_config.model, {**text_identity, "kind": "text"}, rank)

    texts = [text for queries in (data.clip_queries, data.video_queries, data.theme_queries) for text, _ in queries]
    encode_texts(text_encoder, text_cache, texts, config.text_batch_size)
    _sync(text_cache)
    encode_videos(encoder, visual_cache, data, sampling)
    _sync(visual_cache)
    if not state.is_main_process:
        return None

    tasks, embedded_ids, metrics, unranked = _tasks(data), _embedded_ids(visual_cache, data), {}, {}
    for granularity in granularities:
        try:
            metrics[granularity] = _metrics(
                tasks[granularity], text_cache, visual_cache, embedded_ids, config.k_values
            )
        except NoMetricError as err:
            unranked[granularity] = str(err)
    failed = _failed_jobs(visual_cache, data)
    if not metrics:  # an earlier run's results in the same folder are worth more than empty ones
        raise NoMetricError(_no_metric_message(unranked, failed, data, video_root, written=None))
    results = _write_outputs(
        config, visual_identity, text_identity, sampling_settings, metrics, unranked, failed, visual_cache, data
    )
    if unranked:
        raise NoMetricError(
            _no_metric_message(unranked, failed, data, video_root, Path(config.output) / "results.json")
        )
    return results


def _write_outputs(
    config, visual_identity, text_identity, sampling_settings, metrics, unranked, failed, cache, data
) -> dict:
    random_weights = any(is_random_weights(m) for m in (visual_identity["model"], text_identity["model"]))
    results = {
        "model": visual_identity["model"],
        "text_model": text_identity["model"] if text_identity["model"] != visual_identity["model"] else None,
        "revision": visual_identity["revision"],
        "random_weights": random_weights,
        "dataset": config.dataset,
        "settings": {
            **sampling_settings,
            "granularity": [g for g in GRANULARITIES if g in metrics or g in unranked],
            "k_values": config.k_values,
            "encoder": visual_identity,
            "text_encoder": text_identity,
            "num_clips": len(data.clip_ids),
            "num_videos": len(data.video_ids),
            "missing": data.missing,
            "random_weights": random_weights,
        },
        "metrics": metrics,
        "unranked": unranked,
        "cost_ms": _costs(cache, data),
        "num_video_files": len(data.jobs),
        "num_failed_videos": len(failed),
        "failed_videos": failed,
        "toolkit_version": version("lovr-toolkit"),
    }
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default) + "\n")
    (out / "results.md").write_text(results_markdown(results))
    plot_pass_at_k(results, out / "pass_at_k.png")
    if random_weights:
        logger.warning("random-weight model: every number in %s is meaningless", out)
    return results


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {value!r}")
