"""Reading a run folder's stage files: merged files are written whole, shards are appended to.

A merged file (`W/<stage>.jsonl`) is only ever written whole (an atomic rename): a torn or malformed line in it, or
a key on two of its lines, is damage, and `read_merged` raises `JsonlError` naming the file and lines. A shard
(`W/.shards/<stage>-<rank>.jsonl`) is appended to, one flushed line per record, so its torn last line is an
interrupted write and is dropped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lovr_common.jsonl import JsonlError, read_jsonl, read_jsonl_numbered
from lovr_common.run_folder.layout import R, StageFile


def read_merged(path: str | os.PathLike, key: str) -> dict[str, dict[str, Any]]:
    """The records of a file written whole (a merged stage file), keyed by `key`, in file order.

    Raises `JsonlError` naming the file and line for a malformed or torn line, and both lines for a repeated key.
    """
    records: dict[str, dict] = {}
    lines: dict[str, int] = {}
    for lineno, record in read_jsonl_numbered(path, tolerate_torn_tail=False):
        id_ = record.get(key)
        if id_ in lines:
            raise JsonlError(
                f"{path}:{lineno}: {key}={id_!r} is repeated (also on line {lines[id_]}): the file is damaged or was "
                f"edited by hand; remove one of the two lines"
            )
        lines[id_] = lineno
        records[id_] = record
    return records


def load_records(workdir: str | os.PathLike, stage: StageFile[R]) -> dict[str, R]:
    """Every record of `stage` written so far, merged file then shards, keyed by its key (a shard's record wins)."""
    merged = stage.path(workdir)
    records = read_merged(merged, stage.key) if merged.exists() else {}
    for path in stage.shard_paths(workdir):
        for record in read_jsonl(path):
            records[record[stage.key]] = record
    return records


def require_stage_file(workdir: str | os.PathLike, stage: StageFile, command: str) -> Path:
    """The merged file of `stage` in `workdir`; a `ValueError` telling to run its producer when it is missing."""
    path = stage.path(workdir)
    if not path.exists():
        raise ValueError(f"{command} needs {path}: run {stage.producer} first")
    return path
