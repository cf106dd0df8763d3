"""What every source reader produces, and the rules the readers share: ids, safe paths, splits, the video table.

A reader turns one source layout into a `SourceData`: one row per clip, per video and per theme text, with the
columns of the builder's features, held column by column (`Rows`). Rows are sorted by id so that unsorted listings
give the same dataset. A long text may stay in the Arrow column it was parsed into (`ArrowText`) until
`Rows.tables` copies it into the builder's tables: a full-scale release holds 290 MB of captions.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import numpy as np
import pyarrow as pa

from lovr_common.jsonl import ReadStats, read_jsonl_arrow, read_jsonl_numbered
from lovr_common.splits import OTHER_SPLIT, QUERY_SPLIT

logger = logging.getLogger(__name__)

SCENE_MARK = "-Scene-"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
MISSING_CLIP_POLICIES = ("keep", "drop", "error")
# The columns of each config, in the order of the builder's features (`lovr.FEATURES`).
CLIP_COLUMNS = [
    "clip_id", "video_id", "clip_index", "start", "end", "caption", "clip_path", "video_path", "split", "score", "review"
]  # fmt: skip
VIDEO_COLUMNS = ["video_id", "caption", "duration", "num_clips", "clip_ids", "video_path"]
THEME_COLUMNS = ["clip_id", "video_id", "theme"]


@dataclass(frozen=True)
class ReadOptions:
    """How a reader treats what the source lacks or gets wrong (see `LoVRConfig` for the meaning of each)."""

    num_queries: int = 1000
    query_seed: int = 0
    missing_clip_files: str = "keep"
    skip_malformed: bool = False
    skip_orphan_themes: bool = False

    def __post_init__(self):
        if self.missing_clip_files not in MISSING_CLIP_POLICIES:
            raise ValueError(
                f"missing_clip_files={self.missing_clip_files!r}, expected one of {MISSING_CLIP_POLICIES}"
            )
        if self.num_queries < 0:
            raise ValueError(f"num_queries={self.num_queries}, expected a count >= 0")


@dataclass
class SourceReport:
    """What a read found wrong but tolerated, for the caller to log or check."""

    source: str = ""
    skipped_lines: list[str] = field(default_factory=list)
    missing_clip_files: list[str] = field(default_factory=list)
    videos_without_caption: list[str] = field(default_factory=list)
    orphan_themes: list[str] = field(default_factory=list)
    failed_records: int = 0


class Rows:
    """The rows of one config, column by column: `columns[name]` lists the values of column `name`, and `index`
    which of them, in which order, are the rows (all, in order, by default). A text may be an `ArrowText`.

    Columns rather than one dict per row: at full scale the clips are 40,804 rows of 11 columns, and merging,
    sorting and splitting them as dicts took twice as long (0.13 against 0.07 s)."""

    def __init__(self, columns: dict[str, list], index: list[int] | None = None, texts: set[str] | None = None):
        self.columns = columns
        self.index = index
        # The columns holding an `ArrowText` (found once, and shared with the rows `select` picks).
        self.texts = texts if texts is not None else {n for n, v in columns.items() if ArrowText in set(map(type, v))}

    def __len__(self) -> int:
        if self.index is not None:
            return len(self.index)
        return len(next(iter(self.columns.values()), []))

    def column(self, name: str) -> list:
        """The values of column `name`, row by row."""
        values = self.columns[name]
        return values if self.index is None else [values[i] for i in self.index]

    def select(self, keep: list[bool]) -> Rows:
        """The rows for which `keep` (one flag per row) is true, in order."""
        positions = range(len(self)) if self.index is None else self.index
        picked = [position for position, kept in zip(positions, keep, strict=True) if kept]
        return Rows(self.columns, picked, self.texts)

    def slice(self, start: int, stop: int) -> Rows:
        """Rows `start` to `stop` (not included), in order."""
        positions = range(len(self)) if self.index is None else self.index
        return Rows(self.columns, list(positions[start:stop]), self.texts)

    def to_pylist(self) -> list[dict]:
        """The rows as dicts, texts as Python strings."""
        names = list(self.columns)
        values = [[str(v) if isinstance(v, ArrowText) else v for v in self.column(name)] for name in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]

    def tables(self, schema: pa.Schema, size: int) -> Iterator[pa.Table]:
        """The rows as Arrow tables of `schema`, `size` rows each: the tables `pa.Table.from_pylist` makes of them
        (arrays built per table, so that a table without a null has no validity buffer, and the sizes `datasets`
        records are those of the rows), but a column of `ArrowText`s is copied Arrow to Arrow (`TextColumn.take`)."""
        positions = range(len(self)) if self.index is None else self.index
        for start in range(0, len(self), size):
            rows = positions[start : start + size]
            arrays = [
                _text_array(_gather(self.columns[column.name], rows), column.type)
                if column.name in self.texts
                else pa.array(_gather(self.columns[column.name], rows), column.type)
                for column in schema
            ]
            yield pa.Table.from_arrays(arrays, schema=schema)


def _gather(values: list, rows: Sequence[int]) -> Sequence:
    """`[values[i] for i in rows]`, gathered in C by `operator.itemgetter` (three times faster)."""
    return itemgetter(*rows)(values) if len(rows) > 1 else [values[i] for i in rows]


def columns_of(rows: list[dict], names: list[str]) -> dict[str, list]:
    """The columns `names` of dict `rows` (each holding every name)."""
    return {name: [row[name] for row in rows] for name in names}


@dataclass
class SourceData:
    """The rows of the three configs, with the columns of the builder's features (`data.clips.to_pylist()`: dicts)."""

    clips: Rows
    videos: Rows
    themes: Rows
    report: SourceReport


