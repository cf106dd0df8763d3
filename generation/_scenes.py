"""Scene detection for stage 1: PySceneDetect's `ContentDetector` run once per video, thresholds replayed.

The detector's frame score does not depend on its threshold: only the cut decision does (`score >= threshold`,
then PySceneDetect's own `FlashFilter` enforcing the minimum scene length). So the video is decoded once, every
frame's score is kept, and any threshold is answered by replaying the decision with a fresh `FlashFilter`.
This gives exactly PySceneDetect's cuts (a test checks it against `SceneManager`), and LoVR's adaptive threshold
loop costs no extra decoding (the original decoded the whole video again at every step).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import scenedetect
from scenedetect import ContentDetector, FrameTimecode, SceneManager, open_video, split_video_ffmpeg
from scenedetect.detector import FlashFilter
from scenedetect.scene_manager import get_scenes_from_cuts

from lovr_common.video import VideoError

logger = logging.getLogger(__name__)

# What a clip file's ffmpeg call does. Re-encoding decodes from the keyframe before the start and drops frames up
# to it, so cuts are frame-accurate; a stream copy can only start on a keyframe, so its cuts are keyframe-accurate.
CLIP_FFMPEG_ARGS = {
    "reencode": "-map 0:v:0 -map 0:a? -c:v libx264 -preset veryfast -crf 22 -c:a aac",
    "copy": "-map 0:v:0 -map 0:a? -c copy",
}


@dataclass
class DetectionSettings:
    """How scenes are cut; LoVR's settings are the defaults.

    threshold (`float`, defaults to 34.0): `ContentDetector` threshold on the frame score (mean HSV change).
    min_scene_seconds (`float`, defaults to 5.0): minimum clip length, turned into whole frames of the video.
    downscale (`int`, defaults to 3): frames are shrunk by this factor before scoring (1: full size).
    backend (`str`, defaults to "opencv"): PySceneDetect's decoder, "opencv" (as `scenedetect.detect`) or "pyav".
    adaptive (`bool`): scale the threshold by 0.9 (too few clips) or 1.1 (too many) until the video has between
        `adaptive_min_clips` and `adaptive_max_clips` clips, as in LoVR's code, at most `adaptive_max_iterations`
        times; the attempt closest to the range wins.
    low_dynamic_threshold (`float`, *optional*): mark (never drop) clips whose mean frame score, excluding the
        score of their first frame (the cut itself), is below this value. Off when unset.
    """

    threshold: float = field(default=34.0, metadata={"help": "ContentDetector threshold (LoVR: 34)."})
    min_scene_seconds: float = field(default=5.0, metadata={"help": "Minimum clip length in seconds (LoVR: 5)."})
    downscale: int = field(default=3, metadata={"help": "Downscale factor before scoring (LoVR: 3)."})
    backend: Literal["opencv", "pyav"] = field(default="opencv", metadata={"help": "PySceneDetect decoder."})
    adaptive: bool = field(default=False, metadata={"help": "Adapt the threshold towards a target clip count."})
    adaptive_min_clips: int = field(default=64, metadata={"help": "Adaptive target: at least this many clips."})
    adaptive_max_clips: int = field(default=100, metadata={"help": "Adaptive target: at most this many clips."})
    adaptive_max_iterations: int = field(default=20, metadata={"help": "Adaptive: at most this many thresholds."})
    low_dynamic_threshold: float | None = field(
        default=None, metadata={"help": "Mark clips whose mean frame score is below this (off when unset)."}
    )

    def __post_init__(self):
        if self.threshold <= 0 or self.min_scene_seconds < 0 or self.downscale < 1:
            raise ValueError(
                f"DetectionSettings: expected threshold > 0, min_scene_seconds >= 0, downscale >= 1; got "
                f"threshold={self.threshold}, min_scene_seconds={self.min_scene_seconds}, downscale={self.downscale}"
            )
        if not 1 <= self.adaptive_min_clips <= self.adaptive_max_clips or self.adaptive_max_iterations < 1:
            raise ValueError(
                "DetectionSettings: expected 1 <= adaptive_min_clips <= adaptive_max_clips and "
                f"adaptive_max_iterations >= 1; got {self.adaptive_min_clips}, {self.adaptive_max_clips}, "
                f"{self.adaptive_max_iterations}"
            )


class _ScoreRecorder(ContentDetector):
    """A `ContentDetector` that also keeps every frame's position and score (its `_frame_score`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.positions: list[FrameTimecode] = []
        self.scores: list[float] = []

    def process_frame(self, timecode, frame_img):
        cuts = super().process_frame(timecode, frame_img)
        self.positions.append(timecode)
        self.scores.append(self._frame_score)
        return cuts


