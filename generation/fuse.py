"""Stage 4: fuse each video's clip captions into one coherent full-video caption.

    accelerate launch -m generation.fuse --workdir runs/demo --model Qwen/Qwen2.5-7B-Instruct
    python -m generation.fuse --workdir runs/demo --model gpt-4o --endpoint https://api.openai.com/v1

Reads `W/segments.jsonl` (clip order) and `W/captions.jsonl`, writes `W/videos.jsonl` (key `video_id`).

Design (the paper gives the cluster size, the boundary rewriting and the example layout; the rest is ours):

1. The clips of a video with a usable caption, in scene order (`clip_index`), are cut into clusters of
   `--cluster_size` (10) consecutive clips. Clips whose caption failed or was rejected in review are skipped and
   listed in `skipped_clips`; clips still pending review take part with their best machine caption.
2. Inside a cluster each clip's caption is a list of paragraphs (split at blank lines). At every boundary between
   two clips the LLM rewrites the last paragraph before it and the first paragraph after it (`REWRITE_PROMPT`)
   so that they connect. All boundaries are rewritten in two batched passes, first the odd ones, then the even
   ones, so that the calls of a pass never touch the same paragraph and are batched across boundaries and videos
   (the original walked the boundaries one by one; a one-paragraph caption is rewritten at both of its ends).
3. Consecutive clusters are joined by a linkage paragraph (`LINKAGE_PROMPT`) written from the last clip of one
   and the first clip of the next, and the video ends with a summary (`SUMMARY_PROMPT`) written from the first
   sentence of every fused clip. Linkages and the summary are generated in one batched pass.

The video caption is laid out as in the paper's example, blocks separated by blank lines, clips numbered by their
scene number (so a skipped clip leaves a gap):

    Clip 1: <caption of scene 1>

    Clip 2: ...
    ...
    Clip 10: ...

    Linkage: <how the story moves from cluster 1 to cluster 2>

    Clip 11: ...
    ...
    Summary: Overall, the video ...

A rerun fuses only what is not done: a video counts as done when its record is ok and its `inputs_sha256`, a digest
of the clip captions it was fused from (and of the skipped clips), still matches `W/captions.jsonl`. A video whose
clip captions changed since, for example by a merged review (`generation.review`), is fused again. The run folder
is locked for the whole stage (`lovr_common.run_folder.workdir_lock`), and a damaged input (a malformed or cut-short
line, an id on two lines) is an error naming the file and line.

Every LLM call uses the system prompt "You are a helpful video summarizer." and temperature 0.5 (as the
original), sampled unless `--do_sample false` asks for greedy decoding. A call that fails or whose reply cannot be used (the rewrite must give exactly two paragraphs) is
retried `--call_retries` times with exponential backoff and a new seed; then the boundary falls back to plain
concatenation (no linkage, no summary), recorded in `boundaries` as `{"after", "kind", "status": "fallback",
"reason"}`. A video never fails because a call failed; it fails only when none of its clips has a usable caption.
The prompts live in `generation._fuse_prompts`, versioned by `PROMPT_VERSION`, recorded in each record's
`settings`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field

from generation._fuse_prompts import PROMPT_VERSION, linkage_call, rewrite_call, split_paragraphs, summary_call
from generation._llm import LlmCall, LlmOutcome, call_with_retries
from generation.backends import BackendArguments, ChatBackend, EndpointOptions, GenerationParams, load_backend
from generation.options import RunFolder, with_defaults
from generation.stage import FailureLog, run_sharded, stage_main
from lovr_common.processes import process_state
from lovr_common.provenance import is_random_weights
from lovr_common.run_folder import (
    CAPTIONS,
    SEGMENTS,
    VIDEOS,
    Boundary,
    CaptionRecord,
    SegmentRecord,
    SkippedClip,
    VideoRecord,
    load_records,
    require_stage_file,
    workdir_lock,
)

logger = logging.getLogger(__name__)


# LoVR fuses at temperature 0.5; fusion leaves top_p and the repetition penalty neutral (they are no options).
FuseParams = with_defaults(
    GenerationParams,
    "FuseParams",
    """Sampling of every fusion call: `GenerationParams` with fusion's defaults (temperature 0.5; top_p and
    repetition_penalty fixed at 1.0). A retried call samples with seed + its retry number; `--do_sample false`
    decodes greedily, so that a video's caption does not depend on which videos share its batch.""",
    defaults={"temperature": 0.5},
    fixed={"top_p": 1.0, "repetition_penalty": 1.0},
)


