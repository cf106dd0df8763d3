"""Merge a human-reviewed queue back into the captions: the last step of LoVR's refinement loop.

    python -m generation.review --workdir runs/demo [--file runs/demo/review.jsonl]

`generation.refine` writes the clips whose best caption stayed below the threshold to `W/review.jsonl`, one line
each: `{"clip_id", "video_id", "caption", "score", "attempts", "reviewed_caption": null, "decision": null}`. A person
sets `decision` on the lines they reviewed:

- `"accepted"`: the caption stays;
- `"edited"`: `reviewed_caption` (non-empty) replaces it, and the record's `caption_source` becomes `"human"`;
- `"rejected"`: the caption stays in the record, marked `review: "rejected"`, for readers to drop;
- `null`: not reviewed yet, the clip stays `review: "pending"`.

The whole file is validated first: a malformed line, an unknown or repeated clip id, a clip that is not queued, a
missing or unknown `decision`, or an empty edited caption is reported with its file and line, all problems at
once, and nothing is merged; so is a damaged `W/captions.jsonl` (a malformed or cut-short line, a clip id on two
lines). Otherwise the decisions are written into `W/captions.jsonl` with an atomic rename, the run folder locked
against any other run meanwhile (`generation._stage.workdir_lock`).
Merging the same file twice gives the same result. Then run `generation.fuse` again: it fuses again exactly the
videos whose clip captions the merge changed (an edit, or a rejection that drops a clip).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from generation._stage import SHARD_DIR, WorkdirBusyError, load_records, stage_output, workdir_lock
from lovr_common.jsonl import write_jsonl_atomic

logger = logging.getLogger(__name__)

REVIEW_FILE = "review.jsonl"
DECISIONS = ("accepted", "edited", "rejected")


class ReviewError(ValueError):
    """A review file that cannot be merged; the message lists every problem as `file:line: ...`."""


@dataclass
class ReviewConfig:
    """Arguments of `generation.review`.

    Args:
        workdir (`str`): the run folder holding `captions.jsonl` and `review.jsonl`.
        file (`str`, *optional*, defaults to `W/review.jsonl`): the edited review file to merge.
    """

    workdir: str = field(metadata={"help": "Run folder holding captions.jsonl and review.jsonl."})
    file: str | None = field(default=None, metadata={"help": "Edited review file (default: W/review.jsonl)."})


def _parse_lines(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    # Strict on purpose: a hand-edited file whose last line lost its closing brace is an error, not a torn write.
    records, problems = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                problems.append(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(record, dict):
                problems.append(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
                continue
            records.append((lineno, record))
    return records, problems


def validate_review(path: str | Path, captions: dict[str, dict]) -> dict[str, dict]:
    """The decided lines of review file `path`, by clip id; raises `ReviewError` listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"review file {path} does not exist")
    lines, problems = _parse_lines(path)
    decided: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for lineno, record in lines:
        where = f"{path}:{lineno}"
        clip_id = record.get("clip_id")
        if not isinstance(clip_id, str):
            problems.append(f"{where}: missing or non-string clip_id={clip_id!r}")
            continue
        if clip_id in seen:
            problems.append(f"{where}: clip_id={clip_id!r} repeated (first on line {seen[clip_id]})")
            continue
        seen[clip_id] = lineno
        if clip_id not in captions:
            problems.append(f"{where}: unknown clip_id={clip_id!r}: not in captions.jsonl")
            continue
        if captions[clip_id].get("review") is None:
            problems.append(f"{where}: clip_id={clip_id!r} was never queued for review")
            continue
        if "decision" not in record:
            problems.append(f"{where}: missing 'decision': expected one of {DECISIONS} or null")
            continue
        decision = record["decision"]
        if decision is None:
            continue
        if decision not in DECISIONS:
            problems.append(f"{where}: decision={decision!r}: expected one of {DECISIONS} or null")
            continue
        edited = record.get("reviewed_caption")
        if decision == "edited" and (not isinstance(edited, str) or not edited.strip()):
            problems.append(f"{where}: decision 'edited' needs a non-empty reviewed_caption, got {edited!r}")
            continue
        decided[clip_id] = record
    if problems:
        raise ReviewError(f"{len(problems)} problem(s) in {path}, nothing merged:\n" + "\n".join(problems))
    return decided


def apply_decision(record: dict, review: dict) -> dict:
    """`record` (a captions.jsonl record) updated with one review line's decision."""
    record = {**record, "review": review["decision"]}
    if review["decision"] == "edited":
        record["caption"] = review["reviewed_caption"].strip()
        record["caption_source"] = "human"
    return record


def merge_review(workdir: str | Path, file: str | Path | None = None) -> dict[str, int]:
    """Validate the review file and merge its decisions into `W/captions.jsonl`; return the count per decision."""
    workdir = Path(workdir)
    with workdir_lock(workdir, create=False):
        if any((workdir / SHARD_DIR).glob("captions-*.jsonl")):
            raise ReviewError(
                f"{workdir / SHARD_DIR} holds unmerged caption shards of an interrupted run: rerun generation.refine first"
            )
        captions = load_records(workdir, "captions", "clip_id")
        decided = validate_review(file or workdir / REVIEW_FILE, captions)
        counts = {decision: 0 for decision in (*DECISIONS, "pending")}
        for clip_id, review in decided.items():
            captions[clip_id] = apply_decision(captions[clip_id], review)
        for record in captions.values():
            if record.get("review") in counts:
                counts[record["review"]] += 1
        write_jsonl_atomic(stage_output(workdir, "captions"), captions.values())
        return counts


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    (config,) = HfArgumentParser(ReviewConfig).parse_args_into_dataclasses(args=argv)
    try:
        counts = merge_review(config.workdir, config.file)
    except (ValueError, WorkdirBusyError) as err:  # ReviewError, a damaged captions.jsonl, no such folder
        raise SystemExit(f"generation.review: {err}") from None
    print("review: " + ", ".join(f"{n} {decision}" for decision, n in counts.items()))


if __name__ == "__main__":
    main()
