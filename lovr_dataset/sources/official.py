"""Reader for the official LoVR release layout (source 1), and the parts of it the Hub Parquet copy shares.

    caption_data/all_clip.jsonl        {"vid", "slice_num", "path": "<vid>/<vid>-Scene-NNN.mp4", "cap", ...}
    caption_data/all_video.jsonl       {"vid", "cap", ...}
    caption_data/clip_cap_theme.jsonl  {"vid": <clip id>, "cap": <theme>}  (optional; `vid` holds a clip id)
    video_data/long_video_clip/<vid>/<vid>-Scene-NNN.mp4
    video_data/merged/<vid>.mp4

The clips are every clip listed in `all_clip.jsonl` or found under `long_video_clip/` (the evaluation layout lists
only the query captions), with the caption where one is known; a clip's path is the file found under
`long_video_clip/` where there is one, else the path its record gives. Extra fields are ignored; ids may start
with '-'. Ids name files, so an id holding '/', '\\' or '..' is refused (file and line named), and so is a clip
file, clip folder, recorded clip path or merged video that resolves through a symlink to a place outside the
release. A theme of a clip that is not among the clips fails, or is counted and left out with `skip_orphan_themes`.
The release records no clip times: `start` and `end` are null. Its JSON Lines are read strictly
(`lovr_common.jsonl`), with one leniency: a UTF-8 byte order mark opening a file (as Windows editors save) is
skipped; an object holding one key twice is malformed, named by file, line and key.

`all_clip.jsonl` and `all_video.jsonl` (290 MB at full scale) are parsed by pyarrow first (`_clips_arrow`,
`_video_captions_arrow`): the captions stay Arrow (`records.ArrowText`), and each record is checked by the same
functions as when read line by line. That fast path only tells whether all is well: where pyarrow cannot vouch for
a file (`lovr_common.jsonl.read_jsonl_arrow`), a record lacks a field read here (`vid` included) or any check
fails, the file is read line by line, and that read names what is wrong by file and line.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..records import (
    CLIP_COLUMNS,
    VIDEO_EXTENSIONS,
    ArrowText,
    ReadOptions,
    SourceData,
    SourceReport,
    TextColumn,
    apply_missing_clip_policy,
    check_id,
    check_inside,
    columns_of,
    finish,
    read_records,
    read_strings_arrow,
    safe_relpath,
    split_clip_id,
    unique_by,
)

CLIP_CAPTIONS = "caption_data/all_clip.jsonl"
VIDEO_CAPTIONS = "caption_data/all_video.jsonl"
THEMES = "caption_data/clip_cap_theme.jsonl"
CLIP_DIR = "video_data/long_video_clip"
MERGED_DIR = "video_data/merged"


def matches(root: Path) -> bool:
    return (root / CLIP_CAPTIONS).is_file() or (root / CLIP_DIR).is_dir()


def list_clip_files(root: Path) -> dict[str, str]:
    """Clip id -> file path relative to `root`, for every video file under `video_data/long_video_clip/<vid>/`.

    Names are taken apart as strings (`stem`), as pathlib would: a `Path` and its `relative_to` per file were a fifth
    of a full-scale export's time (40,804 clip files)."""
    found: dict[str, str] = {}
    clip_dir = root / CLIP_DIR
    if not clip_dir.is_dir():
        return found
    for folder in _entries_inside(root, clip_dir):
        if not folder.is_dir():
            continue
        for entry in _entries_inside(root, Path(folder.path)):
            clip_id = stem(entry.name)
            if entry.name[len(clip_id) :].lower() not in VIDEO_EXTENSIONS:  # the suffix
                continue
            if entry.is_symlink():
                check_inside(root, entry.path)
            relpath = f"{CLIP_DIR}/{folder.name}/{entry.name}"
            try:
                relpath.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ValueError(f"{Path(entry.path)!r}: file name is not valid UTF-8; rename it") from err
            video_id, _ = split_clip_id(clip_id, entry.path)
            if video_id != folder.name:
                raise ValueError(f"{entry.path}: clip {clip_id!r} lies in the folder of another video {folder.name!r}")
            found[clip_id] = relpath
    return found


def _entries_inside(root: Path, folder: Path) -> list[os.DirEntry]:
    """The entries of `folder` by name, once `folder` is known to resolve inside `root`.

    `os.scandir` rather than a glob: its entries tell links apart without a system call per file, and a release
    has 40,000 clips.
    """
    check_inside(root, folder)
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def clip_row(clip_id: str, where: str, *, caption=None, clip_path=None, split=None) -> dict:
    video_id, clip_index = split_clip_id(check_id(clip_id, "clip id", where), where)
    return {
        "clip_id": clip_id,
        "video_id": video_id,
        "clip_index": clip_index,
        "start": None,
        "end": None,
        "caption": caption,
        "clip_path": clip_path,
        "video_path": None,
        "split": split,
        "score": None,
        "review": None,
    }


