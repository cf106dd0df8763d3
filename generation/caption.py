"""Stage 2: caption every clip of `W/segments.jsonl` with a vision-language model into `W/captions.jsonl`.

    accelerate launch -m generation.caption --workdir runs/demo --model Qwen/Qwen2.5-VL-7B-Instruct
    python -m generation.caption --workdir runs/demo --model Qwen/Qwen2.5-VL-72B-Instruct --endpoint http://localhost:8000/v1

Frames are decoded straight from the source video by the clip's time range (no temporary clip files), spread
evenly over the clip; how many follows LoVR's rule (one per second, 8 to 64, 2 for clips under 8 frames; clips
under 5 frames are not captioned), capped by `--max_frames`. A clip reaches a video-capable model as one video with
its frame timing, as LoVR captioned with Qwen2.5-VL's video input (the processor's `videos=` with the clip's
`video_metadata`, or a `video_url` part at an endpoint), and any other model as a list of images
(`--visual_input auto|video|images`, `generation.backends`); the form used is recorded with every caption
(`settings.visual_input`). transformers builds video-capable processors only with torchvision: without it such a
model is served (`--endpoint`). Images go through the image processor's PIL backend unless
`--image_processor_backend torchvision` (the class used is recorded). Prompts and sampling settings default to LoVR's and are
recorded with every caption. Records are keyed by clip id: a clip that fails gets `status: failed` with the
reason (also in `W/failures.jsonl`) and can never shift a caption onto another clip. A rerun skips clips already
captioned and retries failed ones; the exit status is non-zero when clips failed. The run folder is locked for the
whole stage (`lovr_common.run_folder.workdir_lock`): a second run on it is refused. A damaged `segments.jsonl` (a
malformed or cut-short line, a video id on two lines) is an error naming the file and line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generation.backends import (
    BackendArguments,
    ChatBackend,
    ChatRequest,
    ClipVideo,
    EndpointOptions,
    GenerationParams,
    load_backend,
)
from generation.options import FrameOptions, RunFolder
from generation.outcome import Failed
from generation.stage import FailureLog, run_sharded, stage_main
from lovr_common.processes import process_state
from lovr_common.provenance import is_random_weights
from lovr_common.run_folder import (
    CAPTIONS,
    SEGMENTS,
    CaptionRecord,
    failures_path,
    read_merged,
    require_stage_file,
    workdir_lock,
)
from lovr_common.video import (
    LOVR_MIN_CLIP_FRAMES,
    decode_frames_at,
    is_captionable,
    lovr_caption_num_frames,
    uniform_times,
)

logger = logging.getLogger(__name__)

LOVR_SYSTEM_PROMPT = (
    "You are a video analysis assistant, and your task is to provide a detailed and structured description of the "
    "provided video."
)
# The user prompt of the original code, and the one shown in the paper's figure.
PROMPTS = {
    "lovr-code-v1": (
        LOVR_SYSTEM_PROMPT,
        "Please provide a detailed and comprehensive description of the video content. Your description should "
        "cover the events, scenes, character actions, overall style, emotional atmosphere, narrative elements, and "
        "any noteworthy details. Ensure that your description is clear, coherent, and thorough, with as much detail "
        "as possible.",
    ),
    "lovr-paper-v1": (
        LOVR_SYSTEM_PROMPT,
        "Please describe the content of the video, including key events, scene settings, character actions, and "
        "overall style. Your description should be clear, coherent, and thorough, with as much detail as possible.",
    ),
}


@dataclass
class CaptionSettings(FrameOptions):
    """How a clip is captioned (besides the model and the sampling settings): its frames (`FrameOptions`:
    `max_frames`, defaults to 64, lower it on small machines; `max_side`), and

    prompt_version (`str`, defaults to "lovr-code-v1"): a key of `PROMPTS`.
    num_frames (`int`, *optional*): frames per clip; by default LoVR's rule.
    attempt (`int`, defaults to 1): recorded with the caption; refinement counts its rounds with it.
    """

    prompt_version: str = field(default="lovr-code-v1", metadata={"help": f"One of {sorted(PROMPTS)}."})
    num_frames: int | None = field(default=None, metadata={"help": "Frames per clip (default: LoVR's rule)."})
    attempt: int = field(default=1, metadata={"help": "Attempt number recorded with each caption."})

    def __post_init__(self):
        super().__post_init__()
        if self.prompt_version not in PROMPTS:
            raise ValueError(f"prompt_version must be one of {sorted(PROMPTS)}, but got {self.prompt_version!r}")
        for name in ("num_frames", "attempt"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, but got {name}={value}")


@dataclass
class CaptionArguments(RunFolder):
    """The run: which folder (holding `segments.jsonl`), how many clips per generation call."""

    batch_size: int = field(default=8, metadata={"help": "Clips per generation call (per process)."})

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, but got batch_size={self.batch_size}")


@dataclass
class CaptionJob:
    """Everything `generation.caption` runs with: the run folder, how clips are captioned, sampling, the model and
    how its server is reached."""

    run: CaptionArguments
    settings: CaptionSettings
    params: GenerationParams
    backend: BackendArguments
    connection: EndpointOptions = field(default_factory=EndpointOptions)

    @property
    def workdir(self) -> str:
        return self.run.workdir


@dataclass
class CaptionSummary:
    """Every captions record of the run's clips, by clip id, and where failures are logged."""

    records: dict[str, CaptionRecord]
    num_clips: int
    workdir: Path

    @property
    def num_failed(self) -> int:
        return sum(record["status"] == "failed" for record in self.records.values())

    @property
    def failed(self) -> bool:
        return self.num_failed > 0

    def report(self) -> str:
        """A line only when clips failed."""
        if not self.failed:
            return ""
        return (
            f"captions: {self.num_failed} of {self.num_clips} clips failed; reasons in {failures_path(self.workdir)}"
        )


