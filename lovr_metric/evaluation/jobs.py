"""From LoVR dataset rows to the texts to embed and the video files to decode (one `VideoJob` per file).

Clips with a time range (a run folder's virtual clips) are cut from their long video, so one decode pass of that
video yields all its clips and the video embedding itself. Clips known only by their own file (the official
release) are decoded file by file, and the long video (`video_path`) in a job of its own. Every path must stay
inside the video root, as `lovr_dataset` requires of a release.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lovr_metric.evaluation.frames import Segment, VideoJob
from lovr_metric.evaluation.protocol import LOVR_TASKS, QUERY_SPLIT, Task


@dataclass
class EvalData:
    """What the runner evaluates: gallery ids, query texts (text, relevant id) per task and the jobs that embed the
    gallery."""

    clip_ids: list[str]
    video_ids: list[str]
    queries: dict[str, list[tuple[str, str]]]  # task name -> (text, relevant id), for the tasks planned
    jobs: list[VideoJob]
    missing: list[dict] = field(default_factory=list)  # {"id", "path", "reason"} for items with no file

    def gallery(self, task: Task) -> list[str]:
        """The ids of the items `task` ranks."""
        return self.clip_ids if task.gallery == "clip" else self.video_ids


class _VideoRoot:
    """The folder that `clip_path` and `video_path` start from; a path is refused when its text leads out of it.

    The rows come from a dataset, perhaps downloaded: their text must not make the evaluation read files elsewhere.
    Symlinks inside the root are the user's own (a video root of links to where the videos are stored is common),
    so they are followed; the release's own symlinks are checked when it is exported (`lovr_dataset`).
    """

    def __init__(self, root: Path):
        self.root = root

    def join(self, relpath: str | None, where: str) -> Path | None:
        """`root / relpath`, refused (ValueError naming `where` and the value) when it is absolute or climbs out
        with `..`."""
        if relpath is None:
            return None
        if os.path.isabs(relpath):
            how = "is absolute"
        elif os.path.normpath(relpath).split(os.sep)[0] == os.pardir:
            how = "climbs out of the video root with '..'"
        else:
            return self.root / relpath
        raise ValueError(
            f"{where}={relpath!r} {how}, outside the video root {self.root}; expected a path inside it (the video "
            "root is --video_root, or --dataset when that is not given)"
        )


def _queries(task: Task, clips: list[dict], videos: list[dict], themes: list[dict]) -> list[tuple[str, str]]:
    """The (text, relevant id) queries of `task`: captions of the query split's clips, video captions or themes."""
    if task.name == "clip":
        return [(c["caption"], c["clip_id"]) for c in clips if c["split"] == QUERY_SPLIT and c["caption"] is not None]
    if task.name == "video":
        return [(v["caption"], v["video_id"]) for v in videos if v["caption"] is not None]
    return [(t["theme"], t["clip_id"]) for t in themes]


def plan(clips: list[dict], videos: list[dict], themes: list[dict], video_root: Path, granularity) -> EvalData:
    """Turn the rows of the `clips`, `videos` and `themes` configs into queries, galleries and decode jobs.

    `granularity` names the tasks to plan, among `LOVR_TASKS`. Raises `ValueError` for any other name, and for a
    `clip_path` or `video_path` whose text leads outside `video_root` (absolute, or `..` climbing out); symlinks
    in the root are followed."""
    unknown = sorted(set(granularity) - set(LOVR_TASKS))
    if unknown:
        raise ValueError(f"granularity={list(granularity)} names {unknown}, expected a subset of {list(LOVR_TASKS)}")
    tasks = [task for task in LOVR_TASKS.values() if task.name in granularity]
    want_clips = any(task.gallery == "clip" for task in tasks)
    want_videos = any(task.gallery == "video" for task in tasks)
    data = EvalData(
        clip_ids=[clip["clip_id"] for clip in clips] if want_clips else [],
        video_ids=[video["video_id"] for video in videos if video["caption"] is not None] if want_videos else [],
        queries={task.name: _queries(task, clips, videos, themes) for task in tasks},
        jobs=[],
    )
    by_video: dict[str, list[Segment]] = {}
    root = _VideoRoot(video_root)
    paths = {v["video_id"]: root.join(v["video_path"], f"video {v['video_id']!r}: video_path") for v in videos}
    for clip in clips if want_clips else []:
        where = f"clip {clip['clip_id']!r}: "
        long_video = paths.get(clip["video_id"]) or root.join(clip["video_path"], where + "video_path")
        if clip["start"] is not None and clip["end"] is not None and long_video is not None:
            paths.setdefault(clip["video_id"], long_video)
            by_video.setdefault(clip["video_id"], []).append(
                Segment(clip["clip_id"], "clip", clip["start"], clip["end"])
            )
        elif clip["clip_path"] is not None:
            clip_file = root.join(clip["clip_path"], where + "clip_path")
            data.jobs.append(VideoJob(clip["clip_id"], clip_file, [Segment(clip["clip_id"], "clip")]))
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
