"""Evaluate any model on LoVR: load the dataset, embed (cached, distributed), rank, write the results.

    python -m lovr_metric evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip
    accelerate launch -m lovr_metric evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip

Writes `OUT/results.json` (metrics per granularity with their bootstrap intervals over queries, the protocol and a
fingerprint of the dataset rows, settings, revision, cost per clip and per video in ms with and without decoding,
the video files that failed to decode, and why a requested granularity has no metric), `OUT/per_query.parquet`
(every query's ranks and top ids), `OUT/results.md` and `OUT/pass_at_k.png`. Video files are split between the processes; each writes its own cache
shard and the main process merges them and computes the metrics.

By default every granularity the dataset holds texts for is ranked. A requested granularity that produces no
metric is an error (`NoMetricError`): one the dataset holds no texts for is refused before anything is embedded;
one none of whose items could be embedded (say, an export read without `--video_root`) after the outputs of the
others are written (nothing is written when no granularity ranked).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lovr_common.encoders import FAMILIES, EncoderConfig, EncoderOptions, TextEncoder, load_encoder
from lovr_common.gc_pause import frozen_heap, gc_paused
from lovr_common.image_processors import image_processor_name
from lovr_common.processes import process_state
from lovr_metric.evaluation.data import EvalData, LoVRRows, dataset_fingerprint, load_rows, plan_queries
from lovr_metric.evaluation.embedding import (
    Embedded,
    EmbeddingCache,
    encode_texts,
    encode_videos,
    folder_fingerprint,
    query_keys,
    sync,
    text_key,
)
from lovr_metric.evaluation.frames import FrameSampling
from lovr_metric.evaluation.lovr_original import LoVROriginal
from lovr_metric.evaluation.outputs import RunSettings, check_output_folder, results_record, write_outputs
from lovr_metric.evaluation.protocol import Protocol
from lovr_metric.evaluation.ranking import NoMetricError, Ranking, RankOptions, rank_tasks
from lovr_metric.evaluation.registry import check_servable, get_baseline
from lovr_metric.evaluation.tasks import GRANULARITIES, LOVR_FRAME_INTERVAL, LOVR_TASKS
from lovr_metric.evaluation.uncertainty import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, DEFAULT_SEED, MAX_RESAMPLES

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(os.environ.get("LOVR_EMBEDDING_CACHE", ".cache/lovr-embeddings"))
# The protocols `--protocol` names: the corrected one, and each that reproduces other code (`protocol.py`).
PROTOCOLS = {protocol.name: protocol for protocol in (Protocol(), LoVROriginal())}
# The kind of the record of the query texts' token counts in the text cache (`_token_counts`).
TOKEN_COUNTS = "token_counts"


# The integer options' lowest values, checked when the command line is parsed, and what the values mean.
_LOWEST = {
    "interval": (1, "every interval-th frame is embedded"),
    "num_frames": (1, "frames embedded per clip"),
    "batch_size": (1, "frames per model call"),
    "text_batch_size": (1, "texts per model call"),
    "text_max_length": (1, "tokens per text; the model's tokenizer bounds it further when it is loaded"),
    "num_workers": (0, "0 preprocesses on the main thread"),
    "decode_threads": (0, "0 lets FFmpeg choose"),
    "bootstrap_resamples": (0, "0 for no intervals"),
}


@dataclass
class EvaluateConfig(EncoderOptions):
    """Arguments of `python -m lovr_metric evaluate` (and of `evaluate_model`): the encoder's options
    (`lovr_common.encoders.EncoderOptions`, declared there once; `--revision` is that of `--model`) and these."""

    dataset: str = field(
        kw_only=True, metadata={"help": "An export folder (load_dataset(DIR, 'clips')) or a Hub dataset repo id."}
    )
    model: str = field(
        kw_only=True, metadata={"help": "The clip/video encoder: a Hub id, a local folder or a registry name."}
    )
    output: str = field(
        kw_only=True, metadata={"help": "Folder for results.json, per_query.parquet, results.md and pass_at_k.png."}
    )
    text_model: str | None = field(default=None, metadata={"help": "A separate text encoder (default: --model)."})
    text_revision: str | None = field(default=None, metadata={"help": "Hub revision of --text_model."})
    granularity: list[str] | None = field(
        default=None,
        metadata={
            "help": f"Any of {' '.join(GRANULARITIES)} (default: each one the dataset holds texts for); one "
            "the dataset cannot rank is an error."
        },
    )
    video_root: str | None = field(
        default=None, metadata={"help": "Where clip_path/video_path start (default: --dataset)."}
    )
    interval: int | None = field(
        default=None, metadata={"help": f"Embed every interval-th frame (default: {LOVR_FRAME_INTERVAL})."}
    )
    protocol: str = field(
        default="default",
        metadata={
            "help": "default (the corrected protocol) or lovr-original (the original code's: BGR frames, "
            "pooling and text cleaning as the model's original script, videos from their clips' frames, theme "
            "retrieval both ways)."
        },
    )
    bgr: bool = field(default=False, metadata={"help": "Feed BGR frames, reproducing the original code's defect."})
    resize_in_decoder: bool = field(
        default=False, metadata={"help": "Resize frames with FFmpeg while decoding (faster, slightly other pixels)."}
    )
    batch_size: int = field(default=32, metadata={"help": "Frames (clips for a video tower) per model call."})
    num_workers: int | None = field(
        default=None,
        metadata={
            "help": "Threads preprocessing frames while the model runs (0: none; default: half the cores "
            "beyond the model's and one decoder thread, 0 on 2 cores); never changes the results."
        },
    )
    decode_threads: int | None = field(
        default=None,
        metadata={
            "help": "FFmpeg decoder threads (0: FFmpeg chooses; default: the cores that --num_workers and the "
            "model leave, at least 1); never changes the results."
        },
    )
    text_batch_size: int = field(default=256, metadata={"help": "Texts per model call."})
    k_values: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50, 100], metadata={"help": "Cut-offs k."})
    cache_dir: str = field(
        default=str(DEFAULT_CACHE_DIR),
        metadata={"help": "Embedding cache folder; it also keeps each task's ranks, so a re-run ranks nothing again."},
    )
    bootstrap_resamples: int = field(
        default=DEFAULT_RESAMPLES, metadata={"help": "Resampled query sets of the metrics' intervals (0: none)."}
    )
    bootstrap_seed: int = field(default=DEFAULT_SEED, metadata={"help": "Seed of the bootstrap."})
    confidence: float = field(default=DEFAULT_CONFIDENCE, metadata={"help": "Level of the bootstrap intervals."})

    def __post_init__(self):
        super().__post_init__()
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol={self.protocol!r}: expected one of {list(PROTOCOLS)}")
        PROTOCOLS[self.protocol].check(self)
        for name, (lowest, meaning) in _LOWEST.items():
            value = getattr(self, name)
            if value is not None and value < lowest:
                raise ValueError(f"--{name} {value}: expected an integer >= {lowest} ({meaning})")
        if self.bootstrap_resamples > MAX_RESAMPLES:
            raise ValueError(
                f"--bootstrap_resamples {self.bootstrap_resamples}: expected at most {MAX_RESAMPLES} (the intervals "
                "hold every resample's statistic of every metric in memory)"
            )
        if not self.k_values or min(self.k_values) < 1:
            raise ValueError(f"--k_values {self.k_values}: expected one or more cut-offs k >= 1")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence={self.confidence}: expected a number strictly between 0 and 1")
        if self.granularity is None:
            return
        unknown = sorted(set(self.granularity) - set(GRANULARITIES))
        if unknown or not self.granularity:
            raise ValueError(f"granularity={self.granularity}, expected a non-empty subset of {GRANULARITIES}")
        if len(set(self.granularity)) < len(self.granularity):
            raise ValueError(
                f"granularity={self.granularity} names a granularity more than once: each is ranked once, name it once"
            )


def _encoder_config(config: EvaluateConfig, model: str, revision: str | None) -> EncoderConfig:
    """The `EncoderConfig` of `model` (`--model` or `--text_model`): the command's encoder options, the registry's
    settings of a known baseline (its text length, the family of its route), and `--family` for `--model` only."""
    baseline = get_baseline(model)
    if baseline is not None:
        check_servable(baseline, config.trust_remote_code)
    routed = baseline.route.family if baseline and baseline.route and baseline.route.family in FAMILIES else None
    return EncoderConfig(
        **config.options()
        | {
            "revision": revision,
            "family": (config.family if model == config.model else None) or routed,
            "text_max_length": config.text_max_length or (baseline.text_max_length if baseline else None),
        },
        model=baseline.repo_id if baseline else model,
    )


def _identity(encoder_config: EncoderConfig, encoder, *, text: bool) -> dict:
    """What identifies an encoder's outputs: the cache key and the results' record of the model. The long-text
    policy changes only text embeddings, so it is in the key of texts (`text`) and not of frames; the image
    processor that was loaded changes only frames' pixels. An encoder that says what its outputs depend on
    (`cache_settings`: an endpoint's requests) adds that."""
    model = getattr(encoder, "model", None)
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    own = getattr(encoder, "cache_settings", None)
    return (
        {
            "model": encoder_config.model,
            "revision": encoder_config.revision or commit,
            "fingerprint": folder_fingerprint(encoder_config.model),
            "family": getattr(encoder, "family", type(encoder).__name__),
            "dtype": str(getattr(encoder, "dtype", encoder_config.dtype)),
            "text_max_length": getattr(encoder, "text_max_length", encoder_config.text_max_length),
        }
        | _pixels_or_text(encoder_config, encoder, text)
        | (own() if callable(own) else {})
    )


def _pixels_or_text(encoder_config: EncoderConfig, encoder, text: bool) -> dict:
    """The long-text policy and the text cleaning (None: none) for texts; for frames the image processor class
    (None for an encoder with none to name, such as an adapter, whose preprocessing is its own). A sentence-transformers
    model's prompt of each side, the one applied (its own or the one given), is part of that side's identity."""
    if text:
        prompt = getattr(encoder, "query_prompt", None)
        return {
            "long_text": getattr(encoder, "long_text", encoder_config.long_text),
            "text_cleaning": getattr(encoder, "text_cleaning", None),
        } | ({} if prompt is None else {"query_prompt": prompt})
    name = image_processor_name(encoder)
    prompt = getattr(encoder, "document_prompt", None)
    return {"image_processor": name} | ({} if prompt is None else {"document_prompt": prompt})


def _as_dict(value) -> dict | None:
    return None if value is None else dataclasses.asdict(value)


def _plan(config: EvaluateConfig, rows: LoVRRows, video_root: Path) -> tuple[list[str], EvalData]:
    """The granularities to rank (by default those the dataset holds texts for) and their plan; a requested one
    without texts is refused here, before a model is loaded or anything embedded."""
    requested = config.granularity or list(GRANULARITIES)
    queries = plan_queries(*rows, requested)
    textless = {g: f"the dataset holds no {LOVR_TASKS[g].description}" for g in requested if not queries.queries[g]}
    if textless and (config.granularity is not None or len(textless) == len(requested)):
        raise NoMetricError(Ranking(unranked=textless).no_metric_message(queries, video_root, written=None))
    requested = [g for g in requested if g not in textless]
    return requested, PROTOCOLS[config.protocol].plan(rows, video_root, requested)


@dataclass
class Evaluation:
    """An evaluation ready to embed: what is ranked (`data`), with which encoders and frames, what the results will
    record of it (`run`), and the caches that hold its embeddings."""

    config: EvaluateConfig
    granularities: list[str]
    data: EvalData
    encoder: Any
    text_encoder: Any
    sampling: FrameSampling
    run: RunSettings
    texts: list[str]
    text_cache: EmbeddingCache
    visual_cache: EmbeddingCache
    video_root: Path
    query_keys: dict[str, list[str]]  # per task, the cache key (`text_key`) of each query text, in query order
    # Text cache records made here (the query texts' token counts), written once every process has read the cache.
    new_records: list[dict] = field(default_factory=list)

    @property
    def text_keys(self) -> list[str]:
        """The cache key of each of `texts`."""
        return [key for keys in self.query_keys.values() for key in keys]


def prepare(config: EvaluateConfig, encoder=None, text_encoder=None, planned=None) -> Evaluation:
    """Everything before embedding: the output folder checked, the dataset read and planned (a granularity without
    texts refused), the encoders loaded unless given, the frames and the caches chosen. `planned` is called once
    the rows and the plan are built, before the encoders load (`evaluate_model` freezes them there)."""
    state = process_state()
    video_root = Path(config.video_root or config.dataset)
    check_output_folder(Path(config.output), Path(config.dataset), video_root)
    with gc_paused():
        rows = load_rows(config.dataset)
        granularities, data = _plan(config, rows, video_root)
        if planned is not None:
            planned()

    visual_config = _encoder_config(config, config.model, config.revision)
    text_config = _encoder_config(config, config.text_model or config.model, config.text_revision)
    encoder = encoder or load_encoder(visual_config, need="visual")
    if text_encoder is None:
        same = config.text_model in (None, config.model) and isinstance(encoder, TextEncoder)
        text_encoder = encoder if same else load_encoder(text_config, need="text")
    protocol = PROTOCOLS[config.protocol]
    text_encoder = protocol.text_encoder(config, text_encoder)
    sampling = protocol.sampling(config, encoder)

    texts = [text for queries in data.queries.values() for text, _ in queries]
    keys = query_keys(data)
    visual, text = _identity(visual_config, encoder, text=False), _identity(text_config, text_encoder, text=True)
    root, rank = Path(config.cache_dir), state.process_index
    visual_cache = EmbeddingCache(root, visual_config.model, {**visual, **sampling.settings()}, rank)
    text_cache = EmbeddingCache(root, text_config.model, {**text, "kind": "text"}, rank)
    text_lengths, counted = (
        _token_counts(text_encoder, texts, keys, text_cache) if state.is_main_process else (None, None)
    )
    run = RunSettings(
        dataset=config.dataset,
        k_values=config.k_values,
        visual=visual,
        text=text,
        sampling=sampling.settings(),
        dataset_fingerprint=dataset_fingerprint(rows),
        text_lengths=text_lengths,
        bootstrap={
            "num_resamples": config.bootstrap_resamples,
            "confidence": config.confidence,
            "seed": config.bootstrap_seed,
            "method": "percentile, queries resampled with replacement",
        },
        protocol=protocol.record(config, encoder, text_encoder),
    )
    return Evaluation(
        config,
        granularities,
        data,
        encoder,
        text_encoder,
        sampling,
        run,
        texts,
        text_cache,
        visual_cache,
        video_root,
        keys,
        [] if counted is None else [counted],
    )


def _token_counts(text_encoder, texts: list[str], keys: dict[str, list[str]], cache: EmbeddingCache):
    """How the query texts compare with the text encoder's token limit (`long_text.TokenCounts` as a dict; None for
    an encoder that cannot count them), and the record that keeps them in the encoder's text cache (None when the
    cache has it), under a hash of the texts' keys (`keys`, per task): a re-run on the same texts does not tokenize
    them again. At LoVR's scale that took about a minute with CLIP's tokenizer, six times the ranking
    (`benchmarks/bench_token_counts.py`). The cache folder is that of the text encoder's identity, its tokenizer and
    limit included. The caller writes the record once every process has read the cache (`Evaluation.new_records`)."""
    counts = getattr(text_encoder, "token_counts", None)
    if counts is None:
        return None, None
    digest = text_key("\n".join(key for part in keys.values() for key in part))  # the texts' keys, as one text
    kept = cache.records().get((TOKEN_COUNTS, digest))
    if kept is not None:
        return kept["counts"], None
    found = _as_dict(counts(texts))
    return found, {"kind": TOKEN_COUNTS, "key": digest, "counts": found}


def evaluate_model(config: EvaluateConfig, encoder=None, text_encoder=None) -> dict | None:
    """Run the evaluation; returns the results dict on the main process (None on the others).

    `encoder` / `text_encoder` may be adapters (`lovr_common.encoders` protocols) used instead of
    loading `model`. A video file that does not decode is left out and listed (`failed_videos` in the results).
    Raises `NoMetricError` (a `ValueError`) when a requested granularity produced no metric, saying what was looked
    for; the outputs are written first when another granularity did rank, and not at all when none did.
    """
    state = process_state()
    if state.is_main_process and state.num_processes > 1:
        logger.info("%d processes share the texts and video files to embed", state.num_processes)
    # The rows, the plan and the cache records are frozen out of the collections of the embedding and ranking that
    # follow, each as soon as it is built; the encoders load in between, the collector on (their garbage is theirs).
    # A run that embeds reads the records anew when it merges them (`sync`); the collector is paused from the ranking
    # to the outputs anyway.
    with frozen_heap() as freeze:
        ev = prepare(config, encoder, text_encoder, planned=freeze)
        ev.text_cache.records(), ev.visual_cache.records()  # read now (the collector paused as they are)
        freeze()
        encode_texts(ev.text_encoder, ev.text_cache, ev.texts, config.text_batch_size, ev.text_keys)
        if ev.new_records:  # every process has read the cache by now (encode_texts waits for them)
            ev.text_cache.put_records(ev.new_records)
        sync(ev.text_cache)
        encode_videos(ev.encoder, ev.visual_cache, ev.data, ev.sampling)
        sync(ev.visual_cache)
        if not state.is_main_process:
            return None

        embedded = Embedded(texts=ev.text_cache, items=ev.visual_cache, data=ev.data, keys=ev.query_keys)
        options = RankOptions(
            config.k_values,
            config.bootstrap_resamples,
            config.confidence,
            config.bootstrap_seed,
            PROTOCOLS[config.protocol],
            Path(config.cache_dir),
        )
        # The collector paused from here to the outputs (seconds, not the hours of embedding): the ranks, top ids
        # and rows of per-query values are many small objects, none in a cycle.
        with gc_paused():
            ranking = rank_tasks(ev.granularities, embedded, options)
            if not ranking.metrics:  # an earlier run's results in the same folder are worth more than empty ones
                raise NoMetricError(ranking.no_metric_message(ev.data, ev.video_root, written=None))
            results = results_record(ev.run, ranking, embedded)
            write_outputs(results, ranking.per_query, Path(config.output))
    if ranking.unranked:
        raise NoMetricError(ranking.no_metric_message(ev.data, ev.video_root, Path(config.output) / "results.json"))
    return results
