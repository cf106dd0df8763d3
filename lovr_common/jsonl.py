"""JSON Lines that survive a hard kill: whole lines, flushed and synced; a torn last line of an appended file is
ignored.

Every record written by the pipeline is one JSON object per line. A process killed while appending can leave a
last line without its newline; such a line is never valid JSON for an object, so readers of appended files drop it
and writers cut it off before appending. A file only ever written whole (`write_jsonl_atomic`) cannot be torn that
way: its readers pass `tolerate_torn_tail=False`, and a damaged last line is an error like any other.

Read as strict JSON for a benchmark's sake, with one leniency: a UTF-8 byte order mark opening the file (what some
Windows editors write) is skipped. An object holding one key twice is malformed (`json.loads` would keep the last
value without a word): the error names the file, line and key.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class JsonlError(ValueError):
    """A JSON Lines file that cannot be read as records: a line is not a JSON object, or (raised by the readers of
    keyed files) a key is repeated; the message names the file and line."""


@dataclass
class ReadStats:
    """What a tolerant read skipped, for the caller to report."""

    skipped: list[str] = field(default_factory=list)
    torn_tail: bool = False


def read_jsonl(
    path: str | os.PathLike,
    *,
    skip_malformed: bool = False,
    stats: ReadStats | None = None,
    tolerate_torn_tail: bool = True,
) -> Iterator[dict]:
    """Yield the objects of `path`, one per line; blank lines are ignored.

    A malformed line raises `JsonlError` naming the file and line, or is skipped and recorded in `stats` when
    `skip_malformed=True`. A last line that has no newline and does not parse is a torn write: dropped with a
    warning, unless `tolerate_torn_tail=False` (files written whole, or not by this pipeline, where it is damage).
    """
    for _, record in read_jsonl_numbered(
        path, skip_malformed=skip_malformed, stats=stats, tolerate_torn_tail=tolerate_torn_tail
    ):
        yield record


def read_jsonl_numbered(
    path: str | os.PathLike,
    *,
    skip_malformed: bool = False,
    stats: ReadStats | None = None,
    tolerate_torn_tail: bool = True,
) -> Iterator[tuple[int, dict]]:
    """As `read_jsonl`, yielding `(line number from 1, object)`: for messages that point at a line."""
    path = Path(path)
    # A 1 MiB buffer: LoVR's lines are 7-120 KB, and with the default 8 KiB one most lines are pieced together from
    # several reads (0.14 against 0.03 CPU s to iterate the 272 MB of a full-scale release).
    with open(path, "rb", buffering=1 << 20) as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
                if text.startswith("\ufeff"):  # what json.loads says of a BOM, which the decoder would not check
                    raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
                record = _DECODER.decode(text)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            except (UnicodeDecodeError, ValueError) as err:
                torn = not raw.endswith(b"\n")  # only the last line can lack its newline
                if tolerate_torn_tail and torn:
                    logger.warning("%s:%d: ignoring a torn last line (an interrupted write)", path, lineno)
                    if stats is not None:
                        stats.torn_tail = True
                    return
                message = f"{path}:{lineno}: malformed JSON Lines record ({err}): {raw[:80]!r}"
                if torn:
                    message += " (a last line cut short: the file is truncated or damaged)"
                if not skip_malformed:
                    raise JsonlError(message) from err
                logger.warning(message)
                if stats is not None:
                    stats.skipped.append(message)
                continue
            yield lineno, record


def refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict:
    """`object_pairs_hook` of `json.loads`: the object as a dict, or a `ValueError` naming a key it holds twice."""
    record = dict(pairs)
    if len(record) < len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"key {repeated!r} appears twice in one object")
    return record


# One decoder for every line: `json.loads(..., object_pairs_hook=...)` builds a new one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=refuse_repeated_keys)


def cut_torn_tail(path: str | os.PathLike) -> None:
    """Truncate `path` after its last newline, so that the next append starts on a fresh line."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        chunk = 1 << 16
        end = size
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                f.truncate(start + newline + 1)
                return
            end = start
        f.truncate(0)


class JsonlWriter:
    """Append records to a JSON Lines file, one flushed line each; `close()` syncs to disk.

    Use as a context manager. An existing torn last line is cut first.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_torn_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Write `records` to `path` through a temporary file and an atomic rename; return the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count
