"""`W/failures.jsonl`: the inputs a stage could not process, one line each, for a human to look at.

Any process of any stage may append at any time: each record is one `os.write` of one whole line to a file opened
with `O_APPEND`, which the kernel appends atomically, so concurrent writers never interleave or tear lines. The
file is a log: a rerun that fails on the same input again appends another line. The stage's own output holds the
current status of every id (`"status": "failed"` with the same `reason`). `generation.stage.run_sharded` is the
one writer of the `generation` stages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lovr_common.jsonl import read_jsonl
from lovr_common.run_folder.layout import FAILURES_FILE, FailureRecord


def failures_path(workdir: str | os.PathLike) -> Path:
    """The failure log of run folder `workdir`."""
    return Path(workdir) / FAILURES_FILE


def record_failure(
    workdir: str | os.PathLike, stage: str, id: str, path: str | os.PathLike | None, reason: str
) -> FailureRecord:
    """Append `{"stage", "id", "path", "reason"}` to `W/failures.jsonl` and return the record."""
    record: FailureRecord = {"stage": stage, "id": id, "path": None if path is None else str(path), "reason": reason}
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    target = failures_path(workdir)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return record


def read_failures(workdir: str | os.PathLike, stage: str | None = None) -> list[FailureRecord]:
    """Every failure logged in `workdir` (of `stage` only, when given), oldest first."""
    target = failures_path(workdir)
    if not target.exists():
        return []
    return [record for record in read_jsonl(target) if stage is None or record["stage"] == stage]