def merge_clip_files(
    root: Path, clips: dict[str, list], options: ReadOptions, report: SourceReport
) -> dict[str, list]:
    """Add the clip files that have no caption record, point each clip at the file found for it, refuse the recorded
    paths of the others that lead out of `root`, point clips at their full video where `merged/` has it, and apply
    the missing-file policy to the clips whose file was not found. `clips` holds the columns of the recorded clips
    (ids unique), and is extended in place."""
    files = list_clip_files(root)
    # The file found, which may lie elsewhere than its record says.
    recorded = zip(clips["clip_id"], clips["clip_path"], strict=True)
    clips["clip_path"] = [files.get(clip_id, path) for clip_id, path in recorded]
    listed = set(clips["clip_id"])
    unlisted = [
        clip_row(clip_id, str(root / relpath), clip_path=relpath)
        for clip_id, relpath in files.items()
        if clip_id not in listed
    ]
    for name, values in columns_of(unlisted, CLIP_COLUMNS).items():
        clips[name].extend(values)
    kept = zip(clips["clip_id"], clips["clip_path"], strict=True)
    missing = [(clip_id, path) for clip_id, path in kept if clip_id not in files]
    _check_unlisted_inside(root, [path for _, path in missing])
    merged = {path.stem: path.relative_to(root).as_posix() for path in _merged_videos(root)}
    clips["video_path"] = [merged.get(video_id) for video_id in clips["video_id"]]
    return apply_missing_clip_policy(clips, sorted(clip_id for clip_id, _ in missing), options, report)


def _check_unlisted_inside(root: Path, relpaths: list[str]) -> None:
    """Refuse a kept clip path that the walk did not reach (absent, or deeper than `<vid>/`) when it resolves outside.

    One `realpath` per folder, and one `lstat` per file of a folder that exists: a Hub copy without videos has
    40,000 such paths (and no folders).
    """
    folders: dict[str, bool] = {}  # folder (relative) -> whether it exists
    for relpath in relpaths:
        folder = relpath.rpartition("/")[0]
        if folder not in folders:
            check_inside(root, os.path.join(root, folder))
            folders[folder] = os.path.isdir(os.path.join(root, folder))
        if folders[folder] and os.path.islink(os.path.join(root, relpath)):
            check_inside(root, os.path.join(root, relpath))


def _merged_videos(root: Path) -> list[Path]:
    folder = root / MERGED_DIR
    if not folder.is_dir():
        return []
    videos = []
    for entry in _entries_inside(root, folder):
        if entry.name.endswith(".mp4"):
            if entry.is_symlink():
                check_inside(root, Path(entry.path))
            videos.append(Path(entry.path))
    return videos


def read_video_captions(root: Path, options: ReadOptions, report: SourceReport) -> dict[str, dict]:
    """Video id -> {"video_id", "caption"} for every record of `all_video.jsonl`, the captions left in Arrow where
    pyarrow vouches for the file (`_video_captions_arrow`)."""
    path = root / VIDEO_CAPTIONS
    if not path.is_file():
        return {}
    fast = _video_captions_arrow(path)
    if fast is not None:
        return fast
    rows = []
    for where, record in read_records(path, options, report):
        video_id = check_id(_text_field(record, "vid", where), "vid", where)
        rows.append((where, {"video_id": video_id, "caption": _text_field(record, "cap", where)}))
    return {video_id: row for video_id, (_, row) in unique_by(rows, "video_id").items()}


def _video_captions_arrow(path: Path) -> dict[str, dict] | None:
    """`read_video_captions` from pyarrow's parse, checked as the line-by-line read checks each record; None where
    a check fails (that read then names what is wrong) or pyarrow cannot vouch for the file."""
    table = read_strings_arrow(path, ("vid", "cap"))
    if table is None:
        return None
    captions = TextColumn(table.column("cap"))
    videos = {}
    try:
        for row, video_id in enumerate(table.column("vid").to_pylist()):
            if check_id(video_id, "vid", str(path)) in videos:  # a duplicate
                return None
            videos[video_id] = {"video_id": video_id, "caption": ArrowText(captions, row)}
    except ValueError:
        return None
    return videos


