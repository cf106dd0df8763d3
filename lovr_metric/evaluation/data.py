"""Data in: the rows of a LoVR dataset, and from them the texts to embed and the video files to decode.

`load_rows` reads the `clips` (every split), `videos` and, when present, `themes` configs of an export folder or a
Hub dataset with `datasets.load_dataset`; `dataset_fingerprint` hashes them, so that two runs can tell whether they
ranked the same rows.

`plan` turns the rows into queries, galleries and decode jobs (`EvalData`, `frames.VideoJob`s). Clips with a time
range (a run folder's virtual clips) are cut from their long video, so one decode pass of that video yields all its
clips and the video embedding itself. Clips known only by their own file (the official release) are decoded file by
file, and the long video (`video_path`) in a job of its own. Every path must stay inside the video root, as
`lovr_dataset` requires of a release. `plan_queries` and `ClipRows` are the parts a protocol that places its jobs
otherwise reuses (`lovr_original.py`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import xxhash

from lovr_common.model_source import check_model_source
from lovr_common.run_folder import check_clip_span
from lovr_metric.evaluation.frames import Segment, VideoJob
from lovr_metric.evaluation.tasks import LOVR_TASKS, QUERY_SPLIT, Task


class LoVRRows(NamedTuple):
    """The rows of a LoVR dataset: every clip (both splits), every video, every theme (empty without a `themes`
    config)."""

    clips: list[dict]
    videos: list[dict]
    themes: list[dict]


def load_rows(dataset: str | os.PathLike, cache_dir: str | None = None) -> LoVRRows:
    """Read the `clips`, `videos` and (when present) `themes` configs of `dataset`, an export folder or a Hub id;
    raises `ValueError` when it lacks the clips or videos config."""
    from datasets import get_dataset_config_names, load_dataset

    dataset = str(dataset)
    check_model_source(dataset, argument="dataset", kind="dataset")
    names = get_dataset_config_names(dataset)
    missing = [name for name in ("clips", "videos") if name not in names]
    if missing:
        raise ValueError(
            f"dataset={dataset!r} has no {missing} config(s) (it has {names}); expected a LoVR dataset "
            "(python -m lovr_dataset export)"
        )

    def rows(name: str) -> list[dict]:
        parts = load_dataset(dataset, name, cache_dir=cache_dir)
        return [row for split in parts.values() for row in split.to_list()]  # Arrow to rows at once, not row by row

    return LoVRRows(rows("clips"), rows("videos"), rows("themes") if "themes" in names else [])


# The prefix of `dataset_fingerprint`'s values; an earlier toolkit hashed the same rows another way: without a prefix
# (before 2026-12-07), then with "2-" (SHA-256 of the same bytes).
FINGERPRINT_SCHEME = "3-"


def dataset_fingerprint(rows: LoVRRows) -> str:
    """A hash of every value of the clips, videos and themes configs (column by column, rows in order): two runs
    with the same fingerprint ranked the same queries against the same galleries. A column's texts are hashed as
    their lengths and their UTF-8 bytes, one after the other, with XXH3 (128 bits; `datasets` fingerprints with it
    too): JSON-encoding every row took 1-1.5 s at LoVR's scale (290 MB of captions), SHA-256 of the bytes
    0.35 s, this 0.19 s. The value starts with `FINGERPRINT_SCHEME`: `compare` tells a run hashed by an earlier
    scheme from one of other rows."""
    digest = xxhash.xxh3_128()
    for name, part in zip(LoVRRows._fields, rows, strict=True):
        columns = sorted({key for row in part for key in row})
        digest.update(json.dumps([name, len(part), columns]).encode())
        for column in columns:
            values = [row.get(column) for row in part]
            # Texts as null in the JSON, their lengths apart (-1: no text): a null and a text differ, and the
            # lengths say where each text ends in the bytes that follow.
            skeleton = [None if isinstance(value, str) else value for value in values]
            lengths = [len(value) if isinstance(value, str) else -1 for value in values]
            digest.update(json.dumps([skeleton, lengths], sort_keys=True, default=str).encode())
            for value in values:
                if isinstance(value, str):
                    digest.update(value.encode())
    return f"{FINGERPRINT_SCHEME}{digest.hexdigest()[:16]}"


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


class VideoRoot:
    """The folder that `clip_path` and `video_path` start from; a path is refused when its text leads out of it.

    The rows come from a dataset, perhaps downloaded: their text must not make the evaluation read files elsewhere.
    Symlinks inside the root are the user's own (a video root of links to where the videos are stored is common),
    so they are followed; the release's own symlinks are checked when it is exported (`lovr_dataset`).
    """

    def __init__(self, root: Path):
        self.root = root
        self._folders: dict[str, Path] = {}  # relative folder -> root / folder

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
            # The same path, its folder parsed once: pathlib parsed every part of 40,804 clip paths anew (0.2 s).
            folder, _, name = relpath.rpartition("/")
            if folder not in self._folders:
                self._folders[folder] = self.root / folder
            return self._folders[folder] / name
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


def plan_queries(clips: list[dict], videos: list[dict], themes: list[dict], granularity) -> EvalData:
    """The galleries and queries of the tasks `granularity` names (among `LOVR_TASKS`), with no job yet. Raises
    `ValueError` for an unknown granularity or an empty query text."""
    unknown = sorted(set(granularity) - set(LOVR_TASKS))
    if unknown:
        raise ValueError(f"granularity={list(granularity)} names {unknown}, expected a subset of {list(LOVR_TASKS)}")
    tasks = [task for task in LOVR_TASKS.values() if task.name in granularity]
    return EvalData(
        clip_ids=[clip["clip_id"] for clip in clips] if any(t.gallery == "clip" for t in tasks) else [],
        video_ids=[v["video_id"] for v in videos if v["caption"] is not None]
        if any(t.gallery == "video" for t in tasks)
        else [],
        queries={task.name: _queries(task, clips, videos, themes) for task in tasks},
        jobs=[],
    )


class ClipRows:
    """Where each clip row's frames are: its time range in its long video's file, or its own file. Checks the
    paths (`VideoRoot`) and the time ranges (`lovr_common.run_folder.check_clip_span`) as it goes."""

    def __init__(self, videos: list[dict], video_root: Path):
        self.root = VideoRoot(video_root)
        self.paths = {
            v["video_id"]: self.root.join(v["video_path"], f"video {v['video_id']!r}: video_path") for v in videos
        }
        self.durations = {video["video_id"]: video.get("duration") for video in videos}

    def time_range(self, clip: dict) -> tuple[Path, Segment] | None:
        """(the long video's file, the clip's segment in it) for a clip with a time range, else None."""
        if clip["start"] is not None or clip["end"] is not None:
            check_clip_span(
                clip["start"], clip["end"], self.durations.get(clip["video_id"]), f"clips row {clip['clip_id']!r}"
            )
        where = f"clip {clip['clip_id']!r}: "
        long_video = self.paths.get(clip["video_id"]) or self.root.join(clip["video_path"], where + "video_path")
        if clip["start"] is None or clip["end"] is None or long_video is None:
            return None
        self.paths.setdefault(clip["video_id"], long_video)
        return long_video, Segment(clip["clip_id"], "clip", clip["start"], clip["end"])

    def add_video_jobs(self, data: EvalData, by_video: dict[str, list[Segment]], job: type = VideoJob) -> None:
        """A `job` per long video of `by_video` over its segments; a video without a `video_path` has its segments
        listed as missing instead."""
        for video_id, segments in by_video.items():
            if self.paths.get(video_id) is None:
                data.missing.extend({"id": s.key, "path": None, "reason": "no video_path"} for s in segments)
            else:
                data.jobs.append(job(video_id, self.paths[video_id], segments))

    def clip_file(self, clip: dict) -> Path | None:
        """The clip's own file, or None."""
        return self.root.join(clip["clip_path"], f"clip {clip['clip_id']!r}: clip_path")