@dataclass
class FuseConfig(RunFolder):
    """Arguments of `generation.fuse` (sampling is `FuseParams`, the model `BackendArguments`).

    Args:
        workdir (`str`): the run folder holding `segments.jsonl` and `captions.jsonl`.
        cluster_size (`int`, *optional*, defaults to 10): consecutive clips per cluster (LoVR: 10).
        call_retries (`int`, *optional*, defaults to 2): retries of a failed or unusable call before falling back.
        call_backoff (`float`, *optional*, defaults to 1.0): seconds before the first retry, doubled for each further
            one.
        batch_size (`int`, *optional*, defaults to 4): videos fused together (their calls are batched).
    """

    cluster_size: int = field(default=10, metadata={"help": "Consecutive clips per cluster (LoVR: 10)."})
    call_retries: int = field(
        default=2, metadata={"help": "Retries of a failed or unusable call before the fallback (retry k: seed + k)."}
    )
    call_backoff: float = field(default=1.0, metadata={"help": "Seconds before the first retry, doubled after."})
    batch_size: int = field(default=4, metadata={"help": "Videos fused together, their LLM calls batched."})

    def __post_init__(self):
        for name in ("cluster_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, but got {name}={getattr(self, name)}")
        if self.call_retries < 0 or self.call_backoff < 0:
            raise ValueError(
                f"call_retries and call_backoff must be >= 0, but got {self.call_retries} and {self.call_backoff}"
            )


@dataclass
class FuseJob:
    """Everything `generation.fuse` runs with: the stage's arguments, sampling, the fusion model and how its server
    is reached."""

    config: FuseConfig
    params: FuseParams
    backend: BackendArguments
    connection: EndpointOptions = field(default_factory=EndpointOptions)

    @property
    def workdir(self) -> str:
        return self.config.workdir


@dataclass
class FuseSummary:
    """Every videos record of the run folder's segmented videos, by video id."""

    records: dict[str, VideoRecord]

    @property
    def num_failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.records.values())

    @property
    def failed(self) -> bool:
        return self.num_failed > 0

    def report(self) -> str:
        fallbacks = sum(b["status"] == "fallback" for r in self.records.values() for b in r["boundaries"])
        fused = len(self.records) - self.num_failed
        return f"fuse: {fused} videos fused, {self.num_failed} failed, {fallbacks} fallback boundaries"


def _usable_clips(segment: SegmentRecord, captions: dict[str, CaptionRecord]) -> tuple[list[dict], list[SkippedClip]]:
    """The clips to fuse (id, index, paragraphs) in scene order, and the skipped ones with the reason."""
    clips, skipped = [], []
    for clip in sorted(segment["clips"], key=lambda c: c["clip_index"]):
        record = captions.get(clip["clip_id"])
        if record is None:
            reason = "no caption record"
        elif record.get("status") != "ok":
            reason = f"caption failed: {record.get('reason')}"
        elif record.get("review") == "rejected":
            reason = "caption rejected in review"
        elif not split_paragraphs(record.get("caption") or ""):
            reason = "empty caption"
        else:
            clips.append(
                {
                    "clip_id": clip["clip_id"],
                    "clip_index": clip["clip_index"],
                    "paragraphs": split_paragraphs(record["caption"]),
                }
            )
            continue
        skipped.append({"clip_id": clip["clip_id"], "reason": reason})
    return clips, skipped


def inputs_digest(clips: list[dict], skipped: list[SkippedClip]) -> str:
    """SHA-256 of what a video is fused from: its usable clips' captions, in order, and its skipped clips."""
    inputs = {
        "clips": [[clip["clip_id"], clip["paragraphs"]] for clip in clips],
        "skipped": [[clip["clip_id"], clip["reason"]] for clip in skipped],
    }
    return hashlib.sha256(json.dumps(inputs, ensure_ascii=False).encode()).hexdigest()