def clips_from_segments(workdir: str | Path) -> list[dict]:
    """Every clip of the videos segmented without error, with what captioning needs to find its frames."""
    path = require_stage_file(workdir, SEGMENTS, "generation.caption")
    clips = []
    for video in read_merged(path, SEGMENTS.key).values():
        if video.get("status") != "ok":
            continue
        video_path = Path(video["videos_dir"]) / video["video_path"]
        for clip in video["clips"]:
            clips.append(
                {
                    "clip_id": clip["clip_id"],
                    "video_id": video["video_id"],
                    "video_path": str(video_path),
                    "start": clip["start"],
                    "end": clip["end"],
                    "frame_count": clip["end_frame"] - clip["start_frame"],
                    "fps": video["fps"],
                    "duration": video["duration"],
                    "size": (video["width"], video["height"]),
                }
            )
    return clips


def clip_frame_count(clip: dict, settings: CaptionSettings) -> int:
    """How many frames caption `clip`: `settings.num_frames`, else LoVR's rule, capped at `settings.max_frames`."""
    if settings.num_frames is not None:
        return min(settings.num_frames, settings.max_frames)
    return min(lovr_caption_num_frames(clip["frame_count"], clip["fps"]), settings.max_frames)


def _decode_size(clip: dict, max_side: int | None) -> tuple[int, int] | None:
    width, height = clip["size"]
    if max_side is None or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    # Even sizes keep FFmpeg's scaler happy with chroma-subsampled sources.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _clip_times(clip: dict, settings: CaptionSettings) -> list[float]:
    """The times of the clip's frames, or raise `ValueError` saying why it cannot be captioned."""
    if not is_captionable(clip["frame_count"]):
        raise ValueError(
            f"clip has {clip['frame_count']} frames, fewer than LoVR's minimum of {LOVR_MIN_CLIP_FRAMES} to caption"
        )
    if not 0 <= clip["start"] < clip["end"] <= clip["duration"] + 1 / clip["fps"]:
        raise ValueError(
            f"clip time range [{clip['start']}, {clip['end']}) s is not inside its video of {clip['duration']} s"
        )
    return uniform_times(clip["start"], clip["end"], clip_frame_count(clip, settings))


def decode_clip_frames(
    clips: Sequence[dict], times_of: Callable[[dict], list[float]], max_side: int | None = None
) -> list[list[np.ndarray] | Failed]:
    """For each clip the frames nearest to `times_of(clip)`, or `Failed` saying why it has none (a `ValueError`
    raised by `times_of`, or the source video failing to decode). The clips of one source video are decoded in a
    single pass: one call per clip would decode again from the keyframe before each clip."""
    frames: list[list[np.ndarray] | Failed] = [Failed("not decoded")] * len(clips)
    wanted: dict[str, list[tuple[int, list[float]]]] = {}
    for i, clip in enumerate(clips):
        try:
            times = times_of(clip)
        except ValueError as err:
            frames[i] = Failed(str(err))
            continue
        wanted.setdefault(clip["video_path"], []).append((i, times))
    for path, clip_times in wanted.items():
        size = _decode_size(clips[clip_times[0][0]], max_side)
        try:
            decoded = decode_frames_at(path, [t for _, times in clip_times for t in times], size=size)
        except (ValueError, OSError) as err:  # VideoError is a ValueError
            for i, _ in clip_times:
                frames[i] = Failed(str(err))
            continue
        offset = 0
        for i, times in clip_times:
            frames[i] = list(decoded[offset : offset + len(times)])
            offset += len(times)
    return frames


