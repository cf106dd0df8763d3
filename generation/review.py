"""Merge a human-reviewed queue back into the captions: the last step of LoVR's refinement loop.

    python -m generation.review --workdir runs/demo [--file runs/demo/review.jsonl]

`generation.refine` writes the clips whose best caption stayed below the threshold to `W/review.jsonl`; a person
sets `decision` on the lines they reviewed (the format: `lovr_common.run_folder.review_queue`):

- `"accepted"`: the caption stays;
- `"edited"`: `reviewed_caption` (non-empty) replaces it, and the record's `caption_source` becomes `"human"`;
- `"rejected"`: the caption stays in the record, marked `review: "rejected"`, for readers to drop;
- `null`: not reviewed yet, the clip stays `review: "pending"`.

The whole file is validated first (`validate_review`): a malformed line, an unknown or repeated clip id, a clip
that is not queued, a missing or unknown `decision`, an empty edited caption, or a typed `reviewed_caption` on an
`"accepted"` or `"rejected"` line (which would drop it: set `"edited"` to use it) is reported with its file and
line, all problems at once, and nothing is merged; so is a damaged `W/captions.jsonl` (a malformed or cut-short line, a
clip id on two lines). Otherwise the decisions are written into `W/captions.jsonl` with an atomic rename, the run
folder locked against any other run meanwhile (`lovr_common.run_folder.workdir_lock`).
Merging the same file twice gives the same result. Then run `generation.fuse` again: it fuses again exactly the
videos whose clip captions the merge changed (an edit, or a rejection that drops a clip).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from generation.options import RunFolder
from generation.stage import stage_main
from lovr_common.jsonl import write_jsonl_atomic
from lovr_common.run_folder import (
    CAPTIONS,
    DECISIONS,
    CaptionRecord,
    ReviewError,
    ReviewLine,
    load_records,
    review_path,
    validate_review,
    workdir_lock,
)


@dataclass
class ReviewConfig(RunFolder):
    """Arguments of `generation.review`.

    Args:
        workdir (`str`): the run folder holding `captions.jsonl` and `review.jsonl`.
        file (`str`, *optional*, defaults to `W/review.jsonl`): the edited review file to merge.
    """

    file: str | None = field(default=None, metadata={"help": "Edited review file (default: W/review.jsonl)."})


@dataclass
class ReviewSummary:
    """How many clips hold each review state after the merge (`"pending"`: not decided yet)."""

    counts: dict[str, int]

    @property
    def failed(self) -> bool:
        return False  # a merge happens whole, or raises

    def report(self) -> str:
        return "review: " + ", ".join(f"{n} {decision}" for decision, n in self.counts.items())


def apply_decision(record: CaptionRecord, review: ReviewLine) -> CaptionRecord:
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
        if CAPTIONS.shard_paths(workdir):
            raise ReviewError(
                f"{CAPTIONS.shard_path(workdir, 0).parent} holds unmerged caption shards of an interrupted run: "
                "rerun generation.refine first"
            )
        captions = load_records(workdir, CAPTIONS)
        decided = validate_review(file or review_path(workdir), captions)
        counts = {decision: 0 for decision in (*DECISIONS, "pending")}
        for clip_id, review in decided.items():
            captions[clip_id] = apply_decision(captions[clip_id], review)
        for record in captions.values():
            if record.get("review") in counts:
                counts[record["review"]] += 1
        write_jsonl_atomic(CAPTIONS.path(workdir), captions.values())
        return counts


def run(config: ReviewConfig) -> ReviewSummary:
    """Merge `config.file` (default `W/review.jsonl`) into the captions of `config.workdir`."""
    return ReviewSummary(merge_review(config.workdir, config.file))


def main(argv: list[str] | None = None) -> int:
    return stage_main("generation.review", ReviewConfig, run, argv)


if __name__ == "__main__":
    sys.exit(main())
