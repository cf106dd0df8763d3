"""Reader for a pipeline run folder `W` written by `generation` (source 2; schemas in CONTRIBUTING.md).

    W/segments.jsonl   one record per source video, with its clips (time ranges; `clip_path` when written)
    W/captions.jsonl   one record per clip (optional: clips without one have a null caption)
    W/videos.jsonl     one record per video, the fused caption (optional)

Records with `status: "failed"` carry no data: a failed video has no clips, a failed caption is null. A caption
a reviewer rejected (`review: "rejected"`) is null too. `clip_path` is relative to `W`; `video_path` to the
`videos_dir` of its segments record, which is where `attach_video_root` must point for virtual clips.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .records import (
    ReadOptions,
    SourceData,
    SourceReport,
    apply_missing_clip_policy,
    finish,
    read_records,
    safe_relpath,
    unique_by,
)

logger = logging.getLogger(__name__)

SEGMENTS = "segments.jsonl"
CAPTIONS = "captions.jsonl"
VIDEOS = "videos.jsonl"


def matches(root: Path) -> bool:
    return (root / SEGMENTS).is_file()


def _ok_records(root: Path, name: str, key: str, options: ReadOptions, report: SourceReport) -> dict[str, dict]:
    """The records of `W/<name>` by `key`, refusing duplicates; failed ones are counted and left out."""
    path = root / name
    if not path.is_file():
        return {}
    if any((root / ".shards").glob(f"{path.stem}-*.jsonl")):
        logger.warning("%s has unmerged shards in %s: rerun that stage to merge them", path, root / ".shards")
    records = {}
    for record_id, (where, record) in unique_by(read_records(path, options, report), key).items():
        if record.get("status", "ok") != "ok":
            report.failed_records += 1
            continue
        records[record_id] = {**record, "_where": where}
    return records


def _clip_rows(segments: dict[str, dict], root: Path) -> tuple[list[dict], list[str]]:
    clips, missing = [], []
    for video_id, segment in segments.items():
        where = segment["_where"]
        video_path = safe_relpath(segment["video_path"], where)
        for clip in segment.get("clips", []):
            clip_path = clip.get("clip_path")
            if clip_path is not None:
                clip_path = safe_relpath(clip_path, f"{where}, clip {clip.get('clip_id')!r}")
                if not (root / clip_path).is_file():
                    missing.append(clip["clip_id"])
            clips.append(
                {
                    "clip_id": clip["clip_id"],
                    "video_id": video_id,
                    "clip_index": clip["clip_index"],
                    "start": clip["start"],
                    "end": clip["end"],
                    "caption": None,
                    "clip_path": clip_path,
                    "video_path": video_path,
                    "split": None,
                    "score": None,
                    "review": None,
                }
            )
    return clips, missing


def read(root: Path, options: ReadOptions) -> SourceData:
    report = SourceReport(source="pipeline run folder")
    segments = _ok_records(root, SEGMENTS, "video_id", options, report)
    clips, missing = _clip_rows(segments, root)
    unique_by([(f"{root / SEGMENTS}, video {clip['video_id']!r}", clip) for clip in clips], "clip_id")
    known = {clip["clip_id"]: clip for clip in clips}
    for clip_id, record in _ok_records(root, CAPTIONS, "clip_id", options, report).items():
        if clip_id not in known:
            raise ValueError(
                f"{record['_where']}: caption for clip {clip_id!r}, which {root / SEGMENTS} does not list"
            )
        review = record.get("review")
        known[clip_id].update(
            caption=None if review == "rejected" else record["caption"], score=record.get("score"), review=review
        )
    clips = apply_missing_clip_policy(clips, sorted(missing), options, report)
    video_captions = {
        video_id: {"caption": record["caption"], "duration": record.get("duration")}
        for video_id, record in _ok_records(root, VIDEOS, "video_id", options, report).items()
    }
    for video_id, segment in segments.items():
        video_captions.setdefault(video_id, {"caption": None})["duration"] = segment.get("duration")
    return finish(clips, video_captions, [], options, report)