@dataclass
class ScoreTrack:
    """Every decoded frame's position and content score, and the span PySceneDetect reports for the video."""

    positions: list[FrameTimecode]
    scores: np.ndarray
    start: FrameTimecode
    end: FrameTimecode
    min_scene_len: int  # frames

    def scenes_at(self, threshold: float) -> list[tuple[FrameTimecode, FrameTimecode]]:
        """The scenes `ContentDetector(threshold, min_scene_len)` finds, from the kept scores."""
        flash_filter = FlashFilter(mode=FlashFilter.Mode.MERGE, length=self.min_scene_len)
        cuts = []
        for position, score in zip(self.positions, self.scores, strict=True):
            cuts += flash_filter.filter(timecode=position, above_threshold=bool(score >= threshold))
        return get_scenes_from_cuts(sorted(set(cuts)), start_pos=self.start, end_pos=self.end)


def score_video(path: Path, fps: float, settings: DetectionSettings) -> ScoreTrack:
    """Decode `path` once with PySceneDetect and keep every frame's content score.

    PySceneDetect's decoders end silently at a run of undecodable packets, taking it for the end of the video
    (OpenCV after 5 failed grabs, PyAV after 8 failed packets): the track holds what decoded, which may be less
    than the container claims (`generation.segment.decoded_coverage` checks).
    """
    min_scene_len = max(1, round(settings.min_scene_seconds * fps))
    detector = _ScoreRecorder(threshold=settings.threshold, min_scene_len=min_scene_len)
    manager = SceneManager()
    manager.auto_downscale = False
    manager.downscale = settings.downscale
    manager.add_detector(detector)
    try:
        video = open_video(str(path), backend=settings.backend)
    except scenedetect.VideoOpenFailure as err:
        raise VideoError(path, f"PySceneDetect cannot open it ({err})") from err
    manager.detect_scenes(video=video)
    scenes = manager.get_scene_list(start_in_scene=True)
    if not scenes or not detector.positions:
        raise VideoError(path, "PySceneDetect decoded no frame")
    return ScoreTrack(detector.positions, np.asarray(detector.scores), scenes[0][0], scenes[-1][1], min_scene_len)


def choose_scenes(track: ScoreTrack, settings: DetectionSettings) -> tuple[list, dict]:
    """The scenes at `settings.threshold`, or LoVR's adaptive loop's result; returns (scenes, what was done)."""
    threshold = settings.threshold
    if not settings.adaptive:
        return track.scenes_at(threshold), {"threshold": threshold}
    low, high = settings.adaptive_min_clips, settings.adaptive_max_clips
    attempts = []  # (clips missing from the target range, scenes, threshold)
    while len(attempts) < settings.adaptive_max_iterations:
        scenes = track.scenes_at(threshold)
        attempts.append((max(low - len(scenes), len(scenes) - high, 0), scenes, threshold))
        if attempts[-1][0] == 0:
            break
        threshold *= 0.9 if len(scenes) < low else 1.1
    miss, scenes, threshold = min(attempts, key=lambda attempt: attempt[0])  # the first of the closest
    return scenes, {"threshold": threshold, "adaptive_iterations": len(attempts), "adaptive_converged": miss == 0}


def low_dynamic_mark(track: ScoreTrack, start_frame: int, end_frame: int, threshold: float) -> dict:
    """LoVR's low-dynamic filter as a documented rule: a clip is flagged when its mean frame score (mean HSV
    change between consecutive frames, on PySceneDetect's scale), over its frames after the first, is below
    `threshold`. The clip is kept; the mark carries the measured value and the rule."""
    frame_nums = np.fromiter((p.frame_num for p in track.positions), dtype=np.int64, count=len(track.positions))
    inside = (frame_nums > start_frame) & (frame_nums < end_frame)
    value = float(track.scores[inside].mean()) if inside.any() else 0.0
    return {"flagged": value < threshold, "value": round(value, 4), "rule": f"mean_content_score < {threshold}"}


def write_clip_files(
    path: Path, scenes: list, clip_ids: list[str], out_dir: Path, mode: Literal["reencode", "copy"]
) -> list[Path]:
    """Write one file per scene with ffmpeg through PySceneDetect's `split_video_ffmpeg`, named `<clip_id>.mp4`
    (re-encoded) or `<clip_id><source suffix>` (stream copy)."""
    suffix = ".mp4" if mode == "reencode" else path.suffix
    names = [f"{clip_id}{suffix}" for clip_id in clip_ids]
    out_dir.mkdir(parents=True, exist_ok=True)
    status = split_video_ffmpeg(
        str(path),
        scenes,
        output_dir=out_dir,
        arg_override=CLIP_FFMPEG_ARGS[mode],
        formatter=lambda video, scene: names[scene.index],
    )
    if status != 0:
        raise VideoError(path, f"ffmpeg exited with status {status} while writing clips ({mode})")
    return [out_dir / name for name in names]


def settings_record(settings: DetectionSettings, track: ScoreTrack) -> dict:
    """The settings written into every segments record."""
    return {
        **asdict(settings),
        "min_scene_len_frames": track.min_scene_len,
        "detector": "scenedetect.ContentDetector",
        "scenedetect_version": scenedetect.__version__,
    }
