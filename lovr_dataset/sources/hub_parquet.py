"""Reader for the Hub Parquet copy of the LoVR release (source 3).

    caption_data/clip_train.parquet, caption_data/clip_test.parquet   one row per clip; the file names the split
    caption_data/all_video.jsonl, caption_data/clip_cap_theme.jsonl   as in the JSON Lines release (optional)
    video_data/long_video_clip/<vid>/<vid>-Scene-NNN.mp4               optional, as in the JSON Lines release

The Parquet columns are not documented: they are read by name and extras are ignored. The clip id comes from
`clip_id`, else the stem of `path`, else `vid` when it holds a clip id; the caption from `caption` or `cap`.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from ..records import (
    CLIP_COLUMNS,
    SCENE_MARK,
    ReadOptions,
    SourceData,
    SourceReport,
    columns_of,
    finish,
    safe_relpath,
    unique_by,
)
from . import official

SPLIT_FILES = {"train": "caption_data/clip_train.parquet", "test": "caption_data/clip_test.parquet"}
CAPTION_COLUMNS = ("caption", "cap")


def matches(root: Path) -> bool:
    return any((root / name).is_file() for name in SPLIT_FILES.values())


def _clip_ids(table, path: Path) -> list[str]:
    """The clip id of every row, from the first column that holds one."""
    if "clip_id" in table.column_names:
        return table.column("clip_id").to_pylist()
    if "path" in table.column_names:
        return [
            official.stem(safe_relpath(value, f"{path}, row {row}"))
            for row, value in enumerate(table.column("path").to_pylist())
        ]
    if "vid" in table.column_names:
        ids = table.column("vid").to_pylist()
        if all(isinstance(value, str) and SCENE_MARK in value for value in ids):
            return ids
    raise ValueError(
        f"{path}: no clip id column among {table.column_names}; expected 'clip_id', 'path' "
        "(<vid>/<vid>-Scene-NNN.mp4) or 'vid' holding clip ids"
    )


def _read_split(path: Path) -> list[tuple[str, str, str | None]]:
    schema = pq.read_schema(path)
    caption_column = next((name for name in CAPTION_COLUMNS if name in schema.names), None)
    if caption_column is None:
        raise ValueError(f"{path}: no caption column among {schema.names}; expected one of {CAPTION_COLUMNS}")
    id_columns = [name for name in ("clip_id", "path", "vid") if name in schema.names]
    table = pq.read_table(path, columns=[*id_columns, caption_column])
    ids = _clip_ids(table, path)
    return [
        (f"{path}, row {row}", clip_id, caption)
        for row, (clip_id, caption) in enumerate(zip(ids, table.column(caption_column).to_pylist(), strict=True))
    ]


def read(root: Path, options: ReadOptions) -> SourceData:
    report = SourceReport(source="LoVR Hub Parquet copy")
    rows = []
    for split, name in SPLIT_FILES.items():
        if (root / name).is_file():
            for where, clip_id, caption in _read_split(root / name):
                row = official.clip_row(clip_id, where, caption=caption, split=split)
                row["clip_path"] = f"{official.CLIP_DIR}/{row['video_id']}/{clip_id}.mp4"
                rows.append((where, row))
    clips = [row for _, row in unique_by(rows, "clip_id").values()]
    clips = official.merge_clip_files(root, columns_of(clips, CLIP_COLUMNS), options, report)
    video_captions = official.read_video_captions(root, options, report)
    return finish(clips, video_captions, official.read_themes(root, options, report), options, report)