@dataclass
class VideoFusion:
    """One video on its way through the passes: its clips to fuse (`{"clip_id", "clip_index", "paragraphs"}`, the
    paragraphs rewritten in place), cut into clusters, the texts written between and after them, and every call's
    outcome (`boundaries`)."""

    segment: SegmentRecord
    clips: list[dict]
    skipped: list[SkippedClip]
    clusters: list[list[dict]]
    inputs_sha256: str
    boundaries: list[Boundary] = field(default_factory=list)
    linkages: dict[str, str] = field(default_factory=dict)  # last clip id of a cluster -> the linkage after it
    summary: str | None = None


def _boundary(after: str, kind: str, outcome: LlmOutcome) -> Boundary:
    status = "ok" if outcome.ok else "fallback"
    return {"after": after, "kind": kind, "status": status, "reason": None if outcome.ok else outcome.reason}


class Fuser:
    """Fuses batches of videos with one chat backend; all calls of a pass go to the backend together.

    `fuse(segments)` runs the phases in order: `prepare` (each video's clips and clusters), `rewrite_boundaries`
    (inside clusters, in two passes), `write_links` (linkages and summaries, one pass), then `record`.
    """

    def __init__(
        self,
        backend: ChatBackend,
        config: FuseConfig,
        params: GenerationParams,
        captions: dict[str, CaptionRecord],
        settings: dict,
    ):
        self.backend = backend
        self.config = config
        self.params = params
        self.captions = captions
        self.settings = settings

    def fuse(self, segments: list[SegmentRecord]) -> list[VideoRecord]:
        """One `videos.jsonl` record per segments record."""
        videos = [self.prepare(segment) for segment in segments]
        self.rewrite_boundaries(videos)
        self.write_links(videos)
        return [self.record(video) for video in videos]

    def prepare(self, segment: SegmentRecord) -> VideoFusion:
        """The video's usable clips in clusters of `cluster_size`, and the digest of what it is fused from."""
        clips, skipped = _usable_clips(segment, self.captions)
        size = self.config.cluster_size
        clusters = [clips[i : i + size] for i in range(0, len(clips), size)]
        # The digest is taken before the rewrites change the paragraphs in place.
        return VideoFusion(segment, clips, skipped, clusters, inputs_digest(clips, skipped))

    def rewrite_boundaries(self, videos: list[VideoFusion]) -> None:
        """Rewrite the paragraphs at each boundary inside a cluster: odd boundaries, then even ones, so that no two
        calls of a pass share a paragraph."""
        for parity in (0, 1):
            jobs = [
                (video, cluster, i)
                for video in videos
                for cluster in video.clusters
                for i in range(parity, len(cluster) - 1, 2)
            ]
            outcomes = self._run([rewrite_call(cluster, i) for _, cluster, i in jobs])
            for (video, cluster, i), outcome in zip(jobs, outcomes, strict=True):
                if outcome.ok:
                    cluster[i]["paragraphs"][-1], cluster[i + 1]["paragraphs"][0] = outcome.value
                video.boundaries.append(_boundary(cluster[i]["clip_id"], "rewrite", outcome))

    def write_links(self, videos: list[VideoFusion]) -> None:
        """A linkage between consecutive clusters and a summary per video, in one batched pass."""
        jobs, calls = [], []
        for video in videos:
            for left, right in zip(video.clusters, video.clusters[1:], strict=False):
                before, after = left[-1]["paragraphs"][-1], right[0]["paragraphs"][0]
                jobs.append((video, "linkage", left[-1]["clip_id"]))
                calls.append(linkage_call(before, after))
            if video.clips:
                jobs.append((video, "summary", video.clips[-1]["clip_id"]))
                calls.append(summary_call(video.clips))
        for (video, kind, after), outcome in zip(jobs, self._run(calls), strict=True):
            video.boundaries.append(_boundary(after, kind, outcome))
            if not outcome.ok:
                continue
            if kind == "linkage":
                video.linkages[after] = outcome.value
            else:
                video.summary = outcome.value

    def record(self, video: VideoFusion) -> VideoRecord:
        """The video's record: its caption laid out as in the module docstring, and how it was made."""
        blocks = []
        for k, cluster in enumerate(video.clusters):
            if k and (linkage := video.linkages.get(video.clusters[k - 1][-1]["clip_id"])):
                blocks.append(f"Linkage: {linkage}")
            blocks.extend(f"Clip {clip['clip_index']}: " + "\n".join(clip["paragraphs"]) for clip in cluster)
        if video.summary:
            blocks.append(f"Summary: {video.summary}")
        record: VideoRecord = {
            "video_id": video.segment["video_id"],
            "caption": "\n\n".join(blocks) if blocks else None,
            "clip_ids": [clip["clip_id"] for clip in video.clips],
            "num_clips": len(video.clips),
            "duration": video.segment.get("duration"),
            "clusters": [[clip["clip_id"] for clip in cluster] for cluster in video.clusters],
            "inputs_sha256": video.inputs_sha256,
            "boundaries": video.boundaries,
            "skipped_clips": video.skipped,
            "settings": self.settings,
            "status": "ok" if video.clips else "failed",
        }
        if not video.clips:
            record["reason"] = f"none of the video's {len(video.segment['clips'])} clips has a usable caption"
        return record

    def _run(self, calls: list[LlmCall]) -> list[LlmOutcome]:
        return call_with_retries(
            self.backend,
            calls,
            self.params,
            max_retries=self.config.call_retries,
            backoff=self.config.call_backoff,
        )


