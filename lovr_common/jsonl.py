"""JSON Lines that survive a hard kill: whole lines, flushed and synced; a torn last line of an appended file is
ignored.

Every record written by the pipeline is one JSON object per line. A process killed while appending can leave a
last line without its newline; such a line is never valid JSON for an object, so readers of appended files drop it
and writers cut it off before appending. A file only ever written whole (`write_jsonl_atomic`) cannot be torn that
way: its readers pass `tolerate_torn_tail=False`, and a damaged last line is an error like any other.

Read as strict JSON for a benchmark's sake, with one leniency: a UTF-8 byte order mark opening the file (what some
Windows editors write) is skipped. An object holding one key twice is malformed (`json.loads` would keep the last
value without a word): the error names the file, line and key.

Big files written whole can also be parsed by pyarrow's multithreaded reader (`read_jsonl_arrow`), which vouches
for a file only when its table is exactly what the strict reader would give, and else leaves it to that reader.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

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

# pyarrow parses a file in blocks of this many bytes, several at once.
ARROW_BLOCK_BYTES = 1 << 22
# The deepest nesting of a value outside the schema that `read_jsonl_arrow` vouches for: Python's decoder recurses
# once per level and fails near the recursion limit (1000), pyarrow's parser does not.
_ARROW_MAX_DEPTH = 64
_OPEN, _CLOSE, _NEWLINE = ord("{"), ord("}"), ord("\n")


def read_jsonl_arrow(path: str | os.PathLike, schema: pa.Schema) -> pa.Table | None:
    """The objects of the file `path` as an Arrow table with the columns of `schema`, row i from line i + 1, when
    that is what `read_jsonl_numbered(path, tolerate_torn_tail=False)` reads; None when pyarrow cannot vouch for it,
    and the caller reads the file line by line (which names what is wrong, if anything is).

    pyarrow's reader parses on every core into Arrow columns, several times faster than `json` into Python objects
    (0.2-0.3 against 0.6 s for a full-scale release's 240 MB of clip captions). A field outside `schema` is parsed,
    checked and dropped. A column is null where a line holds null or lacks the field: pyarrow does not tell the two
    apart. A value of another type than its column's fails the parse (None).

    pyarrow's reader is laxer than the strict one, so its table counts only when the file also passes checks made on
    the very bytes it parses (`_ShapeCheckedFile`): every line is one object and nothing else (pyarrow takes two
    objects on one line, one object over two lines, blank lines, `\\r` line ends), the bytes are UTF-8 (pyarrow does
    not check strings), and a field outside `schema` holds no infinite or NaN number (pyarrow takes `Inf`, `-Inf`
    and `-NaN`, which `json` refuses) and nests no deeper than `_ARROW_MAX_DEPTH`. What pyarrow refuses and `json`
    takes (a number beyond the float range, a lone surrogate escape, a field whose type changes from line to line,
    a line over more than two blocks of `ARROW_BLOCK_BYTES`) is left to the strict reader too. Both refuse an object
    holding a key twice, at any depth.
    """
    # Imported here, not with the module: the pipeline's stages read and write JSON Lines without pyarrow.
    import pyarrow as pa
    import pyarrow.json as pj

    read_options = pj.ReadOptions(block_size=ARROW_BLOCK_BYTES)
    parse_options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    with pa.OSFile(str(path)) as raw:
        source = _ShapeCheckedFile(raw)
        try:
            table = pj.read_json(source, read_options=read_options, parse_options=parse_options)
        except pa.ArrowException as err:
            logger.debug("%s: left to the line-by-line reader, as pyarrow refuses it (%s)", path, err)
            return None
        if not source.complete() or table.num_rows != source.lines:
            logger.debug("%s: left to the line-by-line reader: not one JSON object per line, or not UTF-8", path)
            return None
    extras = [name for name in table.column_names if name not in schema.names]
    if not all(_json_takes_alike(chunk, depth=1) for name in extras for chunk in table.column(name).chunks):
        logger.debug(
            "%s: left to the line-by-line reader: a field outside %s holds Inf or NaN, or nests", path, schema
        )
        return None
    return table.select(schema.names)


class _ShapeCheckedFile(io.RawIOBase):
    """A JSON Lines file as pyarrow's reader reads it, checked on the way: that each line opens with `{` and closes
    with `}`, that the bytes are UTF-8, and how many lines there are. A UTF-8 byte order mark opening the file is
    passed over, as the strict reader does. Once a check fails, the file reads as ended, so that pyarrow stops.

    A line end between `}` and `{` lies between two top-level values (no JSON string holds a raw line end, and inside
    an object or array the two would need a comma between them), so in a file that pyarrow parses, each line holds
    whole objects, one at least: as many rows as lines means one object per line.

    The bytes are read as Arrow buffers (from pyarrow's memory pool, which reuses them) and scanned with numpy:
    reading them as Python bytes allocated each 4 MiB block afresh, 30,000-45,000 page faults at full scale.
    """

    def __init__(self, raw: pa.NativeFile):
        self.raw = raw
        self.lines = 0  # line ends handed on
        self.usual = True
        self.previous: int | None = None  # the last byte handed on
        self.unfinished = b""  # the bytes after the last line end handed on, not yet checked as UTF-8
        self.newlines = None  # scratch: which bytes of a block are line ends

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> pa.Buffer | bytes:
        if not self.usual:
            return b""
        data = self.raw.read_buffer(size)
        if self.previous is None and data.size >= 3 and data[:3].to_pybytes() == codecs.BOM_UTF8:
            data = data.slice(3)
        if data.size:
            self.usual = self._check(data)
        return data if self.usual else b""

    def complete(self) -> bool:
        """Whether the whole file was read and passed, its last line included (counted here when it lacks its
        line end, as the strict reader takes it)."""
        if not self.usual or self.raw.read_buffer(1).size:
            return False
        if self.previous not in (None, _NEWLINE):
            if self.previous != _CLOSE or not _is_utf8(self.unfinished):
                return False
            self.lines += 1
        return True

    def _check(self, data: pa.Buffer) -> bool:
        import numpy as np

        bytes_ = np.frombuffer(data, np.uint8)
        if self.newlines is None or len(self.newlines) < len(bytes_):
            self.newlines = np.empty(len(bytes_), np.bool_)
        ends = np.flatnonzero(np.equal(bytes_, _NEWLINE, out=self.newlines[: len(bytes_)]))
        previous, self.previous = self.previous, int(bytes_[-1])
        self.lines += len(ends)
        if previous in (None, _NEWLINE) and bytes_[0] != _OPEN:
            return False
        if not len(ends):
            self.unfinished += data.to_pybytes()
            return True
        if (bytes_[ends[ends > 0] - 1] != _CLOSE).any() or (ends[0] == 0 and previous != _CLOSE):
            return False
        if (bytes_[ends[ends + 1 < len(bytes_)] + 1] != _OPEN).any():
            return False
        # UTF-8 up to the last line end (a line end never falls inside a UTF-8 sequence); the rest waits.
        view = memoryview(data)
        first_end, last_end = int(ends[0]) + 1, int(ends[-1]) + 1
        usual = _is_utf8(self.unfinished + view[:first_end]) and _is_utf8(view[first_end:last_end])
        self.unfinished = bytes(view[last_end:])
        return usual


def _is_utf8(data: bytes | memoryview) -> bool:
    """Whether `data` is UTF-8 as `bytes.decode("utf-8")` takes it (no surrogates, no overlong forms), checked by
    pyarrow's validator without making a string (some ten times faster than decoding)."""
    import pyarrow as pa

    buffer = pa.py_buffer(data)
    offsets = pa.py_buffer(struct.pack("=qq", 0, buffer.size))
    try:
        pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, buffer]).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _json_takes_alike(array: pa.Array, depth: int) -> bool:
    """Whether `json` takes the values that pyarrow parsed into `array` (a column outside the schema, or a part of
    one, at nesting `depth`) as pyarrow did: no infinite or NaN float, no nesting deeper than `_ARROW_MAX_DEPTH`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if depth > _ARROW_MAX_DEPTH:
        return False
    if pa.types.is_floating(array.type):
        return pc.all(pc.is_finite(array)).as_py() is not False
    if pa.types.is_struct(array.type):
        return all(_json_takes_alike(array.field(index), depth + 1) for index in range(array.type.num_fields))
    if pa.types.is_list(array.type):
        return _json_takes_alike(array.flatten(), depth + 1)
    return True


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
