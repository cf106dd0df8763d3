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
is locked for the whole stage (`generation._stage.workdir_lock`), and a damaged input (a malformed or cut-short
line, an id on two lines) is an error naming the file and line.

Every LLM call uses the system prompt "You are a helpful video summarizer." and temperature 0.5 (as the
original), sampled unless `--do_sample false` asks for greedy decoding. A call that fails or whose reply cannot be used (the rewrite must give exactly two paragraphs) is
retried `--call_retries` times with exponential backoff and a new seed; then the boundary falls back to plain
concatenation (no linkage, no summary), recorded in `boundaries` as `{"after", "kind", "status": "fallback",
"reason"}`. A video never fails because a call failed; it fails only when none of its clips has a usable caption.
Prompts are versioned by `PROMPT_VERSION`, recorded in each record's `settings`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from transformers import HfArgumentParser

from generation._failures import record_failure
from generation._llm import LlmCall, call_with_retries
from generation._stage import command_lock, load_records, run_sharded, stage_output, workdir_lock
from generation.backends import BackendArguments, GenerationParams, load_backend
from lovr_common.provenance import is_random_weights

logger = logging.getLogger(__name__)

PROMPT_VERSION = "lovr-fuse-v1"
SYSTEM_PROMPT = "You are a helpful video summarizer."
REWRITE_PROMPT = (
    "The two paragraphs below describe two consecutive clips of a video. Rewrite them so that the first one leads "
    "naturally into the second. Preserve facts, add temporal transition words where they help, and remove "
    "repetitive content. Output only the two modified paragraphs separated by a newline.\n\n"
    "Paragraph 1:\n{before}\n\nParagraph 2:\n{after}"
)
LINKAGE_PROMPT = (
    "The first paragraph below ends one part of a video and the second paragraph begins the next part. Write one "
    "short paragraph (one to three sentences) that links them: what changes between the two parts and how the "
    "story moves on. Preserve facts and do not repeat the paragraphs. Output only the linking paragraph.\n\n"
    "End of the first part:\n{before}\n\nStart of the next part:\n{after}"
)
SUMMARY_PROMPT = (
    "Below is the opening sentence of every clip of a video, in order. Write one paragraph that summarizes the "
    "whole video: its setting, main events and overall style. Start with 'Overall, the video'. Output only the "
    "paragraph.\n\n{clips}"
)
# Long videos have ~90 clips: the summary reads each clip's first sentence, capped to stay within a context window.
SUMMARY_INPUT_CHARS = 12_000
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.DOTALL)


