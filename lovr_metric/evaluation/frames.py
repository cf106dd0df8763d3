"""Clip and video embeddings from one decode pass per video file, following the LoVR protocol.

A `VideoJob` is one file and the segments to embed from it: every clip of a long video (time ranges) and the video
itself, or a single clip file. `embed_job` plans the frames of every segment (every `interval`-th frame, or
`num_frames` uniform frames), decodes the union of those frames in one sequential pass of the file
(`lovr_common.video`), and streams them through the encoder in batches:

- a frame encoder (`dual`, sentence-transformers) embeds each frame once, however many segments use it; a
  segment's embedding is the mean of its L2-normalised frame features, L2-normalised (LoVR's clip rule, and the
  same over the whole video for the video embedding), or with `pooling="raw"` the mean of the features as the
  encoder returns them, L2-normalised (the original's GME script; `lovr_original.py`);
- a video encoder (X-CLIP) receives each segment's `num_frames` frames as soon as they are all decoded.

A protocol whose jobs take their frames otherwise plans jobs of its own kind: a `VideoJob` subclass overriding
`files`, `open`, `segment_frames` and `decode` (`lovr_original.py`: a video's clip files decoded one after the
other). Frames are RGB, as decoded; `FrameSampling(bgr=True)` reverses the channels, as the original code did.
Decoding runs in a background thread (FFmpeg's decoder threads on the cores the rest leaves free:
`default_decode_threads`); with `FrameSampling.num_workers` > 0, whole batches are preprocessed in that many worker
threads (PIL's resize and NumPy release the GIL) while the main thread runs the model on the batch before. Batches
keep their frames, their order and their composition, so the embeddings are the same with any number of workers or
decoder threads; queues are bounded, so only a few batches of frames are held in memory at a time, however long the
video.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISLNK

import numpy as np

from lovr_common.encoders import FrameEncoder, VideoEncoder, read_weights
from lovr_common.run_folder import check_clip_span
from lovr_common.video import VideoInfo, interval_times, iter_frames_at, probe, uniform_times
from lovr_common.visual_inputs import video_metadata
from lovr_metric.evaluation._batches import run_frame_encoder, run_video_tower
from lovr_metric.evaluation.tasks import LOVR_FRAME_INTERVAL

COST_PARTS = ("decode", "preprocess", "encode", "total_with_io", "total_without_io")
# How the work is scheduled, not what is computed: left out of the cache key and the results' settings. The same
# frames in model calls of another size agree up to float rounding; any number of workers or decoder threads gives
# the same bits.
EXECUTION_ONLY = ("batch_size", "num_workers", "decode_threads")
POOLINGS = ("normalized", "raw")


def cores_per_process() -> int:
    """The cores this process may use: the machine's (its CPU affinity, not a container's CPU quota), shared among
    the processes that `accelerate launch` (or torchrun) started on it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = os.environ.get("LOCAL_WORLD_SIZE", "1")
    try:
        processes = int(local)
    except ValueError:
        raise ValueError(
            f"LOCAL_WORLD_SIZE={local!r} is not a number of processes; expected an integer (torchrun and accelerate "
            "launch set it to the processes they start on this machine)"
        ) from None
    return max(1, cores // max(1, processes))


def default_num_workers(cores: int | None = None) -> int:
    """Preprocessing threads by default: half the `cores` (default: `cores_per_process()`) beyond the model's
    thread and one decoder thread; none on 2 cores, where the main thread preprocesses between model calls while
    the decoder has the other core (as fast as any number there: README, "Performance"). Preprocessing and
    FFmpeg's decoding cost CPU time of the same order per embedded frame at LoVR's interval (preprocessing 1.6x
    decoding on 640x360 frames for the tiny model's 56x32, 2.5x on 1280x720 frames for 224 px:
    `benchmarks/bench_encode.py`, `bench_scale.py`), so the cores left are split evenly between them; the split
    is measured on 2 cores only. The rule counts one thread for the model, as beside a GPU; a model run on the CPU
    takes more (torch's threads), and then these threads share the cores with it."""
    cores = cores_per_process() if cores is None else cores
    return max(0, (cores - 2) // 2)


def default_decode_threads(num_workers: int, cores: int | None = None) -> int:
    """FFmpeg decoder threads by default: the `cores` (default: `cores_per_process()`) that `num_workers`
    preprocessing threads and the model's thread leave, at least 1. FFmpeg's own choice, a thread per core
    whatever else runs, has the decoder compete with preprocessing (10-30% slower on 2 cores)."""
    cores = cores_per_process() if cores is None else cores
    return max(1, cores - num_workers - 1)


@dataclass(frozen=True)
class FrameSampling:
    """Which frames represent a clip (and, by the same rule over its whole length, a video).

    Args:
        interval (`int`, *optional*, defaults to `LOVR_FRAME_INTERVAL`): embed every `interval`-th frame (LoVR: 10,
            or 30).
        num_frames (`int`, *optional*): embed `num_frames` uniformly spread frames instead (set for video towers).
        bgr (`bool`, defaults to `False`): reverse the channels, reproducing the original code's defect.
        pooling (`str`, defaults to `"normalized"`): how a frame encoder's frame features become a segment's
            embedding, one of `POOLINGS`: the mean of the L2-normalised features, or (`"raw"`, the original's GME
            script) the mean of the features as returned; L2-normalised either way.
        video_from_clips (`bool`, defaults to `False`): a video's frames are its clips', every `interval`-th frame
            of the clips one after the other, instead of every `interval`-th frame of the video's file. Set by the
            protocol whose jobs take them so (`lovr_original.py`); recorded, and part of the cache key.
        resize_in_decoder (`bool`, defaults to `False`): let FFmpeg's scaler shrink frames to the size the image
            processor resizes them to, instead of the processor's PIL resize. Several times cheaper on large
            frames; the pixels differ slightly (another interpolation), so the default keeps the processor's.
        batch_size (`int`, defaults to 32): frames (or clips, for a video tower) per model call.
        num_workers (`int`, *optional*): threads preprocessing batches while the model runs (0: on the main
            thread, between model calls); by default `default_num_workers()` (0 on 2 cores). Changes only the speed,
            never the embeddings. The encoder's `preprocess_frames` / `preprocess_videos` must then be safe to call
            from several threads at once, as the image processors and PIL are; use 0 for an adapter whose
            preprocessing is not.
        decode_threads (`int`, *optional*): FFmpeg's decoder threads; by default `default_decode_threads`, the
            cores the preprocessing workers and the model's thread leave (1 on 2 cores); 0 lets FFmpeg choose
            (about one per core, competing with preprocessing). Changes only the speed, never the frames.

    `embed_job` fills in `num_workers` and `decode_threads` left unset from the cores of the machine it runs on
    (`for_this_machine`).
    """

    interval: int | None = LOVR_FRAME_INTERVAL
    num_frames: int | None = None
    bgr: bool = False
    pooling: str = "normalized"
    video_from_clips: bool = False
    resize_in_decoder: bool = False
    batch_size: int = 32
    num_workers: int | None = None
    decode_threads: int | None = None

    def __post_init__(self):
        if (self.interval is None) == (self.num_frames is None):
            raise ValueError(f"set exactly one of interval={self.interval} and num_frames={self.num_frames}")
        if (self.interval or self.num_frames) < 1 or self.batch_size < 1:
            raise ValueError(f"interval, num_frames and batch_size must be >= 1, got {self}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers}: expected 0 (preprocess on the main thread) or more")
        if self.decode_threads is not None and self.decode_threads < 0:
            raise ValueError(f"decode_threads={self.decode_threads}: expected 0 (FFmpeg chooses) or more")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling={self.pooling!r}: expected one of {POOLINGS}")
        if self.video_from_clips and self.interval is None:
            raise ValueError(
                f"video_from_clips takes every interval-th frame: set interval, not num_frames={self.num_frames}"
            )

    def for_this_machine(self) -> FrameSampling:
        """This sampling with `num_workers` and `decode_threads` set: left unset, by this machine's defaults."""
        workers = default_num_workers() if self.num_workers is None else self.num_workers
        threads = default_decode_threads(workers) if self.decode_threads is None else self.decode_threads
        return dataclasses.replace(self, num_workers=workers, decode_threads=threads)

    def settings(self) -> dict:
        """The fields the embeddings depend on (the results' record): all but `EXECUTION_ONLY`."""
        return {name: value for name, value in dataclasses.asdict(self).items() if name not in EXECUTION_ONLY}

    def times(self, start: float, end: float, fps: float) -> list[float]:
        if not end > start:  # a segment at or past the end of the file: its nearest frame
            return [start] * (self.num_frames or 1)
        if self.num_frames is not None:
            return uniform_times(start, end, self.num_frames)
        return interval_times(start, end, fps, self.interval)


@dataclass(frozen=True)
class Segment:
    """A clip or a whole video to embed from a job's file: `end=None` means to the end of the file."""

    key: str
    kind: str  # "clip" or "video"
    start: float = 0.0
    end: float | None = None


def file_stat(path: Path) -> list:
    """`[resolved path, size, modification time]` of a file (`[path]` when it cannot be read), for signatures."""
    try:
        stat = path.stat()
        return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
    except OSError:
        return [str(path)]


class FileStats:
    """`file_stat` of many files, each folder resolved once: resolving a path costs a system call per part of it
    (0.8 s for 40,804 clip files), and the clips of a release share a few folders. A file that is not a symlink
    resolves to its folder's resolved path and its name, and its own `lstat` is its `stat`; a symlink is resolved
    whole. Meant for one planning's jobs (`sign_jobs`): a folder moved afterwards is not seen. The path is split as
    text: pathlib's `parent` and `name` took a third of the 0.39 s that 41,271 files cost."""

    def __init__(self):
        self._folders: dict[str, str] = {}

    def __call__(self, path: Path) -> list:
        text = os.fspath(path)
        folder, name = os.path.split(text)
        if name in ("", ".", ".."):
            return file_stat(path)
        try:
            stat = os.lstat(text)
            if S_ISLNK(stat.st_mode):
                return file_stat(path)
        except OSError:
            return [text]
        if folder not in self._folders:
            self._folders[folder] = os.path.realpath(folder or os.curdir)
        return [os.path.join(self._folders[folder], name), stat.st_size, stat.st_mtime_ns]


def sign_jobs(jobs: list[VideoJob]) -> None:
    """Compute the `signature` of every job of one planning not yet signed, the jobs sharing one `FileStats`. A job
    whose class replaces `signature` itself (rather than `sign`) is left to it."""
    stats = FileStats()
    for job in jobs:
        if "signature" not in vars(job) and type(job).signature is VideoJob.signature:
            vars(job)["signature"] = job.sign(stats)  # where the cached property keeps its value


def digest(value) -> str:
    """A short hash of a JSON value: a job's signature."""
    return hashlib.sha1(json.dumps(value).encode()).hexdigest()[:16]


@dataclass
class VideoJob:
    """One file to decode once and the segments to embed from it. A protocol may plan jobs of another kind: a
    subclass overriding `files`, `sign`, `open`, `segment_frames` and `decode`."""

    job_id: str
    path: Path
    segments: list[Segment]

    @property
    def files(self) -> tuple[Path, ...]:
        """The files decoded, in order."""
        return (self.path,)

    @functools.cached_property
    def signature(self) -> str:
        """What the job's embeddings depend on besides the model: the file (resolved path, size, modification
        time) and the segments cut from it. Ids alone are not enough: a new run folder can reuse
        `<video>-Scene-001` for another time range, or replace the file behind a path. Computed once per job
        object (a run's planning): the cache checks it for every job several times. `sign_jobs` computes those
        of many jobs at once."""
        return self.sign(file_stat)

    def sign(self, stat: Callable[[Path], list]) -> str:
        """The signature, with `stat` giving the `file_stat` of each file."""
        return digest([stat(self.path), [[s.key, s.kind, s.start, s.end] for s in self.segments]])

    def open(self) -> tuple[VideoJob, list[VideoInfo], list[dict]]:
        """This job as it can be embedded, the infos of its files, and the segments left out (`{"id", "path",
        "reason"}`): a clip whose time range lies past the end of the file as decoded, which has no frame of its
        own. Raises `lovr_common.video.VideoError` when the file cannot be opened."""
        info = probe(self.path)
        kept, skipped = [], []
        for segment in self.segments:
            try:
                if segment.kind == "clip" and segment.end is not None:
                    check_clip_span(segment.start, segment.end, info.duration, f"clip {segment.key!r}")
                kept.append(segment)
            except ValueError as err:
                skipped.append({"id": segment.key, "path": str(self.path), "reason": str(err)})
        return dataclasses.replace(self, segments=kept), [info], skipped

    def segment_frames(self, sampling: FrameSampling, infos: list[VideoInfo]) -> list[list[int]]:
        """Each segment's frames (indices in the file): its time range (to the end of the file when open-ended)
        sampled by `sampling`."""
        (info,) = infos
        return [[round(t * info.fps) for t in sampling.times(*clamp_span(s, info), info.fps)] for s in self.segments]

    def decode(
        self, infos: list[VideoInfo], order: list[int], size_of, threads: int
    ) -> Iterator[tuple[int, np.ndarray]]:
        """`(position in order, frame)` for every frame of `order` (frame indices, ascending), decoded at
        `size_of(info)` with `threads` decoder threads."""
        (info,) = infos
        yield from iter_frames_at(self.path, [frame / info.fps for frame in order], size_of(info), threads)


def clamp_span(segment: Segment, info: VideoInfo) -> tuple[float, float]:
    """A segment's `(start, end)` in seconds, its end no later than the file's."""
    return segment.start, info.duration if segment.end is None else min(segment.end, info.duration)


@dataclass
class JobResult:
    """The embeddings of a job's segments (key -> float32 vector) and its cost in seconds by kind and part;
    `skipped` lists the segments left out (`{"id", "path", "reason"}`, and `"retry": True` where a later run may
    succeed: a clip file that could not be opened)."""

    embeddings: dict[str, np.ndarray]
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    num_frames: int = 0
    skipped: list[dict] = field(default_factory=list)


def _prefetch(iterator: Iterator, maxsize: int, decode_seconds: list[float]) -> Iterator:
    """Run `iterator` in a thread (PyAV decodes without the GIL), adding the time it spends to `decode_seconds`."""
    items: queue.Queue = queue.Queue(maxsize)
    done = object()

    def produce():
        try:
            while True:
                start = time.perf_counter()
                item = next(iterator, done)
                decode_seconds[0] += time.perf_counter() - start
                items.put(item)
                if item is done:
                    return
        except BaseException as err:  # handed to the consumer, which re-raises it
            items.put(err)

    threading.Thread(target=produce, daemon=True).start()
    while (item := items.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def plan_frames(
    job: VideoJob, sampling: FrameSampling, infos: list[VideoInfo]
) -> tuple[dict[int, list[int]], list[list[int]]]:
    """The frames to embed (`job.segment_frames`): `(frame -> positions of the segments using it, each segment's
    frames)`. A frame shared by segments (a clip's and its video's) is decoded and embedded once."""
    frame_owners: dict[int, list[int]] = {}
    segment_frames = job.segment_frames(sampling, infos)
    for position, frames in enumerate(segment_frames):
        for frame in dict.fromkeys(frames):
            frame_owners.setdefault(frame, []).append(position)
    return frame_owners, segment_frames


def embed_job(job: VideoJob, encoder: FrameEncoder | VideoEncoder, sampling: FrameSampling) -> JobResult:
    """Embed every segment of `job` in one decode pass of each file; raises `lovr_common.video.VideoError` for a
    bad file. The segments `job.open` leaves out (a clip past the end of its file) and those no frame falls in are
    listed in `JobResult.skipped`, not embedded."""
    started = time.perf_counter()
    sampling = sampling.for_this_machine()
    job, infos, skipped = job.open()
    video_tower = isinstance(encoder, VideoEncoder)
    if video_tower and sampling.num_frames != encoder.num_frames:
        raise ValueError(
            f"sampling.num_frames={sampling.num_frames}, but this video tower takes exactly {encoder.num_frames} frames"
        )

    frame_owners, segment_frames = plan_frames(job, sampling, infos)
    frameless = [s for s, frames in zip(job.segments, segment_frames, strict=True) if not frames]
    if frameless:  # nothing to embed them from: an empty clip file, a video whose every clip lies past its file's end
        skipped += [{"id": s.key, "path": str(job.path), "reason": "no frame to embed it from"} for s in frameless]
        job = dataclasses.replace(job, segments=[s for s in job.segments if s not in frameless])
        frame_owners, segment_frames = plan_frames(job, sampling, infos)
    if not job.segments:
        return JobResult({}, {}, 0, skipped)
    # A model's weights are read on its first call (`DeferredWeights`): once the first job that embeds has opened its
    # file, and outside that job's seconds.
    reading = time.perf_counter()
    read_weights(encoder)
    started += time.perf_counter() - reading
    order = sorted(frame_owners)

    def size_of(info: VideoInfo) -> tuple[int, int] | None:
        if sampling.resize_in_decoder and hasattr(encoder, "decode_size"):
            return encoder.decode_size(info.width, info.height)
        return None

    decode_seconds = [0.0]
    frames = _prefetch(
        job.decode(infos, order, size_of, sampling.decode_threads), 2 * sampling.batch_size, decode_seconds
    )
    if video_tower:  # each clip's frames in their file, for a processor that stamps them with times
        one = len(infos) == 1  # (a job over several files numbers its frames across them: no one file's fps)
        metadata = (
            [video_metadata(len(f), infos[0].fps, f, infos[0].num_frames) for f in segment_frames] if one else None
        )
        vectors, work, failed = run_video_tower(
            encoder, sampling, frames, order, frame_owners, segment_frames, metadata
        )
    else:
        vectors, work, failed = run_frame_encoder(encoder, sampling, frames, order, frame_owners, segment_frames)
    # A clip whose model call failed is left out and tried again next run (a server's error may pass).
    skipped += [{"id": job.segments[i].key, "path": str(job.path), "reason": reason, "retry": True}
                for i, reason in failed.items()]  # fmt: skip
    wall = time.perf_counter() - started

    embeddings = {segment.key: vectors[i].numpy() for i, segment in enumerate(job.segments) if i not in failed}
    costs = _cost_by_kind(job, work, decode_seconds[0], wall, frame_owners)
    return JobResult(embeddings, costs, len(order), skipped)


def _cost_by_kind(job, work, decode, wall, frame_owners) -> dict[str, dict[str, float]]:
    """Split the job's seconds between clips and the video by their share of its frames (a shared frame counts
    fully for both: it is part of the cost of either embedding on its own)."""
    total = max(len(frame_owners), 1)
    shares: dict[str, float] = {}
    for owners in frame_owners.values():
        for kind in dict.fromkeys(job.segments[s].kind for s in owners):  # a set's order changes per process
            shares[kind] = shares.get(kind, 0.0) + 1 / total
    costs = {}
    for kind, share in shares.items():
        parts = {"decode": decode * share, "preprocess": work["preprocess"] * share, "encode": work["encode"] * share}
        parts["total_without_io"] = parts["preprocess"] + parts["encode"]
        parts["total_with_io"] = wall * share
        costs[kind] = parts
    return costs
