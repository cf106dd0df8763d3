"""From LoVR dataset rows to the texts to embed and the video files to decode (one `VideoJob` per file).

Clips with a time range (a run folder's virtual clips) are cut from their long video, so one decode pass of that
video yields all its clips and the video embedding itself. Clips known only by their own file (the official
release) are decoded file by file, and the long video (`video_path`) in a job of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lovr_metric.frames import Segment, VideoJob

QUERY_SPLIT = "test"


@dataclass
class EvalData:
    """What the runner evaluates: gallery ids, query texts (id -> relevant id) and the jobs that embed the gallery."""

    clip_ids: list[str]
    video_ids: list[str]
    clip_queries: list[tuple[str, str]]  # (caption, clip_id) of the query split
    video_queries: list[tuple[str, str]]  # (caption, video_id)
    theme_queries: list[tuple[str, str]]  # (theme, clip_id)
    jobs: list[VideoJob]
    missing: list[dict] = field(default_factory=list)  # {"id", "path", "reason"} for items with no file


def _resolve(root: Path, relpath: str | None) -> Path | None:
    return None if relpath is None else root / relpath


def plan(clips: list[dict], videos: list[dict], themes: list[dict], video_root: Path, granularity) -> EvalData:
    """Turn the rows of the `clips`, `videos` and `themes` configs into queries, galleries and decode jobs."""
    want_clips = bool({"clip", "theme"} & set(granularity))
    want_videos = "video" in granularity
    data = EvalData(
        clip_ids=[clip["clip_id"] for clip in clips] if want_clips else [],
        video_ids=[video["video_id"] for video in videos if video["caption"] is not None] if want_videos else [],
        clip_queries=[
            (clip["caption"], clip["clip_id"])
            for clip in clips
            if clip["split"] == QUERY_SPLIT and clip["caption"] is not None
        ]
        if "clip" in granularity
        else [],
        video_queries=[(v["caption"], v["video_id"]) for v in videos if v["caption"] is not None]
        if want_videos
        else [],
        theme_queries=[(t["theme"], t["clip_id"]) for t in themes] if "theme" in granularity else [],
        jobs=[],
    )
    by_video: dict[str, list[Segment]] = {}
    paths = {video["video_id"]: _resolve(video_root, video["video_path"]) for video in videos}
    for clip in clips if want_clips else []:
        long_video = paths.get(clip["video_id"]) or _resolve(video_root, clip["video_path"])
        if clip["start"] is not None and clip["end"] is not None and long_video is not None:
            paths.setdefault(clip["video_id"], long_video)
            by_video.setdefault(clip["video_id"], []).append(
                Segment(clip["clip_id"], "clip", clip["start"], clip["end"])
            )
        elif clip["clip_path"] is not None:
            data.jobs.append(
                VideoJob(clip["clip_id"], video_root / clip["clip_path"], [Segment(clip["clip_id"], "clip")])
            )
        else:
            data.missing.append({"id": clip["clip_id"], "path": None, "reason": "no clip file and no time range"})
    for video_id in data.video_ids:
        by_video.setdefault(video_id, []).append(Segment(video_id, "video"))
    for video_id, segments in by_video.items():
        if paths.get(video_id) is None:
            data.missing.extend({"id": s.key, "path": None, "reason": "no video_path"} for s in segments)
        else:
            data.jobs.append(VideoJob(video_id, paths[video_id], segments))
    return data