def caption_settings_record(
    backend: ChatBackend, settings: CaptionSettings, params: GenerationParams, num_frames: int | None
) -> dict:
    """The `settings` dict stored with a caption (see CONTRIBUTING.md)."""
    return {
        "model": backend.model,
        "revision": backend.revision,
        "backend": type(backend).__name__,
        "image_processor": getattr(backend, "image_processor", None),
        "visual_input": getattr(backend, "visual_input", None),
        "prompt_version": settings.prompt_version,
        "num_frames": num_frames,
        **params.to_dict(),
        "attempt": settings.attempt,
        "random_weights": is_random_weights(backend.model),
    }


def clip_video(clip: dict, frames: Sequence[np.ndarray], settings: CaptionSettings) -> ClipVideo:
    """The clip's frames as one video: each frame's index counted from the clip's first frame, at the source's rate
    (the frames lie at `_clip_times`)."""
    last = max(clip["frame_count"] - 1, 0)
    indices = [min(last, max(0, round((t - clip["start"]) * clip["fps"]))) for t in _clip_times(clip, settings)]
    return ClipVideo(frames, fps=clip["fps"], frames_indices=indices, total_num_frames=clip["frame_count"])


def caption_frames(clips: Sequence[dict], settings: CaptionSettings) -> list[list[np.ndarray] | Failed]:
    """The frames `caption_clips` captions each clip from (or why it has none), decoded one pass per video."""
    return decode_clip_frames(clips, lambda clip: _clip_times(clip, settings), settings.max_side)


def caption_clips(
    clips: Sequence[dict],
    backend: ChatBackend,
    settings: CaptionSettings,
    params: GenerationParams,
    frames: list[list[np.ndarray] | Failed] | None = None,
) -> dict[str, CaptionRecord]:
    """Caption `clips` (dicts as made by `clips_from_segments`) in one generation call: one record per clip id,
    in the order of `clips`, with `status` "ok" and the caption, or "failed" and the reason. `frames` are
    `caption_frames(clips, settings)` when already decoded."""
    system, user = PROMPTS[settings.prompt_version]
    if frames is None:
        frames = caption_frames(clips, settings)
    requests = [
        ChatRequest(user=user, system=system, video=clip_video(clip, f, settings))
        for clip, f in zip(clips, frames, strict=True)
        if not isinstance(f, Failed)
    ]
    replies = iter(backend.generate(requests, params) if requests else [])  # in the order of the decoded clips
    records = {}
    for clip, clip_frames in zip(clips, frames, strict=True):
        record = {"clip_id": clip["clip_id"], "video_id": clip["video_id"]}
        if isinstance(clip_frames, Failed):
            record.update(caption=None, status="failed", reason=clip_frames.reason)
        elif (result := next(replies)).ok:
            record.update(caption=result.text, status="ok")
        else:
            record.update(caption=None, status="failed", reason=result.error)
        num_frames = None if isinstance(clip_frames, Failed) else len(clip_frames)
        record["settings"] = caption_settings_record(backend, settings, params, num_frames)
        records[clip["clip_id"]] = record
    return records


def run(job: CaptionJob, backend: ChatBackend | None = None) -> CaptionSummary:
    """Caption every clip of `W/segments.jsonl` not captioned yet (`backend`: a loaded model, else `job.backend`)."""
    state = process_state()
    with workdir_lock(job.workdir, create=False):
        clips = clips_from_segments(job.workdir)
        backend = backend or load_backend(job.backend, device=state.device, connection=job.connection)
        if is_random_weights(job.backend.model) and state.is_main_process:
            logger.warning("%s has random weights: its captions are meaningless", job.backend.model)
        records = run_sharded(
            workdir=job.workdir,
            stage=CAPTIONS,
            items=clips,
            # the next batch's frames are decoded while this one's captions are generated
            prepare=lambda batch: caption_frames(batch, job.settings),
            process_batch=lambda batch, frames: caption_clips(
                batch, backend, job.settings, job.params, frames
            ).values(),
            batch_size=job.run.batch_size,
            is_done=lambda record: record.get("status") == "ok",
            failures=FailureLog(
                CAPTIONS.name, reason=lambda record: record.get("reason"), path=lambda clip: clip["video_path"]
            ),
            desc="caption",
        )
    summary = CaptionSummary(records, len(clips), Path(job.workdir))
    if state.is_main_process:
        logger.info(
            "captions: %d of %d clips captioned, %d failed",
            len(records) - summary.num_failed,
            len(clips),
            summary.num_failed,
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("generation.caption", CaptionJob, run, argv)


if __name__ == "__main__":
    sys.exit(main())