@dataclass
class FuseConfig:
    """Arguments of `generation.fuse` (the model is chosen with `BackendArguments`).

    Args:
        workdir (`str`): the run folder.
        cluster_size (`int`, *optional*, defaults to 10): consecutive clips per cluster (LoVR: 10).
        temperature (`float`, *optional*, defaults to 0.5): sampling temperature of every call (LoVR: 0.5).
        max_new_tokens (`int`, *optional*, defaults to 1024): most tokens per call.
        seed (`int`, *optional*, defaults to 0): sampling seed of the first try; retry k uses seed + k.
        do_sample (`bool`, *optional*, defaults to True): sample; `--do_sample false` decodes greedily, so that a
            video's caption does not depend on which videos share its batch.
        call_retries (`int`, *optional*, defaults to 2): retries of a failed or unusable call before falling back.
        call_backoff (`float`, *optional*, defaults to 1.0): seconds before the first retry, doubled for each further
            one.
        batch_size (`int`, *optional*, defaults to 4): videos fused together (their calls are batched).
    """

    workdir: str = field(metadata={"help": "Run folder holding segments.jsonl and captions.jsonl."})
    cluster_size: int = field(default=10, metadata={"help": "Consecutive clips per cluster (LoVR: 10)."})
    temperature: float = field(default=0.5, metadata={"help": "Sampling temperature of the LLM (LoVR: 0.5)."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Most tokens generated per call."})
    seed: int = field(default=0, metadata={"help": "Sampling seed of the first try (retry k: seed + k)."})
    do_sample: bool = field(default=True, metadata={"help": "Sample; `--do_sample false` decodes greedily."})
    call_retries: int = field(
        default=2, metadata={"help": "Retries of a failed or unusable call before the fallback."}
    )
    call_backoff: float = field(default=1.0, metadata={"help": "Seconds before the first retry, doubled after."})
    batch_size: int = field(default=4, metadata={"help": "Videos fused together, their LLM calls batched."})

    def __post_init__(self):
        for name in ("cluster_size", "batch_size", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, but got {name}={getattr(self, name)}")
        if self.call_retries < 0 or self.call_backoff < 0:
            raise ValueError(
                f"call_retries and call_backoff must be >= 0, but got {self.call_retries} and {self.call_backoff}"
            )

    def params(self) -> GenerationParams:
        return GenerationParams(
            temperature=self.temperature, top_p=1.0, repetition_penalty=1.0, max_new_tokens=self.max_new_tokens,
            seed=self.seed, do_sample=self.do_sample,
        )  # fmt: skip


def split_paragraphs(caption: str) -> list[str]:
    """A caption's paragraphs (split at blank lines, stripped, non-empty)."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(caption.strip()) if p.strip()]


def parse_two_paragraphs(reply: str) -> tuple[str, str]:
    """The two paragraphs of a rewrite reply (separated by blank lines, or else by single newlines)."""
    for separator in (_PARAGRAPH_BREAK, re.compile(r"\n")):
        parts = [p.strip() for p in separator.split(reply.strip()) if p.strip()]
        if len(parts) == 2:
            return parts[0], parts[1]
    raise ValueError(f"expected two paragraphs separated by a newline, got {reply[:120]!r}")


def parse_paragraph(reply: str) -> str:
    """A linkage or summary reply as one paragraph (inner line breaks folded)."""
    text = " ".join(reply.split())
    if not text:
        raise ValueError("empty reply")
    return text


def first_sentence(paragraphs: list[str]) -> str:
    match = _FIRST_SENTENCE.match(paragraphs[0])
    return match.group(1) if match else paragraphs[0]


def _rewrite_call(clips: list[dict], i: int) -> LlmCall:
    before, after = clips[i]["paragraphs"][-1], clips[i + 1]["paragraphs"][0]
    return LlmCall(SYSTEM_PROMPT, REWRITE_PROMPT.format(before=before, after=after), parse_two_paragraphs)


def _summary_call(clips: list[dict]) -> LlmCall:
    lines = [f"Clip {clip['clip_index']}: {first_sentence(clip['paragraphs'])}" for clip in clips]
    budget = SUMMARY_INPUT_CHARS // max(len(lines), 1)
    text = "\n".join(line if len(line) <= budget else line[: budget - 3] + "..." for line in lines)
    return LlmCall(SYSTEM_PROMPT, SUMMARY_PROMPT.format(clips=text), parse_paragraph)


def _usable_clips(segment: dict, captions: dict[str, dict]) -> tuple[list[dict], list[dict]]:
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


def inputs_digest(clips: list[dict], skipped: list[dict]) -> str:
    """SHA-256 of what a video is fused from: its usable clips' captions, in order, and its skipped clips."""
    inputs = {
        "clips": [[clip["clip_id"], clip["paragraphs"]] for clip in clips],
        "skipped": [[clip["clip_id"], clip["reason"]] for clip in skipped],
    }
    return hashlib.sha256(json.dumps(inputs, ensure_ascii=False).encode()).hexdigest()


class Fuser:
    """Fuses batches of videos with one chat backend; all calls of a pass go to the backend together."""

    def __init__(self, backend, config: FuseConfig, captions: dict[str, dict], settings: dict):
        self.backend = backend
        self.config = config
        self.captions = captions
        self.settings = settings

    def _run(self, calls: list[LlmCall]) -> list:
        return call_with_retries(
            self.backend,
            calls,
            self.config.params(),
            max_retries=self.config.call_retries,
            backoff=self.config.call_backoff,
        )

    def fuse(self, segments: list[dict]) -> list[dict]:
        """One `videos.jsonl` record per segments record."""
        videos = []
        for segment in segments:
            clips, skipped = _usable_clips(segment, self.captions)
            clusters = [
                clips[i : i + self.config.cluster_size] for i in range(0, len(clips), self.config.cluster_size)
            ]
            video = {"segment": segment, "clips": clips, "skipped": skipped, "clusters": clusters, "log": []}
            video["inputs_sha256"] = inputs_digest(clips, skipped)  # before the rewrites change paragraphs in place
            videos.append(video)

        # Boundaries inside clusters, odd ones then even ones: no two calls of a pass share a paragraph.
        for parity in (0, 1):
            jobs = [
                (video, cluster, i)
                for video in videos
                for cluster in video["clusters"]
                for i in range(parity, len(cluster) - 1, 2)
            ]
            outcomes = self._run([_rewrite_call(cluster, i) for _, cluster, i in jobs])
            for (video, cluster, i), outcome in zip(jobs, outcomes, strict=True):
                if outcome.ok:
                    cluster[i]["paragraphs"][-1], cluster[i + 1]["paragraphs"][0] = outcome.value
                video["log"].append(self._boundary(cluster[i]["clip_id"], "rewrite", outcome))

        jobs, calls = [], []
        for video in videos:
            for left, right in zip(video["clusters"], video["clusters"][1:], strict=False):
                before, after = left[-1]["paragraphs"][-1], right[0]["paragraphs"][0]
                jobs.append((video, "linkage", left[-1]["clip_id"]))
                calls.append(
                    LlmCall(SYSTEM_PROMPT, LINKAGE_PROMPT.format(before=before, after=after), parse_paragraph)
                )
            if video["clips"]:
                jobs.append((video, "summary", video["clips"][-1]["clip_id"]))
                calls.append(_summary_call(video["clips"]))
        texts = {}
        for (video, kind, after), outcome in zip(jobs, self._run(calls), strict=True):
            video["log"].append(self._boundary(after, kind, outcome))
            if outcome.ok:
                texts[(video["segment"]["video_id"], kind, after)] = outcome.value
        return [self._record(video, texts) for video in videos]

    @staticmethod
    def _boundary(after: str, kind: str, outcome) -> dict:
        status = "ok" if outcome.ok else "fallback"
        return {"after": after, "kind": kind, "status": status, "reason": None if outcome.ok else outcome.reason}

    def _record(self, video: dict, texts: dict) -> dict:
        segment, video_id = video["segment"], video["segment"]["video_id"]
        blocks = []
        for k, cluster in enumerate(video["clusters"]):
            if k:
                linkage = texts.get((video_id, "linkage", video["clusters"][k - 1][-1]["clip_id"]))
                if linkage:
                    blocks.append(f"Linkage: {linkage}")
            blocks.extend(f"Clip {clip['clip_index']}: " + "\n".join(clip["paragraphs"]) for clip in cluster)
        if video["clips"] and (summary := texts.get((video_id, "summary", video["clips"][-1]["clip_id"]))):
            blocks.append(f"Summary: {summary}")
        record = {
            "video_id": video_id,
            "caption": "\n\n".join(blocks) if blocks else None,
            "clip_ids": [clip["clip_id"] for clip in video["clips"]],
            "num_clips": len(video["clips"]),
            "duration": segment.get("duration"),
            "clusters": [[clip["clip_id"] for clip in cluster] for cluster in video["clusters"]],
            "inputs_sha256": video["inputs_sha256"],
            "boundaries": video["log"],
            "skipped_clips": video["skipped"],
            "settings": self.settings,
            "status": "ok" if video["clips"] else "failed",
        }
        if not video["clips"]:
            record["reason"] = f"none of the video's {len(segment['clips'])} clips has a usable caption"
        return record


def fuse(config: FuseConfig, backend_args: BackendArguments, backend=None) -> dict[str, dict]:
    """Run the stage over every segmented video of `config.workdir` not fused yet; returns every video record."""
    workdir = Path(config.workdir)
    with workdir_lock(workdir, create=False):
        for stage, producer in (("segments", "generation.segment"), ("captions", "generation.caption")):
            if not stage_output(workdir, stage).exists():
                raise ValueError(f"generation.fuse needs {stage_output(workdir, stage)}: run {producer} first")
        segments = [r for r in load_records(workdir, "segments", "video_id").values() if r.get("status") == "ok"]
        captions = load_records(workdir, "captions", "clip_id")
        settings = {
            "model": backend_args.model,
            "endpoint": backend_args.endpoint,
            "prompt_version": PROMPT_VERSION,
            "cluster_size": config.cluster_size,
            "temperature": config.temperature,
            "max_new_tokens": config.max_new_tokens,
            "seed": config.seed,
            "do_sample": config.do_sample,
            "call_retries": config.call_retries,
            "random_weights": is_random_weights(backend_args.model),
        }
        current = {segment["video_id"]: inputs_digest(*_usable_clips(segment, captions)) for segment in segments}

        def up_to_date(record: dict) -> bool:
            return record.get("status") == "ok" and record.get("inputs_sha256") == current.get(record["video_id"])

        fused = load_records(workdir, "videos", "video_id")
        stale = [r for v, r in fused.items() if v in current and r.get("status") == "ok" and not up_to_date(r)]
        if stale and PartialState().is_main_process:
            unknown = [r["video_id"] for r in stale if "inputs_sha256" not in r]
            changed = [r["video_id"] for r in stale if "inputs_sha256" in r]
            for ids, why in (
                (changed, "their clip captions changed"),
                (unknown, "their records predate input digests"),
            ):
                if ids:
                    logger.info("fuse: %d video(s) to fuse again, %s: %s", len(ids), why, ids[:5])
        fuser = None

        def process(batch: list[dict]) -> list[dict]:
            nonlocal fuser
            if fuser is None:  # loaded lazily: a rerun with nothing left to do loads no model
                fuser = Fuser(backend or load_backend(backend_args, PartialState().device), config, captions, settings)
            records = fuser.fuse(batch)
            for record in records:
                if record["status"] == "failed":
                    record_failure(workdir, "fuse", record["video_id"], None, record["reason"])
            return records

        return run_sharded(
            workdir=workdir,
            stage="videos",
            key="video_id",
            items=segments,
            process_batch=process,
            batch_size=config.batch_size,
            is_done=up_to_date,
            desc="fuse",
        )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config, backend_args = HfArgumentParser((FuseConfig, BackendArguments)).parse_args_into_dataclasses(args=argv)
    with command_lock(config.workdir, "generation.fuse"):
        records = fuse(config, backend_args)
    failed = [r for r in records.values() if r["status"] != "ok"]
    fallbacks = sum(b["status"] == "fallback" for r in records.values() for b in r["boundaries"])
    if PartialState().is_main_process:
        print(
            f"fuse: {len(records) - len(failed)} videos fused, {len(failed)} failed, {fallbacks} fallback boundaries"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
