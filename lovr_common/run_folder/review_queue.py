"""`W/review.jsonl`, the human review queue: `generation.refine` adds to it, a person edits it, `generation.review`
validates it and merges it back into `W/captions.jsonl`.

One `ReviewLine` per clip whose best caption stayed below the refinement threshold:
`{"clip_id", "video_id", "caption", "score", "attempts", "reviewed_caption": null, "decision": null}`. A person sets
`decision` on the lines they reviewed: `"accepted"` (the caption stays), `"edited"` (`reviewed_caption`, non-empty,
replaces it), `"rejected"` (the caption stays, marked for readers to drop), or leaves it `null` (not reviewed yet).
A line `"accepted"` or `"rejected"` that also holds a typed `reviewed_caption` is refused as ambiguous, so that a
person's edit is never dropped without a word.

The file is written whole (atomically) and lines already there are never overwritten, so a line being edited
survives a rerun of refinement. Both ends are strict: a cut-short last line is damage, not an interrupted write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from lovr_common.jsonl import read_jsonl, refuse_repeated_keys, write_jsonl_atomic
from lovr_common.run_folder.layout import REVIEW_FILE, CaptionRecord, ReviewLine

DECISIONS = ("accepted", "edited", "rejected")


class ReviewError(ValueError):
    """A review file that cannot be merged; the message lists every problem as `file:line: ...`."""


def review_path(workdir: str | os.PathLike) -> Path:
    """The review queue of run folder `workdir`."""
    return Path(workdir) / REVIEW_FILE


def review_line(record: CaptionRecord) -> ReviewLine:
    """The queue line of a refined captions record, not reviewed yet."""
    return {
        "clip_id": record["clip_id"],
        "video_id": record["video_id"],
        "caption": record["caption"],
        "score": record["score"],
        "attempts": record["attempts"],
        "reviewed_caption": None,
        "decision": None,
    }


def queue_pending(workdir: str | os.PathLike, records: Iterable[CaptionRecord]) -> int:
    """Add the `review: "pending"` records missing from `W/review.jsonl` (lines already there, perhaps being
    edited, stay as they are); return how many were added. A damaged queue file raises `JsonlError`."""
    path = review_path(workdir)
    queued = list(read_jsonl(path, tolerate_torn_tail=False)) if path.exists() else []
    known = {line.get("clip_id") for line in queued}
    new = [review_line(r) for r in records if r.get("review") == "pending" and r["clip_id"] not in known]
    if new:
        write_jsonl_atomic(path, [*queued, *new])
    return len(new)


def parse_review_file(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """The `(line number, object)` of each line of an edited review file, and a problem per line that is not one."""
    records, problems = [], []
    with open(path, encoding="utf-8-sig") as f:  # -sig: a byte order mark that an editor put first is skipped
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=refuse_repeated_keys)
            except json.JSONDecodeError as err:
                problems.append(f"{path}:{lineno}: not valid JSON ({err.msg} at column {err.colno})")
                continue
            except ValueError as err:  # a repeated key
                problems.append(f"{path}:{lineno}: {err}")
                continue
            if not isinstance(record, dict):
                problems.append(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
                continue
            records.append((lineno, record))
    return records, problems


def _line_problem(record: dict, captions: Mapping[str, CaptionRecord]) -> str | None:
    """What is wrong with one parsed line whose clip id is a new string, or None."""
    clip_id = record["clip_id"]
    if clip_id not in captions:
        return f"unknown clip_id={clip_id!r}: not in captions.jsonl"
    if captions[clip_id].get("review") is None:
        return f"clip_id={clip_id!r} was never queued for review"
    if "decision" not in record:
        return f"missing 'decision': expected one of {DECISIONS} or null"
    decision = record["decision"]
    if decision is not None and decision not in DECISIONS:
        return f"decision={decision!r}: expected one of {DECISIONS} or null"
    edited = record.get("reviewed_caption")
    typed = isinstance(edited, str) and edited.strip()
    if decision == "edited" and not typed:
        return f"decision 'edited' needs a non-empty reviewed_caption, got {edited!r}"
    if decision in ("accepted", "rejected") and typed:
        # Which the person meant is unknown, and merging either way would drop the caption they typed.
        return (
            f"decision {decision!r} with reviewed_caption={edited[:60]!r}: ambiguous; set decision to 'edited' to "
            f"use that caption, or reviewed_caption to null to keep the decision {decision!r}"
        )
    return None


def validate_review(path: str | os.PathLike, captions: Mapping[str, CaptionRecord]) -> dict[str, ReviewLine]:
    """The decided lines of review file `path`, by clip id; raises `ReviewError` listing every problem.

    A malformed line, an unknown or repeated clip id, a clip that is not queued, a missing or unknown `decision`, an
    empty edited caption, or a typed `reviewed_caption` on a line not `"edited"` is a problem; lines whose `decision`
    is null are left out.
    """
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"review file {path} does not exist")
    lines, problems = parse_review_file(path)
    decided: dict[str, ReviewLine] = {}
    seen: dict[str, int] = {}
    for lineno, record in lines:
        clip_id = record.get("clip_id")
        if not isinstance(clip_id, str):
            problem = f"missing or non-string clip_id={clip_id!r}"
        elif clip_id in seen:
            problem = f"clip_id={clip_id!r} repeated (first on line {seen[clip_id]})"
        else:
            seen[clip_id] = lineno
            problem = _line_problem(record, captions)
        if problem is not None:
            problems.append(f"{path}:{lineno}: {problem}")
        elif record["decision"] is not None:
            decided[clip_id] = record
    if problems:
        raise ReviewError(f"{len(problems)} problem(s) in {path}, nothing merged:\n" + "\n".join(problems))
    return decided
