"""Stage 3: score every clip caption, caption weak clips again with escalating settings, queue the rest for review.

    accelerate launch -m generation.refine --workdir runs/demo --threshold 0.25 \
        --scorer evqa --scorer_model openai/clip-vit-base-patch32 --model Qwen/Qwen2.5-VL-7B-Instruct
    python -m generation.refine --workdir runs/demo --threshold 0.6 --scorer judge --scorer_model Qwen/Qwen2.5-VL-7B-Instruct \
        --model Qwen/Qwen2.5-VL-7B-Instruct

LoVR's dynamic refinement (the paper's figure; not in the original code): every caption of `W/captions.jsonl` is
scored (`generation.scoring`: `--scorer evqa`, EVQAScore-style on a CLIP-like model, or `--scorer judge`, a VLM
judge). A clip scoring below `--threshold` is captioned again (with `--model` / `--endpoint`, as in
`generation.caption`) on the schedule `ESCALATION`, one row per round, each row relative to the first caption:

| round | frames | prompt | temperature / top_p | seed |
|---|---|---|---|---|
| 1 | the caption stage's | the caption stage's | the caption stage's | the caption stage's |
| 2 | x2 (at most `--max_frames`) | the other LoVR prompt (code <-> paper) | 0.9 / 0.001 (LoVR's) | same |
| 3 | x2 (at most `--max_frames`) | the first prompt | 0.7 / 0.9 (real sampling) | + 1 |

Re-captions reach the model as the caption stage's captions do (`--visual_input`: a clip as one video where the
model takes video, else as images), the form used recorded in each attempt's settings.
(LoVR's top_p of 0.001 makes sampling greedy, so round 3 opens top_p: only then do temperature and seed change
anything.) The paper allows 3 rounds (`--max_rounds 3`). Every attempt's caption, score and settings are kept in
`attempts`; the best-scoring attempt becomes the record's `caption` and `settings`, with `score` and `scorer`.
A clip still below the threshold after the last round gets `review: "pending"` and a line in `W/review.jsonl`,
the human queue (`lovr_common.run_folder.review_queue`, merged back by `generation.review`); lines already there
are never overwritten. The paper leaves the
threshold open and it depends on the scorer, so it has no default.

The stage enriches `W/captions.jsonl` in place (stage `captions`, done when `score` is present): resumable and
sharded with `generation.stage.run_sharded`. A clip that cannot be scored keeps its record without `score`
(`refine: {"status": "failed", "reason"}`, also in `W/failures.jsonl`) and is retried by the next run. The run
folder is locked for the whole stage (`lovr_common.run_folder.workdir_lock`), and a damaged `captions.jsonl`,
`segments.jsonl` or `review.jsonl` (a malformed or cut-short line, an id on two lines) is an error naming the file
and line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from generation.backends import BackendArguments, ChatBackend, EndpointOptions, GenerationParams, load_backend
from generation.caption import PROMPTS, CaptionSettings, caption_clips, clips_from_segments, decode_clip_frames
from generation.options import FrameOptions, RunFolder
from generation.outcome import Failed
from generation.scoring import EvqaScorer, JudgeScorer, Scorer, ScoreResult, ScoringItem
from generation.stage import FailureLog, run_sharded, stage_main
from lovr_common.processes import process_state
from lovr_common.provenance import is_random_weights
from lovr_common.run_folder import (
    CAPTIONS,
    CaptionRecord,
    load_records,
    queue_pending,
    require_stage_file,
    workdir_lock,
)
from lovr_common.video import uniform_times

logger = logging.getLogger(__name__)

# Round -> how its caption differs from the first one (see the table in the module docstring).
ESCALATION = {
    2: {"frames_factor": 2, "prompt": "other", "temperature": 0.9, "top_p": 0.001, "seed_offset": 0},
    3: {"frames_factor": 2, "prompt": "first", "temperature": 0.7, "top_p": 0.9, "seed_offset": 1},
}


@dataclass
class RefineConfig(RunFolder):
    """Arguments of `generation.refine` (the re-captions' frames are `FrameOptions`, their model `BackendArguments`).

    Args:
        workdir (`str`): the run folder holding `segments.jsonl` and `captions.jsonl`.
        threshold (`float`): captions scoring below it are captioned again, then queued for review.
        scorer (`str`, *optional*, defaults to "evqa"): "evqa" or "judge".
        scorer_model (`str`): the CLIP-like model (evqa) or the VLM (judge), a Hub id or local folder.
        scorer_frames (`int`, *optional*, defaults to 8): frames per clip shown to the scorer.
        max_rounds (`int`, *optional*, defaults to 3): caption attempts per clip, the first included.
        batch_size (`int`, *optional*, defaults to 8): clips scored and re-captioned together.
    """

    threshold: float = field(metadata={"help": "Captions scoring below it are refined, then queued for review."})
    scorer_model: str = field(metadata={"help": "CLIP-like model (evqa) or VLM (judge): Hub id or local folder."})
    scorer: str = field(default="evqa", metadata={"help": "evqa or judge."})
    scorer_frames: int = field(default=8, metadata={"help": "Frames per clip shown to the scorer."})
    max_rounds: int = field(default=3, metadata={"help": "Caption attempts per clip, the first included (LoVR: 3)."})
    batch_size: int = field(default=8, metadata={"help": "Clips scored and re-captioned together."})

    def __post_init__(self):
        if self.scorer not in ("evqa", "judge"):
            raise ValueError(f"scorer must be 'evqa' or 'judge', but got scorer={self.scorer!r}")
        if not 1 <= self.max_rounds <= 1 + len(ESCALATION):
            raise ValueError(f"max_rounds must be in [1, {1 + len(ESCALATION)}], but got max_rounds={self.max_rounds}")
        for name in ("scorer_frames", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, but got {name}={getattr(self, name)}")


@dataclass
class RefineJob:
    """Everything `generation.refine` runs with: the stage's arguments, the re-captions' frames and sampling, the
    re-captioning model and how its server is reached."""

    config: RefineConfig
    frames: FrameOptions
    params: GenerationParams
    backend: BackendArguments
    connection: EndpointOptions = field(default_factory=EndpointOptions)

    @property
    def workdir(self) -> str:
        return self.config.workdir


@dataclass
class RefineSummary:
    """Every captions record of the run folder's segmented clips, by clip id."""

    records: dict[str, CaptionRecord]

    @property
    def num_unscored(self) -> int:
        """Captioned clips that could not be scored (retried by the next run)."""
        return sum(r.get("status") == "ok" and "score" not in r for r in self.records.values())

    @property
    def failed(self) -> bool:
        return self.num_unscored > 0

    def report(self) -> str:
        scored = [r for r in self.records.values() if "score" in r]
        pending = sum(r.get("review") == "pending" for r in scored)
        return (
            f"refine: {len(scored)} captions scored, {pending} queued for review, "
            f"{self.num_unscored} could not be scored"
        )


def load_scorer(config: RefineConfig, device) -> Scorer:
    """The scorer named by `config.scorer`."""
    random_weights = is_random_weights(config.scorer_model)
    if config.scorer == "evqa":
        return EvqaScorer(
            config.scorer_model, num_frames=config.scorer_frames, device=device, random_weights=random_weights
        )
    backend = load_backend(BackendArguments(model=config.scorer_model), device)
    return JudgeScorer(backend, model=config.scorer_model, num_frames=config.scorer_frames)


def round_settings(
    round_: int, first: dict, max_frames: int, max_side: int | None = None
) -> tuple[CaptionSettings, dict]:
    """The caption settings and sampling overrides of `round_`, derived from the first attempt's settings."""
    step = ESCALATION[round_]
    first_prompt = first.get("prompt_version", "lovr-code-v1")
    other_prompt = next(v for v in PROMPTS if v != first_prompt)
    num_frames = min(max_frames, step["frames_factor"] * (first.get("num_frames") or 8))
    settings = CaptionSettings(
        prompt_version=other_prompt if step["prompt"] == "other" else first_prompt,
        num_frames=num_frames,
        max_frames=max_frames,
        max_side=max_side,
        attempt=round_,
    )
    sampling = {"temperature": step["temperature"], "top_p": step["top_p"], "seed": first.get("seed", 0)}
    sampling["seed"] += step["seed_offset"]
    return settings, sampling


@dataclass
class Refinement:
    """One clip on its way through the rounds: its clip (as `clips_from_segments` gives it), its captions record,
    and every attempt so far (the first is the caption stage's)."""

    clip: dict
    record: CaptionRecord
    attempts: list[dict]

    @property
    def best(self) -> dict:
        """The best-scoring successful attempt; the earliest one on ties."""
        return max((a for a in self.attempts if a["status"] == "ok"), key=lambda a: a["score"])


# Clip id -> the scorer's frames of the clip, or why it has none: the same in every round, so decoded once a batch.
FrameCache = dict[str, list[np.ndarray] | Failed]


class Refiner:
    """Scores and re-captions batches of clips; the models are loaded on first need.

    `refine(batch)` runs the phases in order: `score_first` (the caption stage's captions), `recaption_round` for
    each round while some clip is below the threshold, then `finish` (the record of each clip).
    """

    def __init__(self, job: RefineJob, scorer: Scorer | None = None):
        self.config = job.config
        self.frames = job.frames
        self.backend_args = job.backend
        self.connection = job.connection
        self.params = job.params
        self.device = process_state().device
        self._scorer = scorer
        self._backend = None

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = load_scorer(self.config, self.device)
        return self._scorer

    @property
    def backend(self) -> ChatBackend:
        if self._backend is None:
            self._backend = load_backend(self.backend_args, self.device, self.connection)
        return self._backend

    def refine(self, batch: list[dict], frames: FrameCache | None = None) -> list[CaptionRecord]:
        """One enriched captions record per item (`{"clip": ..., "record": ...}`), in order; `frames` holds the
        scorer's frames of clips already decoded (`scoring_frames`)."""
        frames = {} if frames is None else frames
        refinements, unscorable = self.score_first(batch, frames)
        for round_ in range(2, self.config.max_rounds + 1):
            weak = [r for r in refinements if r.best["score"] < self.config.threshold]
            if not weak:
                break
            self.recaption_round(round_, weak, frames)
        out = {**unscorable, **{r.record["clip_id"]: self.finish(r) for r in refinements}}
        return [out[item["record"]["clip_id"]] for item in batch]

    def score_first(self, batch: list[dict], frames: FrameCache) -> tuple[list[Refinement], dict[str, CaptionRecord]]:
        """The clips whose first caption could be scored, and the records of those that could not (with why)."""
        results = self._score([i["clip"] for i in batch], [i["record"]["caption"] for i in batch], frames)
        refinements, unscorable = [], {}
        for item, result in zip(batch, results, strict=True):
            record = item["record"]
            if isinstance(result, Failed):
                unscorable[record["clip_id"]] = {**record, "refine": {"status": "failed", "reason": result.reason}}
                continue
            first = {
                "caption": record["caption"],
                "score": result.score,
                "details": result.details,
                "settings": record["settings"],
                "status": "ok",
            }
            refinements.append(Refinement(item["clip"], record, [first]))
        return refinements, unscorable

    def recaption_round(self, round_: int, weak: list[Refinement], frames: FrameCache) -> None:
        """Caption the `weak` clips again with the settings of `round_` and score them: one more attempt each.

        One batched generation call per distinct setting of the round (they differ by the first attempt's).
        """
        groups: dict[str, list[tuple[Refinement, CaptionSettings, dict]]] = {}
        for refinement in weak:
            settings, sampling = round_settings(
                round_, refinement.attempts[0]["settings"], self.frames.max_frames, self.frames.max_side
            )
            groups.setdefault(repr((settings, sampling)), []).append((refinement, settings, sampling))
        for group in groups.values():
            _, settings, sampling = group[0]
            clips = [refinement.clip for refinement, *_ in group]
            records = caption_clips(clips, self.backend, settings, replace(self.params, **sampling))
            new = [records[clip["clip_id"]] for clip in clips]
            ok = [(clip, record) for clip, record in zip(clips, new, strict=True) if record["status"] == "ok"]
            results = self._score([c for c, _ in ok], [r["caption"] for _, r in ok], frames) if ok else []
            scores = dict(zip([c["clip_id"] for c, _ in ok], results, strict=True))
            for (refinement, *_), record in zip(group, new, strict=True):
                refinement.attempts.append(_attempt(record, scores.get(record["clip_id"])))

    def finish(self, refinement: Refinement) -> CaptionRecord:
        """The clip's record with its best attempt, every attempt, its score and whether it awaits review."""
        best = refinement.best
        record = {k: v for k, v in refinement.record.items() if k != "refine"}
        record.update(
            caption=best["caption"],
            settings=best["settings"],
            score=best["score"],
            scorer=self.scorer.settings(),
            attempts=refinement.attempts,
            review="pending" if best["score"] < self.config.threshold else None,
        )
        return record

    def scoring_frames(self, batch: list[dict]) -> FrameCache:
        """The scorer's frames of the batch's clips (what `refine` scores the first captions on)."""
        frames: FrameCache = {}
        self._decode([item["clip"] for item in batch], frames)
        return frames

    def _decode(self, clips: Sequence[dict], frames: FrameCache) -> None:
        """Add the scorer's frames of the clips `frames` lacks, one decoding pass per source video."""
        missing = [clip for clip in clips if clip["clip_id"] not in frames]
        num_frames = self.scorer.num_frames

        def times_of(clip: dict) -> list[float]:
            return uniform_times(clip["start"], clip["end"], num_frames) if num_frames else []

        decoded = decode_clip_frames(missing, times_of)
        frames.update((clip["clip_id"], f) for clip, f in zip(missing, decoded, strict=True))

    def _score(self, clips: Sequence[dict], captions: Sequence[str], frames: FrameCache) -> list[ScoreResult | Failed]:
        """One score per clip and caption, or why there is none."""
        self._decode(clips, frames)
        results: dict[str, ScoreResult | Failed] = {}
        items = []
        for clip, caption in zip(clips, captions, strict=True):
            clip_frames = frames[clip["clip_id"]]
            if isinstance(clip_frames, Failed):
                results[clip["clip_id"]] = clip_frames.within("cannot decode frames to score")
            else:
                items.append(ScoringItem(clip["clip_id"], clip_frames, caption))
        results.update(zip([i.clip_id for i in items], self.scorer.score(items) if items else [], strict=True))
        return [results[clip["clip_id"]] for clip in clips]


def _attempt(record: CaptionRecord, result: ScoreResult | Failed | None) -> dict:
    """An attempt entry from a re-caption record and its score (None when the re-caption failed: not scored)."""
    attempt = {"caption": record["caption"], "settings": record["settings"], "status": record["status"]}
    if record["status"] != "ok":
        attempt["reason"] = record["reason"]
    elif isinstance(result, Failed):
        attempt.update(status="failed", reason=result.reason)
    else:
        attempt.update(score=result.score, details=result.details)
    return attempt


def run(job: RefineJob, scorer: Scorer | None = None) -> RefineSummary:
    """Score and refine every captioned clip not scored yet, then queue the weak ones for review (`scorer`: a loaded
    scorer, else the one `job.config` names)."""
    workdir = job.config.workdir
    state = process_state()
    with workdir_lock(workdir, create=False):
        require_stage_file(workdir, CAPTIONS, "generation.refine")
        captions = load_records(workdir, CAPTIONS)
        items = [
            {"clip_id": clip["clip_id"], "clip": clip, "record": captions[clip["clip_id"]]}
            for clip in clips_from_segments(workdir)
            if clip["clip_id"] in captions
        ]
        refiner = Refiner(job, scorer)
        records = run_sharded(
            workdir=workdir,
            stage=CAPTIONS,
            items=items,
            prepare=refiner.scoring_frames,  # the next batch decoded while this one is scored and re-captioned
            process_batch=refiner.refine,
            batch_size=job.config.batch_size,
            # Failed captions are the caption stage's to retry: refine leaves them alone.
            is_done=lambda record: "score" in record or record.get("status") != "ok",
            failures=FailureLog(
                "refine",
                reason=lambda record: None if "score" in record else record["refine"]["reason"],
                path=lambda item: item["clip"]["video_path"],
            ),
            desc="refine",
        )
        if state.is_main_process:
            queue_pending(workdir, records.values())
        state.wait_for_everyone()
    return RefineSummary(records)


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("generation.refine", RefineJob, run, argv)


if __name__ == "__main__":
    sys.exit(main())
