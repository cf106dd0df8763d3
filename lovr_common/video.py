"""Video probing and frame decoding by time, shared by every stage that looks at pixels.

Frames come out as RGB `uint8` arrays of shape (H, W, 3), exactly as the decoder gives them: never flipped to
BGR (the original LoVR code did, so its baselines saw BGR images). Decoding goes through PyAV in one sequential
pass per call: frames that are not needed are decoded (a codec cannot skip them) but never converted to RGB. PyAV is
imported when a video is first opened: a command that decodes nothing (a re-run with every embedding cached) does not
wait for its import (0.3 s).

Times are seconds from the first frame of the video's first video stream (its timestamp is subtracted: containers
such as AVI may start at a non-zero one), the clock PySceneDetect and `W/segments.jsonl` use.

Example:
    >>> from lovr_standins.videos import sample_video
    >>> from lovr_common.video import decode_frames_at, probe, uniform_times
    >>> info = probe(sample_video("bikes"))
    >>> (info.num_frames, info.fps, info.width, info.height)
    (250, 25.0, 640, 272)
    >>> decode_frames_at(info.path, uniform_times(0.0, 2.0, 4), size=(224, 224)).shape
    (4, 224, 224, 3)
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

# LoVR's captioning rule (LOVR_REFERENCE.md, stage 2).
LOVR_MIN_CLIP_FRAMES = 5
LOVR_MIN_CAPTION_FRAMES = 8
LOVR_MAX_CAPTION_FRAMES = 64
LOVR_SHORT_CLIP_CAPTION_FRAMES = 2

_TIE_SECONDS = 1e-6


class VideoError(ValueError):
    """A file is not a decodable video; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` reads from a video's first video stream."""

    path: Path
    duration: float
    fps: float
    num_frames: int
    width: int
    height: int


def _open(path: Path) -> av.container.InputContainer:
    """Open `path` for reading, turning every way this can fail into a `VideoError`."""
    import av

    try:
        status = path.stat()
    except OSError as err:
        # A missing file, a dangling link, a link loop: the OS's reason, and where a link points.
        link = f"; it is a link to {os.readlink(path)!r}" if path.is_symlink() else ""
        raise VideoError(path, f"unreadable: {err.strerror}{link}") from err
    if stat.S_ISDIR(status.st_mode):
        raise VideoError(path, "not a video: it is a directory")
    if status.st_size == 0:
        raise VideoError(path, "zero-byte file")
    try:
        container = av.open(str(path))
    except PermissionError as err:
        raise VideoError(path, f"unreadable: {err.strerror}") from err
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise VideoError(path, f"not a video or corrupt: FFmpeg cannot open it ({err})") from err
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams}) or ["none"]
        container.close()
        raise VideoError(path, f"no video stream (streams: {', '.join(kinds)}); audio-only or not a video")
    return container


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the duration, frame rate, frame count and size of `path`'s first video stream.

    The first frame is decoded, so a file whose header parses but whose data does not raises `VideoError` here
    rather than half-way through a later stage. `duration` and `num_frames` are what the container claims: a
    file truncated or corrupt after its first frames still probes as whole (`generation.segment` compares them
    with what decodes). When the container stores no frame count (Matroska, WebM), the packets are counted: a
    demux pass, no decoding.
    """
    import av

    path = Path(path)
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError(path, "the video stream has no frame rate")
        fps = float(rate)
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as err:
            raise VideoError(path, f"corrupt: the first frame does not decode ({err})") from err
        if first is None:
            raise VideoError(path, "the video stream holds no decodable frame")
        num_frames = stream.frames or _count_packets(path)
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = num_frames / fps
    return VideoInfo(path, duration, fps, num_frames, first.width, first.height)


def _count_packets(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for packet in container.demux(video=0) if packet.size)


def iter_frames_at(
    path: str | os.PathLike, times: Sequence[float], size: tuple[int, int] | None = None, threads: int = 0
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(i, frame)` for every requested `times[i]`, in time order, in one sequential decode pass.

    Rule: `times[i]` gets the frame whose timestamp is nearest to it (the earlier one on a tie, within
    `_TIE_SECONDS` to absorb float error: 8.3 s is halfway between frames 207 and 208 at 25 fps); a time before
    the first frame gets the first frame, one after the last gets the last. Equal times (or times nearest to the
    same frame) share one array: copy it before writing to it.

    Args:
        path: the video file.
        times: seconds from the start of the video, in any order.
        size: `(width, height)` to resize to (FFmpeg's scaler), or `None` for the native size.
        threads: decoder threads: 0 lets FFmpeg choose (frame and slice threads, about one per core), 1 decodes on
            the calling thread alone (cheaper in CPU time, when other threads need the cores). Never changes the
            frames: FFmpeg's decoders give the same pixels at any thread count.
    """
    import av

    path = Path(path)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or not np.isfinite(times).all() or (times < 0).any():
        raise ValueError(f"iter_frames_at: times must be a 1-D sequence of finite seconds >= 0, got {times!r}")
    width, height = size if size is not None else (None, None)
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"iter_frames_at: size={size} must be (width, height), both >= 1")
    if threads < 0:
        raise ValueError(f"iter_frames_at: threads={threads} must be 0 (FFmpeg chooses) or a number of threads")
    if len(times) == 0:
        return
    order = np.argsort(times, kind="stable")

    container = _open(path)
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        offset = _first_frame_time(path, container, stream)
        first_time = times[order[0]]
        # Lands on the keyframe at or before the first needed time; decoding goes on from there.
        container.seek(int((first_time + offset) / stream.time_base), stream=stream, backward=True)

        def rgb(frame: av.VideoFrame) -> np.ndarray:
            return frame.to_ndarray(format="rgb24", width=width, height=height)

        k = 0  # position in `order` of the next time to serve
        previous, previous_time = None, -math.inf
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                frame_time = float(frame.pts * stream.time_base) - offset
                # Every pending time at or before this frame is served now, by this frame or the previous one.
                array, array_of = None, None
                while k < len(order) and times[order[k]] <= frame_time:
                    t = times[order[k]]
                    earlier = t - previous_time <= frame_time - t + _TIE_SECONDS
                    chosen = previous if previous is not None and earlier else frame
                    if array_of is not chosen:
                        array, array_of = rgb(chosen), chosen
                    yield int(order[k]), array
                    k += 1
                if k == len(order):
                    return
                previous, previous_time = frame, frame_time
        except av.FFmpegError as err:
            raise VideoError(path, f"corrupt: decoding failed near {previous_time:.3f} s ({err})") from err
        if previous is None:
            raise VideoError(path, f"no frame decodes at or after {first_time:.3f} s")
        # Times past the last frame get the last frame.
        last = rgb(previous)
        for position in order[k:]:
            yield int(position), last


def _first_frame_time(path: Path, container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """The timestamp of the first frame, in seconds; leaves the container to be sought before decoding on."""
    import av

    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                return float(frame.pts * stream.time_base)
    except av.FFmpegError as err:
        raise VideoError(path, f"corrupt: the first frame does not decode ({err})") from err
    raise VideoError(path, "the video stream holds no decodable frame")


def decode_frames_at(
    path: str | os.PathLike, times: Sequence[float], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The frames nearest to `times` (the rule of `iter_frames_at`) as one `(len(times), H, W, 3)` uint8 array,
    in the order of `times`."""
    frames: np.ndarray | None = None
    for i, frame in iter_frames_at(path, times, size):
        if frames is None:
            frames = np.empty((len(times), *frame.shape), dtype=np.uint8)
        frames[i] = frame
    if frames is None:
        width, height = size if size is not None else (0, 0)
        return np.empty((0, height, width, 3), dtype=np.uint8)
    return frames


def uniform_times(start: float, end: float, n: int) -> list[float]:
    """The centres of `n` equal segments of `[start, end)`: n frames spread evenly over a clip."""
    if not end > start or n < 1:
        raise ValueError(f"uniform_times: expected start < end and n >= 1, got start={start}, end={end}, n={n}")
    step = (end - start) / n
    return [start + (i + 0.5) * step for i in range(n)]


def interval_times(start: float, end: float, fps: float, interval: int) -> list[float]:
    """The times of every `interval`-th frame of `[start, end)`, starting with its first frame.

    LoVR's evaluation embeds frames `0, interval, 2 * interval, ...` of a clip; frame k of the video is at
    `k / fps`.
    """
    if fps <= 0 or interval < 1 or not end > start:
        raise ValueError(
            f"interval_times: expected fps > 0, interval >= 1, start < end; "
            f"got fps={fps}, interval={interval}, start={start}, end={end}"
        )
    first, stop = frame_span(start, end, fps)
    return [k / fps for k in range(first, stop, interval)]


def frame_span(start: float, end: float, fps: float) -> tuple[int, int]:
    """The frames `[first, stop)` of the time range `[start, end)` at `fps`, as `interval_times` counts them: at
    least one frame, however short the range."""
    first = round(start * fps)
    return first, max(round(end * fps), first + 1)


def lovr_caption_num_frames(frame_count: int, fps: float) -> int:
    """LoVR's number of frames to caption a clip of `frame_count` frames at `fps`: one per second, 8 to 64,
    and 2 when the clip has fewer than 8 frames.

    Clips with fewer than `LOVR_MIN_CLIP_FRAMES` (5) frames are skipped by LoVR: check `is_captionable` first;
    this raises `ValueError` for them.
    """
    if not is_captionable(frame_count):
        raise ValueError(
            f"lovr_caption_num_frames: frame_count={frame_count} is below LoVR's minimum of "
            f"{LOVR_MIN_CLIP_FRAMES} frames; such clips are skipped (check is_captionable first)"
        )
    if fps <= 0:
        raise ValueError(f"lovr_caption_num_frames: fps={fps} must be > 0")
    if frame_count < LOVR_MIN_CAPTION_FRAMES:
        return LOVR_SHORT_CLIP_CAPTION_FRAMES
    return min(LOVR_MAX_CAPTION_FRAMES, max(LOVR_MIN_CAPTION_FRAMES, int(frame_count / fps)))


def is_captionable(frame_count: int) -> bool:
    """Whether LoVR captions a clip of `frame_count` frames (at least `LOVR_MIN_CLIP_FRAMES`)."""
    return frame_count >= LOVR_MIN_CLIP_FRAMES
