"""The three source layouts the builder reads, one reader module each; which one a folder holds, and its content
fingerprint for the builder's cache.

    official      the official LoVR release (JSON Lines and clip files)
    hub_parquet   the Hub Parquet copy of the release
    run_folder    a run folder `W` written by `generation` (source name `pipeline`)

Each reader has `matches(root)` (are its marker files there) and `read(root, options) -> SourceData`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

from lovr_common.run_folder.layout import SEGMENTS

from ..records import ReadOptions, SourceData
from . import hub_parquet, official, run_folder

logger = logging.getLogger(__name__)

# The first layout whose marker files exist wins: a run folder is never a release, and a release holding both the
# Parquet copy and the JSON Lines prefers the Parquet, which names the splits.
SOURCES = {"pipeline": run_folder, "hub_parquet": hub_parquet, "official": official}
LOOKED_FOR = (
    f"{SEGMENTS.filename} (a pipeline run folder), "
    f"{' or '.join(hub_parquet.SPLIT_FILES.values())} (the Hub Parquet copy), "
    f"{official.CLIP_CAPTIONS} or {official.CLIP_DIR}/ (the official release)"
)


def detect_source(data_dir: str | os.PathLike) -> str:
    """The name of the layout `data_dir` holds: `pipeline`, `hub_parquet` or `official`."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data_dir={str(data_dir)!r} is not a folder; expected a LoVR release or run folder")
    for name, reader in SOURCES.items():
        if reader.matches(root):
            return name
    raise ValueError(f"data_dir={str(data_dir)!r} holds no LoVR data: looked for {LOOKED_FOR}")


def fingerprint(data_dir: str | os.PathLike) -> str:
    """A hash of the names, sizes and times of the files the readers use, so that a changed source is rebuilt."""
    root = Path(data_dir)
    digest = hashlib.sha256(detect_source(root).encode())
    for path in sorted(_source_files(root)):
        stat = path.stat()
        digest.update(
            f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode("utf-8", "surrogateescape")
        )
    return digest.hexdigest()[:16]


def _source_files(root: Path):
    yield from (path for path in root.glob("*.jsonl") if path.is_file())
    yield from (path for path in (root / "caption_data").glob("*") if path.is_file())
    for folder in (official.CLIP_DIR, official.MERGED_DIR):
        if (root / folder).is_dir():
            yield from (entry for entry in (root / folder).rglob("*") if entry.is_file())


def read_source(data_dir: str | os.PathLike, options: ReadOptions, *, cached: bool = True) -> SourceData:
    """The rows of every config from the source in `data_dir` (`SourceData`; `data.clips.to_pylist()` gives the
    clips as dicts).

    With `cached`, the last read is kept (keyed by the source's `fingerprint`): building the three configs reads the
    same source three times in a row. The export reads once and passes `cached=False`, so as not to hold the rows
    after it."""
    root = Path(data_dir).resolve()
    if not cached:
        return _read(root, options)
    return _read_cached(root, fingerprint(root), options)


@functools.lru_cache(maxsize=1)
def _read_cached(root: Path, _fingerprint: str, options: ReadOptions) -> SourceData:
    return _read(root, options)


def _read(root: Path, options: ReadOptions) -> SourceData:
    data = SOURCES[detect_source(root)].read(root, options)
    if not data.clips:
        raise ValueError(f"no clips in {root} ({data.report.source}): nothing to build or export{_why_empty(data)}")
    logger.info("read %s from %s: %d clips, %d videos", data.report.source, root, len(data.clips), len(data.videos))
    return data


def _why_empty(data: SourceData) -> str:
    """What the read left out, as a hint after "no clips"."""
    report = data.report
    left_out = [
        f"{report.failed_records} record(s) with status 'failed'" if report.failed_records else "",
        f"{len(report.missing_clip_files)} clip(s) whose file is missing" if report.missing_clip_files else "",
        f"{len(report.skipped_lines)} malformed line(s)" if report.skipped_lines else "",
    ]
    left_out = [what for what in left_out if what]
    return f"; left out: {', '.join(left_out)}" if left_out else ""
