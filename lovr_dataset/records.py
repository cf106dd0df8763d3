"""What every source reader produces, and the rules the readers share: ids, safe paths, splits, the video table.

A reader turns one source layout into a `SourceData`: one row per clip, per video and per theme text, with the
columns of the builder's features. Rows are sorted by id so that unsorted listings give the same dataset.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from lovr_common.jsonl import ReadStats, read_jsonl_numbered
from lovr_common.splits import OTHER_SPLIT, QUERY_SPLIT

logger = logging.getLogger(__name__)

SCENE_MARK = "-Scene-"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
MISSING_CLIP_POLICIES = ("keep", "drop", "error")


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


@dataclass
class SourceData:
    """The rows of the three configs, each a list of dicts keyed like the builder's features."""

    clips: list[dict]
    videos: list[dict]
    themes: list[dict]
    report: SourceReport


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


def assign_splits(clips: list[dict], options: ReadOptions) -> None:
    """Give every clip without a split from its source one: a seeded sample of captioned clips is the query split.

    The official protocol queries 1000 clip captions against every clip. When the source names no split, the
    queries are `num_queries` clips drawn with `random.Random(query_seed)` from the captioned clips in id order
    (all of them when there are fewer); every other clip is `train`. An export freezes the draw.
    """
    if any(clip["split"] is not None for clip in clips):
        for clip in clips:
            clip["split"] = clip["split"] or OTHER_SPLIT
        return
    candidates = sorted(clip["clip_id"] for clip in clips if clip["caption"] is not None)
    if len(candidates) > options.num_queries:
        candidates = random.Random(options.query_seed).sample(candidates, options.num_queries)
    queries = set(candidates)
    for clip in clips:
        clip["split"] = QUERY_SPLIT if clip["clip_id"] in queries else OTHER_SPLIT


def apply_missing_clip_policy(clips: list[dict], missing: list[str], options: ReadOptions, report: SourceReport):
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
        return [clip for clip in clips if clip["clip_id"] not in gone]
    return clips


def video_rows(clips: list[dict], captions: dict[str, dict], report: SourceReport) -> list[dict]:
    """One row per video that has clips or a caption: caption (null where unknown), duration, its clips in order."""
    clip_ids: dict[str, list[str]] = {}
    video_paths: dict[str, str | None] = {}
    for clip in clips:  # already in (video_id, clip_index) order
        clip_ids.setdefault(clip["video_id"], []).append(clip["clip_id"])
        video_paths.setdefault(clip["video_id"], clip["video_path"])
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
    return rows


def themes_of_known_clips(themes: list[tuple[str, dict]], clips: list[dict], options, report) -> list[dict]:
    """The theme rows whose clip is among `clips`; a theme of any other clip fails, naming its line, or with
    `skip_orphan_themes` is counted in `report.orphan_themes`, logged and left out."""
    known = {clip["clip_id"] for clip in clips}
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
    clips: list[dict], video_captions: dict[str, dict], themes: list[tuple[str, dict]], options, report
) -> SourceData:
    """Sort, split and cross-reference the rows a reader gathered; `themes` are (where, row) pairs."""
    clips.sort(key=lambda clip: (clip["video_id"], clip["clip_index"], clip["clip_id"]))
    assign_splits(clips, options)
    rows = sorted(themes_of_known_clips(themes, clips, options, report), key=lambda theme: theme["clip_id"])
    return SourceData(clips, video_rows(clips, video_captions, report), rows, report)
