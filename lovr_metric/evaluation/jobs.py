"""From LoVR dataset rows to the texts to embed and the video files to decode (`VideoJob`s).

Clips with a time range (a run folder's virtual clips) are cut from their long video, so one decode pass of that
video yields all its clips and the video embedding itself. Clips known only by their own file (the official
release) are decoded file by file, and the long video (`video_path`) in a job of its own; under `lovr-original`
(`video_from_clips`) a video is embedded from its clip files instead, all of them in one job. Every path must stay
inside the video root, as `lovr_dataset` requires of a release.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lovr_common.run_folder import check_clip_span
from lovr_metric.evaluation.frames import Segment, VideoJob
from lovr_metric.evaluation.tasks import LOVR_TASKS, QUERY_SPLIT, Task


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
    """The (text, relevant id) queries of `task`: captions of the query split's clips, video captions or themes.
    Raises `ValueError` for a query text that is empty or only whitespace: it says nothing of its item, and ranking
    it would count a guess in the metric (a caption not known is null, and is no query)."""
    if task.name == "clip":
        queries = [
            (c["caption"], c["clip_id"]) for c in clips if c["split"] == QUERY_SPLIT and c["caption"] is not None
        ]
    elif task.name == "video":
        queries = [(v["caption"], v["video_id"]) for v in videos if v["caption"] is not None]
    else:
        queries = [(t["theme"], t["clip_id"]) for t in themes]
    blank = [item for text, item in queries if not text.strip()]
    if blank:
        raise ValueError(
            f"{len(blank)} {task.description} are empty, e.g. that of {blank[0]!r}: an empty text cannot be a query; "
            "fix it in the dataset, or make it null (no caption known) to leave its item out of the queries"
        )
    return queries


def _scene_order(clip: dict) -> tuple[float, str]:
    """Where a clip comes in its video: its scene number (`clip_index`: Scene-1000 after Scene-999), then its id."""
    index = clip.get("clip_index")
    return (float("inf") if index is None else index, clip["clip_id"])


def plan(
    clips: list[dict],
    videos: list[dict],
    themes: list[dict],
    video_root: Path,
    granularity,
    video_from_clips: bool = False,
) -> EvalData:
    """Turn the rows of the `clips`, `videos` and `themes` configs into queries, galleries and decode jobs.

    `granularity` names the tasks to plan, among `LOVR_TASKS`. With `video_from_clips` (the `lovr-original`
    protocol) a video is embedded from its clips' frames: the clips of its time ranges go into its job whatever is
    ranked, and a video known by clip files gets one job over those of its files that exist, in scene order
    (`clip_index`; the original listed the video's clip folder, so a clip whose file is absent is left out of the
    video and listed as missing); a video without clips is listed as missing. Raises `ValueError` for an unknown
    granularity, for a clip time range that is not one (`lovr_common.run_folder.check_clip_span`: reversed, negative,
    not finite, or past its video's `duration`), and for a `clip_path` or `video_path` whose text leads outside
    `video_root` (absolute, or `..` climbing out); symlinks in the root are followed."""
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
    wanted_videos = set(data.video_ids)
    by_video: dict[str, list[Segment]] = {}
    clip_files: dict[str, list[tuple]] = {}  # video id -> [(scene order, clip id, file)], for video_from_clips
    root = _VideoRoot(video_root)
    paths = {v["video_id"]: root.join(v["video_path"], f"video {v['video_id']!r}: video_path") for v in videos}
    durations = {video["video_id"]: video.get("duration") for video in videos}
    for clip in clips if want_clips or video_from_clips else []:
        if not want_clips and clip["video_id"] not in wanted_videos:
            continue
        where = f"clip {clip['clip_id']!r}: "
        if clip["start"] is not None or clip["end"] is not None:
            check_clip_span(
                clip["start"], clip["end"], durations.get(clip["video_id"]), f"clips row {clip['clip_id']!r}"
            )
        long_video = paths.get(clip["video_id"]) or root.join(clip["video_path"], where + "video_path")
        if clip["start"] is not None and clip["end"] is not None and long_video is not None:
            paths.setdefault(clip["video_id"], long_video)
            by_video.setdefault(clip["video_id"], []).append(
                Segment(clip["clip_id"], "clip", clip["start"], clip["end"])
            )
        elif clip["clip_path"] is not None:
            clip_file = root.join(clip["clip_path"], where + "clip_path")
            if video_from_clips and clip["video_id"] in wanted_videos and not os.path.isfile(clip_file):
                # the original lists a video's clip folder: a clip without its file is not part of the video
                data.missing.append({"id": clip["clip_id"], "path": str(clip_file), "reason": "no such file"})
            elif video_from_clips and clip["video_id"] in wanted_videos:
                clip_files.setdefault(clip["video_id"], []).append((_scene_order(clip), clip["clip_id"], clip_file))
            elif want_clips:
                data.jobs.append(VideoJob(clip["clip_id"], clip_file, [Segment(clip["clip_id"], "clip")]))
        elif want_clips:
            data.missing.append({"id": clip["clip_id"], "path": None, "reason": "no clip file and no time range"})
    for video_id in data.video_ids:
        if video_from_clips and video_id in clip_files and video_id not in by_video:
            files = sorted(clip_files.pop(video_id))
            segments = [Segment(clip_id, "clip", part=i) for i, (_, clip_id, _) in enumerate(files)]
            parts = tuple(path for *_, path in files)
            segments.append(Segment(video_id, "video", part=None))
            data.jobs.append(VideoJob(video_id, parts[0].parent, segments, parts))
        elif video_from_clips and video_id not in by_video:
            data.missing.append({"id": video_id, "path": None, "reason": "no clips to take its frames from (the "
                                 "lovr-original protocol embeds a video from its clips)"})  # fmt: skip
        else:
            by_video.setdefault(video_id, []).append(Segment(video_id, "video"))
    for files in clip_files.values() if want_clips else []:  # a video with time-range clips too: files on their own
        data.jobs.extend(VideoJob(clip_id, path, [Segment(clip_id, "clip")]) for _, clip_id, path in files)
    for video_id, segments in by_video.items():
        if paths.get(video_id) is None:
            data.missing.extend({"id": s.key, "path": None, "reason": "no video_path"} for s in segments)
        else:
            data.jobs.append(VideoJob(video_id, paths[video_id], segments))
    return data