class TextColumn:
    """A string column as a reader parsed it (an Arrow chunked array), whose rows `take` copies Arrow to Arrow."""

    def __init__(self, column: pa.ChunkedArray):
        self.type = column.type
        self.chunks = column.chunks
        self.starts = np.cumsum([0, *map(len, self.chunks)])  # the column's row at which each chunk starts

    def text(self, row: int) -> str:
        chunk = int(np.searchsorted(self.starts, row, side="right")) - 1
        return self.chunks[chunk][row - int(self.starts[chunk])].as_py()

    def take(self, rows: list[int | None]) -> pa.Array:
        """The strings at `rows` (None: a null) as one Arrow array.

        One slice per run of consecutive rows, concatenated once: `pa.ChunkedArray.take` concatenates every chunk
        first, a copy of the whole column (240 MB for a release's clip captions) on each call.
        """
        if not rows:
            return pa.array([], self.type)
        index = np.array([-1 if row is None else row for row in rows], np.int64)
        chunk = np.searchsorted(self.starts, index, side="right") - 1  # -1: a null
        offset = index - self.starts[chunk]
        # A run goes on while the next row is the next one of the same chunk, or another null.
        goes_on = (chunk[1:] == chunk[:-1]) & ((offset[1:] == offset[:-1] + 1) | (chunk[1:] < 0))
        firsts = np.flatnonzero(~goes_on) + 1
        pieces = [
            pa.nulls(end - first, self.type)
            if chunk[first] < 0
            else self.chunks[chunk[first]].slice(offset[first], end - first)
            for first, end in zip([0, *firsts.tolist()], [*firsts.tolist(), len(rows)], strict=True)
        ]
        return pa.concat_arrays(pieces)


class ArrowText:
    """A string left in the `TextColumn` a reader parsed it into: as Python strings the captions of a full-scale
    release took a fifth of the export's read (allocating 290 MB), and `Rows.tables` copies them Arrow to Arrow.
    `str(text)` reads it."""

    __slots__ = ("column", "row")

    def __init__(self, column: TextColumn, row: int):
        self.column, self.row = column, row

    def __str__(self) -> str:
        return self.column.text(self.row)

    def __repr__(self) -> str:
        return f"ArrowText({str(self)!r})"


def _text_array(values: list, type: pa.DataType) -> pa.Array:
    """The Arrow array of `values` (`ArrowText`s, strs or None): taken from the `TextColumn` when all are of one."""
    columns = {value.column for value in values if isinstance(value, ArrowText)}
    if len(columns) == 1 and all(value is None or isinstance(value, ArrowText) for value in values):
        (column,) = columns
        if column.type == type:
            return column.take([None if value is None else value.row for value in values])
    return pa.array([str(value) if isinstance(value, ArrowText) else value for value in values], type)


def split_clip_id(clip_id: str, where: str) -> tuple[str, int]:
    """`<vid>-Scene-NNN` -> (`<vid>`, NNN); the video id is what precedes the last `-Scene-`."""
    video_id, mark, number = clip_id.rpartition(SCENE_MARK)
    if not mark or not video_id or not number.isdigit():
        raise ValueError(f"{where}: clip id {clip_id!r} is not of the form '<video_id>-Scene-<number>'")
    return video_id, int(number)


