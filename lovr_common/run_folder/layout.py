"""The names and record shapes of a run folder `W`: written by `generation`, read by `lovr_dataset` and `model_cards`.

    W/segments.jsonl   SEGMENTS: one `SegmentRecord` per source video (key `video_id`), its clips as time ranges
    W/captions.jsonl   CAPTIONS: one `CaptionRecord` per clip (key `clip_id`), enriched in place by refinement
    W/videos.jsonl     VIDEOS:   one `VideoRecord` per video (key `video_id`), the fused caption
    W/review.jsonl     the human review queue, one `ReviewLine` per clip below the threshold
    W/failures.jsonl   the failure log, one `FailureRecord` per input a stage could not process
    W/.shards/         per-process shards `<stage>-<rank>.jsonl` of a stage being written
    W/.lock            the lock that gives the folder one writer

Ids: `video_id` is the source file's stem; `clip_id = clip_id_of(video_id, n)`, n from 1 in time order. Every
stage record carries `status` (`"ok"` or `"failed"`), `reason` when failed, and `settings` (what produced it).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

SHARD_DIR = ".shards"
LOCK_FILE = ".lock"
REVIEW_FILE = "review.jsonl"
FAILURES_FILE = "failures.jsonl"
CLIPS_DIR = "clips"  # W/clips/<video_id>/<clip_id>.mp4, the official release's layout
# How far past its video's `duration` a clip may end: that duration is what the container claims, and the end of
# the last decoded frame (where segmentation ends the last clip) may lie a frame or two beyond it.
CLIP_END_SLACK_SECONDS = 0.5

Status = Literal["ok", "failed"]


R = TypeVar("R")


class LowDynamic(TypedDict):
    flagged: bool
    value: float
    rule: str


class Decoded(TypedDict):
    """What decoding a source video actually gave: frames, the end of the last one (s), frames / claimed frames."""

    frames: int
    end: float
    coverage: float


class ClipSpan(TypedDict):
    """One clip of a segments record: a time range of its source video (`end` exclusive, seconds)."""

    clip_id: str
    clip_index: int
    start: float
    end: float
    start_frame: int
    end_frame: int
    clip_path: str | None  # relative to W, when `--write-clips` wrote a file
    low_dynamic: LowDynamic | None  # None when the filter did not run


def check_clip_span(start: Any, end: Any, duration: Any, where: str) -> None:
    """Refuse a clip time range that is not one: `start` and `end` must be finite numbers of seconds (a bool is not
    one) with `0 <= start < end`, and `end` at most `duration` (+ `CLIP_END_SLACK_SECONDS`) when `duration` is known
    (not None). Raises `ValueError` starting with `where` (the file and line, and the clip), naming the values."""
    named = {"start": start, "end": end} | ({} if duration is None else {"duration": duration})
    for name, value in named.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{where}: {name}={value!r}; expected a finite number of seconds")
    if start < 0 or end <= start:
        raise ValueError(f"{where}: start={start!r}, end={end!r}; expected 0 <= start < end (seconds, end exclusive)")
    if duration is not None and end > duration + CLIP_END_SLACK_SECONDS:
        raise ValueError(
            f"{where}: end={end!r} lies past the end of its video, duration={duration!r}; expected end <= duration"
        )


class SegmentRecord(TypedDict):
    video_id: str
    video_path: str  # relative to `videos_dir`
    videos_dir: str
    status: Status
    settings: dict[str, Any]
    duration: NotRequired[float]  # what the container claims
    fps: NotRequired[float]
    num_frames: NotRequired[int]
    width: NotRequired[int]
    height: NotRequired[int]
    decoded: NotRequired[Decoded]
    clips: NotRequired[list[ClipSpan]]
    reason: NotRequired[str]


ReviewState = Literal["pending", "accepted", "edited", "rejected"]


class CaptionRecord(TypedDict):
    clip_id: str
    video_id: str
    caption: str | None
    status: Status
    settings: dict[str, Any]
    reason: NotRequired[str]
    # Written by refinement: done once `score` is present.
    score: NotRequired[float]
    scorer: NotRequired[dict[str, Any]]
    attempts: NotRequired[list[dict[str, Any]]]
    review: NotRequired[ReviewState | None]
    refine: NotRequired[dict[str, Any]]  # {"status": "failed", "reason"} while a clip cannot be scored
    caption_source: NotRequired[Literal["human"]]  # set by a merged review edit


class Boundary(TypedDict):
    """One rewrite, linkage or summary call of a fused video; `reason` is None unless it fell back."""

    after: str  # a clip id
    kind: Literal["rewrite", "linkage", "summary"]
    status: Literal["ok", "fallback"]
    reason: str | None


class SkippedClip(TypedDict):
    clip_id: str
    reason: str


class VideoRecord(TypedDict):
    video_id: str
    caption: str | None
    status: Status
    settings: dict[str, Any]
    clip_ids: NotRequired[list[str]]
    num_clips: NotRequired[int]
    duration: NotRequired[float | None]
    clusters: NotRequired[list[list[str]]]  # clip ids
    boundaries: NotRequired[list[Boundary]]
    skipped_clips: NotRequired[list[SkippedClip]]
    inputs_sha256: NotRequired[str]
    reason: NotRequired[str]


class ReviewLine(TypedDict):
    """One line of `W/review.jsonl`; a person sets `decision` (and `reviewed_caption` for an edit)."""

    clip_id: str
    video_id: str
    caption: str
    score: float
    attempts: list[dict[str, Any]]
    reviewed_caption: str | None
    decision: Literal["accepted", "edited", "rejected"] | None


class FailureRecord(TypedDict):
    stage: str
    id: str
    path: str | None
    reason: str


@dataclass(frozen=True)
class StageFile(Generic[R]):
    """One merged stage file of a run folder: its stage name, the key of its records and the command writing it.

    Typed by its record (`StageFile[SegmentRecord]`), so that `load_records(W, SEGMENTS)` reads as segment records.
    """

    name: str
    key: str
    producer: str

    @property
    def filename(self) -> str:
        return f"{self.name}.jsonl"

    def path(self, workdir: str | os.PathLike) -> Path:
        """The merged file in run folder `workdir`."""
        return Path(workdir) / self.filename

    def shard_paths(self, workdir: str | os.PathLike) -> list[Path]:
        """The shards of this stage left in `workdir` (an interrupted or running write), in rank order."""
        return sorted((Path(workdir) / SHARD_DIR).glob(f"{self.name}-*.jsonl"))

    def shard_path(self, workdir: str | os.PathLike, rank: int) -> Path:
        """The shard process `rank` appends to."""
        return Path(workdir) / SHARD_DIR / f"{self.name}-{rank:05d}.jsonl"


SEGMENTS: StageFile[SegmentRecord] = StageFile("segments", "video_id", "generation.segment")
CAPTIONS: StageFile[CaptionRecord] = StageFile("captions", "clip_id", "generation.caption")
VIDEOS: StageFile[VideoRecord] = StageFile("videos", "video_id", "generation.fuse")
STAGE_FILES = (SEGMENTS, CAPTIONS, VIDEOS)


def clip_id_of(video_id: str, clip_index: int) -> str:
    """The id of the `clip_index`-th clip (from 1, in time order) of video `video_id`."""
    return f"{video_id}-Scene-{clip_index:03d}"