def fuse_settings(config: FuseConfig, params: GenerationParams, backend_args: BackendArguments) -> dict:
    """The `settings` of every videos record (see CONTRIBUTING.md)."""
    return {
        "model": backend_args.model,
        "endpoint": backend_args.endpoint,
        "prompt_version": PROMPT_VERSION,
        "cluster_size": config.cluster_size,
        "temperature": params.temperature,
        "max_new_tokens": params.max_new_tokens,
        "seed": params.seed,
        "do_sample": params.do_sample,
        "call_retries": config.call_retries,
        "random_weights": is_random_weights(backend_args.model),
    }


def _log_stale(stale: list[VideoRecord]) -> None:
    """Say which fused videos are fused again, and why."""
    unknown = [r["video_id"] for r in stale if "inputs_sha256" not in r]
    changed = [r["video_id"] for r in stale if "inputs_sha256" in r]
    for ids, why in ((changed, "their clip captions changed"), (unknown, "their records predate input digests")):
        if ids:
            logger.info("fuse: %d video(s) to fuse again, %s: %s", len(ids), why, ids[:5])


def run(job: FuseJob, backend: ChatBackend | None = None) -> FuseSummary:
    """Fuse every segmented video of the run folder not fused yet, or whose clip captions changed since
    (`backend`: a loaded model, else `job.backend`, loaded once there is something to fuse)."""
    config, workdir = job.config, job.config.workdir
    with workdir_lock(workdir, create=False):
        for stage in (SEGMENTS, CAPTIONS):
            require_stage_file(workdir, stage, "generation.fuse")
        segments = [r for r in load_records(workdir, SEGMENTS).values() if r.get("status") == "ok"]
        captions = load_records(workdir, CAPTIONS)
        current = {segment["video_id"]: inputs_digest(*_usable_clips(segment, captions)) for segment in segments}

        def up_to_date(record: VideoRecord) -> bool:
            return record.get("status") == "ok" and record.get("inputs_sha256") == current.get(record["video_id"])

        fused = load_records(workdir, VIDEOS)
        stale = [r for v, r in fused.items() if v in current and r.get("status") == "ok" and not up_to_date(r)]
        if stale and process_state().is_main_process:
            _log_stale(stale)
        fuser = None

        def process(batch: list[SegmentRecord]) -> list[VideoRecord]:
            nonlocal fuser
            if fuser is None:  # loaded lazily: a rerun with nothing left to do loads no model
                model = backend or load_backend(job.backend, process_state().device, job.connection)
                fuser = Fuser(model, config, job.params, captions, fuse_settings(config, job.params, job.backend))
            return fuser.fuse(batch)

        records = run_sharded(
            workdir=workdir,
            stage=VIDEOS,
            items=segments,
            process_batch=process,
            batch_size=config.batch_size,
            is_done=up_to_date,
            failures=FailureLog("fuse", reason=lambda record: record.get("reason")),
            desc="fuse",
        )
    return FuseSummary(records)


def main(argv: list[str] | None = None) -> int:
    return stage_main("generation.fuse", FuseJob, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