def check_id(value: str, name: str, where: str) -> str:
    """`value`, refused unless a non-empty string without `/`, a backslash or `..`: ids name files, and such an id
    names another one (or none)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {name} is {value!r}; expected a non-empty string")
    if "/" in value or "\\" in value or ".." in value:
        raise ValueError(f"{where}: {name} {value!r} contains '/', '\\' or '..'; expected an id that names no path")
    return value


def check_inside(root: Path, path: str | os.PathLike) -> None:
    """Refuse `path` when it resolves, through symlinks, outside `root` (already resolved), as `..` paths are."""
    target = os.path.realpath(path)
    if target != str(root) and not target.startswith(str(root) + os.sep):
        raise ValueError(
            f"{path}: a symlink (the file or a folder above it) points outside the data root {root}, to {target}; "
            "expected files inside the data root (to keep the videos elsewhere, link the whole release folder)"
        )


def safe_relpath(value: str, where: str) -> str:
    """`value` as a normalised POSIX path relative to its root; absolute paths and `..` (they escape it) are refused.

    Plain string work rather than `PurePosixPath`: it runs once per clip, and pathlib took a fifth of a full-scale
    export. Normalises like `PurePosixPath(value).as_posix()`: backslashes become `/`, and empty and `.` parts go.
    """
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: expected a relative file path, got {value!r}")
    posix = value.replace("\\", "/")
    parts = [part for part in posix.split("/") if part not in ("", ".")]
    if posix.startswith("/") or ".." in parts or (parts and parts[0].endswith(":")):
        raise ValueError(f"{where}: path {value!r} escapes the data root (absolute or '..'); expected a relative path")
    return "/".join(parts) or "."


def read_records(path: Path, options: ReadOptions, report: SourceReport) -> list[tuple[str, dict]]:
    """Every object of the JSON Lines file `path`, each with where it came from (`"<path>, line <n>"`, so that an
    error points at the line an editor shows), failing or skipping bad lines.

    Release files are not written by this pipeline, so a last line without its newline that does not parse is
    damage, not a torn write: it fails (or is skipped) like any other malformed line.
    """
    stats = ReadStats()
    reader = read_jsonl_numbered(path, skip_malformed=options.skip_malformed, stats=stats, tolerate_torn_tail=False)
    records = [(f"{path}, line {lineno}", record) for lineno, record in reader]
    report.skipped_lines.extend(stats.skipped)
    return records


def read_strings_arrow(path: Path, names: tuple[str, ...]) -> pa.Table | None:
    """The string fields `names` of every record of the JSON Lines file `path`, parsed by pyarrow, row i from line
    i + 1; None unless pyarrow vouches for the file (`read_jsonl_arrow`) and every record holds each field as a
    string. A reader's fast path: on None it reads the file with `read_records`, which names what is wrong."""
    table = read_jsonl_arrow(path, pa.schema([(name, pa.string()) for name in names]))
    if table is None or any(column.null_count for column in table.columns):
        return None
    return table


def unique_by(rows: list[tuple[str, dict]], key: str) -> dict[str, tuple[str, dict]]:
    """Index (`where`, row) pairs by `row[key]`, refusing a duplicate id with both places named."""
    seen: dict[str, tuple[str, dict]] = {}
    for where, row in rows:
        value = row[key]
        if value in seen:
            raise ValueError(
                f"{where}: duplicate {key} {value!r} (first seen at {seen[value][0]}); ids must be unique"
            )
        seen[value] = (where, row)
    return seen


def assign_splits(clips: dict[str, list], options: ReadOptions) -> None:
    """Give every clip without a split from its source one: a seeded sample of captioned clips is the query split.

    The official protocol queries 1000 clip captions against every clip. When the source names no split, the
    queries are `num_queries` clips drawn with `random.Random(query_seed)` from the captioned clips in id order
    (all of them when there are fewer); every other clip is `train`. An export freezes the draw.
    """
    if any(split is not None for split in clips["split"]):
        clips["split"] = [split or OTHER_SPLIT for split in clips["split"]]
        return
    ids = clips["clip_id"]
    candidates = sorted(clip_id for clip_id, caption in zip(ids, clips["caption"], strict=True) if caption is not None)
    if len(candidates) > options.num_queries:
        candidates = random.Random(options.query_seed).sample(candidates, options.num_queries)
    queries = set(candidates)
    clips["split"] = [QUERY_SPLIT if clip_id in queries else OTHER_SPLIT for clip_id in ids]