def plan(clips: list[dict], videos: list[dict], themes: list[dict], video_root: Path, granularity) -> EvalData:
    """Turn the rows of the `clips`, `videos` and `themes` configs into queries, galleries and decode jobs: a clip
    with a time range joins its long video's job, a clip with a file of its own gets a job, a video its own file's.

    `granularity` names the tasks to plan, among `LOVR_TASKS`. Raises `ValueError` for an unknown granularity, for a
    clip time range that is not one (`lovr_common.run_folder.check_clip_span`: reversed, negative, not finite, or
    past its video's `duration`), and for a `clip_path` or `video_path` whose text leads outside `video_root`
    (absolute, or `..` climbing out); symlinks in the root are followed."""
    data = plan_queries(clips, videos, themes, granularity)
    rows = ClipRows(videos, video_root)
    by_video: dict[str, list[Segment]] = {}
    for clip in clips if data.clip_ids else []:
        if (placed := rows.time_range(clip)) is not None:
            by_video.setdefault(clip["video_id"], []).append(placed[1])
        elif (clip_file := rows.clip_file(clip)) is not None:
            data.jobs.append(VideoJob(clip["clip_id"], clip_file, [Segment(clip["clip_id"], "clip")]))
        else:
            data.missing.append({"id": clip["clip_id"], "path": None, "reason": "no clip file and no time range"})
    for video_id in data.video_ids:
        by_video.setdefault(video_id, []).append(Segment(video_id, "video"))
    rows.add_video_jobs(data, by_video)
    return data
