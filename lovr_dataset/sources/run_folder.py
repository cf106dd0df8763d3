"""Reader for a pipeline run folder `W` written by `generation` (source 2; names and record shapes in
`lovr_common.run_folder.layout`).

    SEGMENTS   one `SegmentRecord` per source video, with its clips (time ranges; `clip_path` when written)
    CAPTIONS   one `CaptionRecord` per clip (optional: clips without one have a null caption)
    VIDEOS     one `VideoRecord` per video, the fused caption (optional)

Records with `status: "failed"` carry no data: a failed video has no clips, a failed caption is null. A caption
a reviewer rejected (`review: "rejected"`) is null too. `clip_path` is relative to `W`; `video_path` to the
`videos_dir` of its segments record, which is where `attach_video_root` must point for virtual clips. Shards left
in `W/.shards/` (a stage interrupted or still running) are not read, only warned about.

Refused, naming the file, line (and clip): ids that break the release's rules (`check_id`: no '/', '\\' or '..';
a clip id is `<video_id>-Scene-<clip_index>` of its segments record), clip times that are no time range of the
video (`lovr_common.run_folder.check_clip_span`: finite numbers, 0 <= start < end <= duration), and a captions or
videos record (status ok) of a clip or video that segments.jsonl does not list as ok.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lovr_common.run_folder.layout import (
    CAPTIONS,
    SEGMENTS,
    SHARD_DIR,
    VIDEOS,
    CaptionRecord,
    ClipSpan,
    SegmentRecord,
    StageFile,
    VideoRecord,
    check_clip_span,
)

from ..records import (
    CLIP_COLUMNS,
    ReadOptions,
    SourceData,
    SourceReport,
    apply_missing_clip_policy,
    check_id,
    columns_of,
    finish,
    read_records,
    safe_relpath,
    split_clip_id,
    unique_by,
)

logger = logging.getLogger(__name__)


def matches(root: Path) -> bool:
    return SEGMENTS.path(root).is_file()


def _ok_records(
    root: Path, stage: StageFile, options: ReadOptions, report: SourceReport, known: set[str] | None = None
) -> dict[str, tuple[str, dict]]:
    """(where, record) of every record of `stage` in `root` by its key, refusing duplicates and (when `known` is
    given) a key not in `known`; failed records, which carry no data, are counted and left out."""
    path = stage.path(root)
    if not path.is_file():
        return {}
    if stage.shard_paths(root):
        logger.warning("%s has unmerged shards in %s: rerun that stage to merge them", path, root / SHARD_DIR)
    records = {}
    for record_id, (where, record) in unique_by(read_records(path, options, report), stage.key).items():
        if record.get("status", "ok") != "ok":
            report.failed_records += 1
            continue
        if known is not None and record_id not in known:
            raise ValueError(
                f"{where}: {stage.key} {record_id!r} is not among the {stage.key.removesuffix('_id')}s of "
                f"{SEGMENTS.path(root)} (status ok); expected records of those only: remove the line"
            )
        records[record_id] = (where, record)
    return records


def _clip_row(clip: ClipSpan, video_id: str, clip_path: str | None, video_path: str) -> dict:
    """The builder row of one clip of a segments record, caption not yet known."""
    return {
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


def _clip_rows(segments: dict[str, tuple[str, SegmentRecord]], root: Path) -> tuple[list[dict], list[str]]:
    """The clip rows of every segments record, and the ids of the clips whose written file is missing.

    Ids follow the release's rules (`check_id`, `split_clip_id`): a clip's id is `<video_id>-Scene-<clip_index>`.
    """
    clips, missing = [], []
    for video_id, (where, segment) in segments.items():
        check_id(video_id, "video_id", where)
        video_path = safe_relpath(segment["video_path"], where)
        for clip in segment.get("clips", []):
            clip_id = check_id(clip.get("clip_id"), "clip_id", where)
            if split_clip_id(clip_id, where) != (video_id, clip.get("clip_index")):
                raise ValueError(
                    f"{where}: clip id {clip_id!r} does not match its video_id {video_id!r} and clip_index "
                    f"{clip.get('clip_index')!r}; expected '<video_id>-Scene-<clip_index>'"
                )
            where_clip = f"{where}, clip {clip_id!r}"
            check_clip_span(clip.get("start"), clip.get("end"), segment.get("duration"), where_clip)
            clip_path = clip.get("clip_path")
            if clip_path is not None:
                clip_path = safe_relpath(clip_path, where_clip)
                if not (root / clip_path).is_file():
                    missing.append(clip_id)
            clips.append(_clip_row(clip, video_id, clip_path, video_path))
    return clips, missing


def _add_captions(known: dict[str, dict], captions: dict[str, tuple[str, CaptionRecord]]) -> None:
    """Give each clip row its caption record's caption (null when rejected in review), score and review state."""
    for clip_id, (_, record) in captions.items():
        review = record.get("review")
        known[clip_id].update(
            caption=None if review == "rejected" else record["caption"], score=record.get("score"), review=review
        )


def _video_captions(
    fused: dict[str, tuple[str, VideoRecord]], segments: dict[str, tuple[str, SegmentRecord]]
) -> dict[str, dict]:
    """Video id -> fused caption (null where not fused) and the duration its segments record claims."""
    videos = {
        video_id: {"caption": record["caption"], "duration": record.get("duration")}
        for video_id, (_, record) in fused.items()
    }
    for video_id, (_, segment) in segments.items():
        videos.setdefault(video_id, {"caption": None})["duration"] = segment.get("duration")
    return videos


def read(root: Path, options: ReadOptions) -> SourceData:
    report = SourceReport(source="pipeline run folder")
    segments = _ok_records(root, SEGMENTS, options, report)
    clips, missing = _clip_rows(segments, root)
    by_id = unique_by([(f"{SEGMENTS.path(root)}, video {clip['video_id']!r}", clip) for clip in clips], "clip_id")
    captions = _ok_records(root, CAPTIONS, options, report, known=set(by_id))
    _add_captions({clip_id: clip for clip_id, (_, clip) in by_id.items()}, captions)
    clips = apply_missing_clip_policy(columns_of(clips, CLIP_COLUMNS), sorted(missing), options, report)
    video_captions = _video_captions(_ok_records(root, VIDEOS, options, report, known=set(segments)), segments)
    return finish(clips, video_captions, [], options, report)