def apply_missing_clip_policy(
    clips: dict[str, list], missing: list[str], options: ReadOptions, report: SourceReport
) -> dict[str, list]:
    """Count clips whose file is missing and keep them, drop them, or fail, as `missing_clip_files` says."""
    if not missing:
        return clips
    report.missing_clip_files.extend(missing)
    if options.missing_clip_files == "error":
        raise ValueError(
            f"{len(missing)} clip file(s) are missing, e.g. {missing[:3]}; "
            "pass missing_clip_files='keep' or 'drop' to build anyway"
        )
    logger.warning(
        "%d clip file(s) are missing (policy %r), e.g. %s", len(missing), options.missing_clip_files, missing[:3]
    )
    if options.missing_clip_files == "drop":
        gone = set(missing)
        kept = [clip_id not in gone for clip_id in clips["clip_id"]]
        return {
            name: [value for value, keep in zip(values, kept, strict=True) if keep] for name, values in clips.items()
        }
    return clips


def video_rows(clips: dict[str, list], captions: dict[str, dict], report: SourceReport) -> Rows:
    """One row per video that has clips or a caption: caption (null where unknown), duration, its clips in order."""
    clip_ids: dict[str, list[str]] = {}
    video_paths: dict[str, str | None] = {}
    for clip_id, video_id, video_path in zip(clips["clip_id"], clips["video_id"], clips["video_path"], strict=True):
        # already in (video_id, clip_index) order
        clip_ids.setdefault(video_id, []).append(clip_id)
        video_paths.setdefault(video_id, video_path)
    rows = []
    for video_id in sorted(set(clip_ids) | set(captions)):
        known = captions.get(video_id, {})
        if known.get("caption") is None:
            report.videos_without_caption.append(video_id)
        ids = clip_ids.get(video_id, [])
        rows.append(
            {
                "video_id": video_id,
                "caption": known.get("caption"),
                "duration": known.get("duration"),
                "num_clips": len(ids),
                "clip_ids": ids,
                "video_path": known.get("video_path") or video_paths.get(video_id),
            }
        )
    if report.videos_without_caption:
        logger.warning(
            "%d video(s) have clips but no video-level caption (caption null), e.g. %s",
            len(report.videos_without_caption),
            report.videos_without_caption[:3],
        )
    return Rows(columns_of(rows, VIDEO_COLUMNS))


def themes_of_known_clips(themes: list[tuple[str, dict]], clip_ids: list[str], options, report) -> list[dict]:
    """The theme rows whose clip is among `clip_ids`; a theme of any other clip fails, naming its line, or with
    `skip_orphan_themes` is counted in `report.orphan_themes`, logged and left out."""
    if not themes:
        return []
    known = set(clip_ids)
    orphans = [(where, row["clip_id"]) for where, row in themes if row["clip_id"] not in known]
    if orphans and not options.skip_orphan_themes:
        where, clip_id = orphans[0]
        raise ValueError(
            f"{where}: theme of clip {clip_id!r}, which is not among the clips ({len(orphans)} such theme(s)); "
            "expected themes of listed clips, or pass skip_orphan_themes=True (--skip-orphan-themes) to leave them out"
        )
    if orphans:
        report.orphan_themes.extend(clip_id for _, clip_id in orphans)
        logger.warning("%d theme(s) of unknown clips left out, e.g. %s", len(orphans), report.orphan_themes[:3])
    return [row for _, row in themes if row["clip_id"] in known]


def finish(
    clips: dict[str, list], video_captions: dict[str, dict], themes: list[tuple[str, dict]], options, report
) -> SourceData:
    """Sort, split and cross-reference the clips a reader gathered (columns, in any order); `themes` are (where,
    row) pairs."""
    keys = list(zip(clips["video_id"], clips["clip_index"], clips["clip_id"], strict=True))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    clips = {name: list(_gather(values, order)) for name, values in clips.items()}
    assign_splits(clips, options)
    theme_rows = sorted(themes_of_known_clips(themes, clips["clip_id"], options, report), key=itemgetter("clip_id"))
    return SourceData(
        Rows(clips), video_rows(clips, video_captions, report), Rows(columns_of(theme_rows, THEME_COLUMNS)), report
    )
