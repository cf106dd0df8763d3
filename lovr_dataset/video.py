"""Attach the video files a user has to a LoVR dataset, as a lazily decoded `datasets.Video` column.

    from lovr_dataset import attach_video_root
    clips = attach_video_root(load_dataset("lovr", "clips"), "path/to/LoVR")       # column "video" from clip_path
    videos = attach_video_root(load_dataset("lovr", "videos"), "path/to/LoVR", path_column="video_path")
    decoder = clips["test"][0]["video"]   # a torchcodec VideoDecoder, opened only now

The exported Parquet holds paths only (LoVR's source videos may not be re-hosted). For virtual clips (a run folder
without written clips) use `path_column="video_path"` with the run's `videos_dir` as root, and seek to `start`..`end`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets

from .records import safe_relpath

logger = logging.getLogger(__name__)


def attach_video_root(dataset, root: str | os.PathLike, path_column: str = "clip_path", column: str = "video"):
    """Add `column`, a `datasets.Video` of `root / row[path_column]`, to a Dataset or DatasetDict.

    Rows whose path is null or whose file is missing under `root` get a null video (counted in a warning); a path
    that would escape `root` raises ValueError.
    """
    if isinstance(dataset, datasets.DatasetDict):
        return datasets.DatasetDict(
            {split: attach_video_root(part, root, path_column, column) for split, part in dataset.items()}
        )
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"root={str(root)!r} is not a folder; expected the folder the {path_column} paths start from")
    if path_column not in dataset.column_names:
        raise ValueError(f"path_column={path_column!r} is not a column; expected one of {dataset.column_names}")
    paths, missing = [], 0
    for relpath in dataset[path_column]:
        path = None if relpath is None else root / safe_relpath(relpath, f"{path_column}={relpath!r}")
        if path is not None and not path.is_file():
            missing += 1
            path = None
        paths.append(None if path is None else str(path))
    if missing:
        logger.warning(
            "%d of %d %s files are missing under %s: their %r is null", missing, len(paths), path_column, root, column
        )
    # Video stores {"bytes", "path"}; casting a column of paths fills `path` and leaves the bytes out.
    return dataset.add_column(column, paths).cast_column(column, datasets.Video())
