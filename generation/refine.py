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

(LoVR's top_p of 0.001 makes sampling greedy, so round 3 opens top_p: only then do temperature and seed change
anything.) The paper allows 3 rounds (`--max_rounds 3`). Every attempt's caption, score and settings are kept in
`attempts`; the best-scoring attempt becomes the record's `caption` and `settings`, with `score` and `scorer`.
A clip still below the threshold after the last round gets `review: "pending"` and a line in `W/review.jsonl`,
the human queue (see `generation.review`); lines already there are never overwritten. The paper leaves the
threshold open and it depends on the scorer, so it has no default.

The stage enriches `W/captions.jsonl` in place (stage `captions`, done when `score` is present): resumable and
sharded with `generation._stage.run_sharded`. A clip that cannot be scored keeps its record without `score`
(`refine: {"status": "failed", "reason"}`, also in `W/failures.jsonl`) and is retried by the next run. The run
folder is locked for the whole stage (`generation._stage.workdir_lock`), and a damaged `captions.jsonl`,
`segments.jsonl` or `review.jsonl` (a malformed or cut-short line, an id on two lines) is an error naming the file
and line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from accelerate import PartialState
from transformers import HfArgumentParser

from generation._failures import record_failure
from generation._stage import command_lock, load_records, run_sharded, stage_output, workdir_lock
from generation.backends import BackendArguments, GenerationParams, load_backend
from generation.caption import PROMPTS, CaptionSettings, caption_clips, clips_from_segments, decode_clip_frames
from generation.scoring import EvqaScorer, JudgeScorer, Scorer, ScoringItem
from lovr_common.jsonl import read_jsonl, write_jsonl_atomic
from lovr_common.provenance import is_random_weights
from lovr_common.video import uniform_times

logger = logging.getLogger(__name__)

REVIEW_FILE = "review.jsonl"
# Round -> how its caption differs from the first one (see the table in the module docstring).
ESCALATION = {
    2: {"frames_factor": 2, "prompt": "other", "temperature": 0.9, "top_p": 0.001, "seed_offset": 0},
    3: {"frames_factor": 2, "prompt": "first", "temperature": 0.7, "top_p": 0.9, "seed_offset": 1},
}