def read_themes(root: Path, options: ReadOptions, report: SourceReport) -> list[tuple[str, dict]]:
    """(where, row) per theme line; `finish` checks that each theme's clip exists."""
    path = root / THEMES
    if not path.is_file():
        return []
    rows = []
    for where, record in read_records(path, options, report):
        clip_id = check_id(_text_field(record, "vid", where), "vid (a clip id)", where)  # `vid` holds a clip id here
        video_id, _ = split_clip_id(clip_id, where)
        rows.append((where, {"clip_id": clip_id, "video_id": video_id, "theme": _text_field(record, "cap", where)}))
    return list(unique_by(rows, "clip_id").values())


def read(root: Path, options: ReadOptions) -> SourceData:
    report = SourceReport(source="official LoVR release (JSON Lines)")
    # The video captions and themes are read in a thread while the clips are checked here: pyarrow parses their
    # 45 MB (at full scale) without the GIL. Their errors still come after those of the clips, and what they skip
    # is reported after what the clips skip, as when read one after the other.
    later_report = SourceReport()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lovr-read-videos") as pool:
        later = pool.submit(_read_videos_and_themes, root, options, later_report)
        clips = merge_clip_files(root, _read_clips(root, options, report), options, report)
        video_captions, themes = later.result()
    report.skipped_lines += later_report.skipped_lines
    return finish(clips, video_captions, themes, options, report)


def _read_clips(root: Path, options: ReadOptions, report: SourceReport) -> dict[str, list]:
    """The columns of the clips `all_clip.jsonl` records, in its order; from pyarrow's parse with the captions left
    in Arrow (`_clips_arrow`), else read line by line, where each error is named with its file and line."""
    path = root / CLIP_CAPTIONS
    if not path.is_file():
        return columns_of([], CLIP_COLUMNS)
    fast = _clips_arrow(path)
    if fast is not None:
        return fast
    rows = []
    for where, record in read_records(path, options, report):  # the checks of `_clips_arrow`, in their order here
        relpath = safe_relpath(_text_field(record, "path", where), where)
        clip_id = stem(relpath)
        row = clip_row(clip_id, where, caption=_text_field(record, "cap", where), clip_path=f"{CLIP_DIR}/{relpath}")
        if "vid" in record and record["vid"] != row["video_id"]:
            raise ValueError(f"{where}: vid {record['vid']!r} does not match clip id {clip_id!r}")
        rows.append((where, row))
    return columns_of([row for _, row in unique_by(rows, "clip_id").values()], CLIP_COLUMNS)


def _clips_arrow(path: Path) -> dict[str, list] | None:
    """`_read_clips` from pyarrow's parse (`read_strings_arrow`), each record checked as the line-by-line read checks
    it (the same functions, here only telling whether one fails): None where one does, as where a record lacks
    `vid`, and the line-by-line read then names what is wrong. At full scale the parse takes 0.2-0.3 s and these
    checks 0.06-0.1 s (no dict per record, no `where` per line), against 0.6 s to decode the file with `json` alone.
    """
    table = read_strings_arrow(path, ("path", "vid", "cap"))
    if table is None:
        return None
    clips = columns_of([], CLIP_COLUMNS)
    ids, video_ids, indexes, paths = clips["clip_id"], clips["video_id"], clips["clip_index"], clips["clip_path"]
    where = str(path)  # never shown: a failing check only sends the file to the line-by-line read
    try:
        for path_value, vid in zip(table.column("path").to_pylist(), table.column("vid").to_pylist(), strict=True):
            relpath = safe_relpath(path_value, where)
            clip_id = stem(relpath)
            video_id, clip_index = split_clip_id(check_id(clip_id, "clip id", where), where)
            if vid != video_id:
                return None
            ids.append(clip_id)
            video_ids.append(video_id)
            indexes.append(clip_index)
            paths.append(f"{CLIP_DIR}/{relpath}")
    except ValueError:
        return None
    if len(set(ids)) < len(ids):  # a duplicate clip id
        return None
    captions = TextColumn(table.column("cap"))
    clips["caption"] = [ArrowText(captions, row) for row in range(len(ids))]
    for name in ("start", "end", "video_path", "split", "score", "review"):
        clips[name] = [None] * len(ids)
    return clips


def _read_videos_and_themes(root: Path, options: ReadOptions, report: SourceReport):
    """What `read` reads in its thread: the video captions and the themes."""
    return read_video_captions(root, options, report), read_themes(root, options, report)


def stem(relpath: str) -> str:
    """`PurePosixPath(relpath).stem` of a path `safe_relpath` normalised (or of a file name), without pathlib's cost
    per clip: the name up to its last dot, unless that dot opens or ends it (on Python 3.11-3.13; 3.14 also cuts a
    name ending in a dot there, which changes no video file's stem)."""
    if relpath == ".":
        return ""
    name = relpath.rpartition("/")[2]
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def _text_field(record: dict, name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {name!r} is {value!r}, expected a string")
    return value