@dataclass
class RefineConfig:
    """Arguments of `generation.refine` (the re-captioning model is chosen with `BackendArguments`).

    Args:
        workdir (`str`): the run folder holding `segments.jsonl` and `captions.jsonl`.
        threshold (`float`): captions scoring below it are captioned again, then queued for review.
        scorer (`str`, *optional*, defaults to "evqa"): "evqa" or "judge".
        scorer_model (`str`): the CLIP-like model (evqa) or the VLM (judge), a Hub id or local folder.
        scorer_frames (`int`, *optional*, defaults to 8): frames per clip shown to the scorer.
        max_rounds (`int`, *optional*, defaults to 3): caption attempts per clip, the first included.
        max_frames (`int`, *optional*, defaults to 64): cap on the frames of a re-caption.
        max_side (`int`, *optional*): decode frames with their longer side at most this many pixels.
        batch_size (`int`, *optional*, defaults to 8): clips scored and re-captioned together.
    """

    workdir: str = field(metadata={"help": "Run folder holding segments.jsonl and captions.jsonl."})
    threshold: float = field(metadata={"help": "Captions scoring below it are refined, then queued for review."})
    scorer_model: str = field(metadata={"help": "CLIP-like model (evqa) or VLM (judge): Hub id or local folder."})
    scorer: str = field(default="evqa", metadata={"help": "evqa or judge."})
    scorer_frames: int = field(default=8, metadata={"help": "Frames per clip shown to the scorer."})
    max_rounds: int = field(default=3, metadata={"help": "Caption attempts per clip, the first included (LoVR: 3)."})
    max_frames: int = field(default=64, metadata={"help": "Cap on the frames of a re-caption."})
    max_side: int | None = field(default=None, metadata={"help": "Decode frames with this longer side at most."})
    batch_size: int = field(default=8, metadata={"help": "Clips scored and re-captioned together."})

    def __post_init__(self):
        if self.scorer not in ("evqa", "judge"):
            raise ValueError(f"scorer must be 'evqa' or 'judge', but got scorer={self.scorer!r}")
        if not 1 <= self.max_rounds <= 1 + len(ESCALATION):
            raise ValueError(f"max_rounds must be in [1, {1 + len(ESCALATION)}], but got max_rounds={self.max_rounds}")
        for name in ("scorer_frames", "max_frames", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, but got {name}={getattr(self, name)}")


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


class Refiner:
    """Scores and re-captions batches of clips; the models are loaded on first need."""

    def __init__(self, config: RefineConfig, backend_args: BackendArguments, params: GenerationParams, scorer=None):
        self.config = config
        self.backend_args = backend_args
        self.params = params
        self.device = PartialState().device
        self._scorer = scorer
        self._backend = None

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = load_scorer(self.config, self.device)
        return self._scorer

    @property
    def backend(self):
        if self._backend is None:
            self._backend = load_backend(self.backend_args, self.device)
        return self._backend

    def _frames(self, clips: Sequence[dict], decoded: dict) -> None:
        """Fill `decoded` (clip id -> frames or the reason there are none) for the clips it lacks: the scorer's
        frames of a clip are the same in every round, so a batch decodes them once, one pass per source video."""
        missing = [clip for clip in clips if clip["clip_id"] not in decoded]
        num_frames = self.scorer.num_frames

        def times_of(clip: dict) -> list[float]:
            return uniform_times(clip["start"], clip["end"], num_frames) if num_frames else []

        frames = decode_clip_frames(missing, times_of)
        decoded.update((clip["clip_id"], f) for clip, f in zip(missing, frames, strict=True))

    def _score(self, clips: Sequence[dict], captions: Sequence[str], decoded: dict) -> list:
        self._frames(clips, decoded)
        items, results, errors = [], {}, {}
        for clip, caption in zip(clips, captions, strict=True):
            frames = decoded[clip["clip_id"]]
            if isinstance(frames, str):
                errors[clip["clip_id"]] = f"cannot decode frames to score: {frames}"
            else:
                items.append(ScoringItem(clip["clip_id"], list(frames), caption))
        results = dict(zip([i.clip_id for i in items], self.scorer.score(items) if items else [], strict=True))
        return [results.get(clip["clip_id"]) or errors[clip["clip_id"]] for clip in clips]

    def refine(self, batch: list[dict]) -> list[dict]:
        """One enriched captions record per item (`{"clip": ..., "record": ...}`), in order."""
        threshold, out, decoded = self.config.threshold, {}, {}
        states = []
        first_scores = self._score([i["clip"] for i in batch], [i["record"]["caption"] for i in batch], decoded)
        for item, result in zip(batch, first_scores, strict=True):
            record = item["record"]
            if isinstance(result, str) or result.score is None:
                reason = result if isinstance(result, str) else result.reason
                out[record["clip_id"]] = {**record, "refine": {"status": "failed", "reason": reason}}
                continue
            first = {"caption": record["caption"], "score": result.score, "details": result.details,
                     "settings": record["settings"], "status": "ok"}  # fmt: skip
            states.append((item, [first]))
        for round_ in range(2, self.config.max_rounds + 1):
            weak = [(item, attempts) for item, attempts in states if _best(attempts)["score"] < threshold]
            if not weak:
                break
            groups: dict[str, list] = {}  # one batched generation call per distinct setting of the round
            for item, attempts in weak:
                settings, sampling = round_settings(
                    round_, attempts[0]["settings"], self.config.max_frames, self.config.max_side
                )
                groups.setdefault(repr((settings, sampling)), []).append((item, attempts, settings, sampling))
            for group in groups.values():
                _, _, settings, sampling = group[0]
                clips = [item["clip"] for item, *_ in group]
                records = caption_clips(clips, self.backend, settings, replace(self.params, **sampling))
                new = [records[clip["clip_id"]] for clip in clips]
                ok = [(clip, record) for clip, record in zip(clips, new, strict=True) if record["status"] == "ok"]
                results = self._score([c for c, _ in ok], [r["caption"] for _, r in ok], decoded) if ok else []
                scores = dict(zip([c["clip_id"] for c, _ in ok], results, strict=True))
                for (_, attempts, *_), record in zip(group, new, strict=True):
                    attempts.append(_attempt(record, scores.get(record["clip_id"])))
        for item, attempts in states:
            best = _best(attempts)
            record = {k: v for k, v in item["record"].items() if k != "refine"}
            record.update(
                caption=best["caption"],
                settings=best["settings"],
                score=best["score"],
                scorer=self.scorer.settings(),
                attempts=attempts,
                review="pending" if best["score"] < threshold else None,
            )
            out[record["clip_id"]] = record
        return [out[item["record"]["clip_id"]] for item in batch]


def _attempt(record: dict, result) -> dict:
    """An attempt entry from a re-caption record and its score (a `ScoreResult`, a reason, or None if not scored)."""
    attempt = {"caption": record["caption"], "settings": record["settings"], "status": record["status"]}
    if record["status"] != "ok":
        attempt["reason"] = record["reason"]
    elif isinstance(result, str) or result.score is None:
        attempt.update(status="failed", reason=result if isinstance(result, str) else result.reason)
    else:
        attempt.update(score=result.score, details=result.details)
    return attempt


def _best(attempts: list[dict]) -> dict:
    """The best-scoring successful attempt; the earliest one on ties."""
    return max((a for a in attempts if a["status"] == "ok"), key=lambda a: a["score"])


def update_review_queue(workdir: Path, records: dict[str, dict]) -> int:
    """Add the pending clips missing from `W/review.jsonl` (existing lines, perhaps being edited, stay); return count."""
    path = Path(workdir) / REVIEW_FILE
    # Written whole (atomically), so a cut-short last line is damage, not an interrupted write.
    queued = list(read_jsonl(path, tolerate_torn_tail=False)) if path.exists() else []
    known = {line.get("clip_id") for line in queued}
    new = [
        {
            "clip_id": r["clip_id"],
            "video_id": r["video_id"],
            "caption": r["caption"],
            "score": r["score"],
            "attempts": r["attempts"],
            "reviewed_caption": None,
            "decision": None,
        }  # fmt: skip
        for r in records.values()
        if r.get("review") == "pending" and r["clip_id"] not in known
    ]
    if new:
        write_jsonl_atomic(path, [*queued, *new])
    return len(new)


def refine(config: RefineConfig, backend_args: BackendArguments, params: GenerationParams, scorer=None) -> dict:
    """Run the stage; returns every captions record."""
    workdir = Path(config.workdir)
    with workdir_lock(workdir, create=False):
        if not stage_output(workdir, "captions").exists():
            raise ValueError(
                f"generation.refine needs {stage_output(workdir, 'captions')}: run generation.caption first"
            )
        captions = load_records(workdir, "captions", "clip_id")
        items = [{"clip_id": clip["clip_id"], "clip": clip, "record": captions[clip["clip_id"]]}
                 for clip in clips_from_segments(workdir) if clip["clip_id"] in captions]  # fmt: skip
        refiner = Refiner(config, backend_args, params, scorer)

        def process(batch: list[dict]) -> list[dict]:
            records = refiner.refine(batch)
            for item, record in zip(batch, records, strict=True):
                if "score" not in record:
                    record_failure(
                        workdir, "refine", record["clip_id"], item["clip"]["video_path"], record["refine"]["reason"]
                    )
            return records

        records = run_sharded(
            workdir=workdir,
            stage="captions",
            key="clip_id",
            items=items,
            process_batch=process,
            batch_size=config.batch_size,
            # Failed captions are the caption stage's to retry: refine leaves them alone.
            is_done=lambda record: "score" in record or record.get("status") != "ok",
            desc="refine",
        )
        if PartialState().is_main_process:
            update_review_queue(workdir, records)
        PartialState().wait_for_everyone()
        return records


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = HfArgumentParser((RefineConfig, GenerationParams, BackendArguments))
    config, params, backend_args = parser.parse_args_into_dataclasses(args=argv)
    with command_lock(config.workdir, "generation.refine"):
        records = refine(config, backend_args, params)
    scored = [r for r in records.values() if "score" in r]
    unscored = sum(r.get("status") == "ok" and "score" not in r for r in records.values())
    pending = sum(r.get("review") == "pending" for r in scored)
    if PartialState().is_main_process:
        print(f"refine: {len(scored)} captions scored, {pending} queued for review, {unscored} could not be scored")
    return 1 if unscored else 0


if __name__ == "__main__":
    sys.exit(main())
