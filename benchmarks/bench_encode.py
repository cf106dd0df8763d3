"""Frames per second of embedding a long video's clips and the video itself, measured side by side.

    nice -n 5 python benchmarks/bench_encode.py [--minutes 10] [--scene-seconds 15] [--interval 10] [--model clip]
        [--num-workers 0 1 2 4] [--decode-threads 0] [--repeat 5]

A synthetic long video (`lovr_standins.videos.make_synthetic_video`, one scene per clip) is embedded at LoVR's
protocol (every `interval`-th frame of every clip, and of the whole video) three ways:

- decode only: one `lovr_common.video.iter_frames_at` pass over exactly the frames our encoder embeds (the floor,
  FFmpeg choosing its decoder threads; and with each other number of `--decode-threads`);
- lovr_metric: `lovr_metric.evaluation.frames.embed_job`, one decode pass for all clips and the video, batched and
  overlapped with the model (the tiny random-weight CLIP by default: its cost is mostly preprocessing), with the
  image processor's resize (the default) at each `--num-workers` (threads preprocessing batches beside the
  decoder and the model), with the default decoder threads (`default_decode_threads`) and with each
  `--decode-threads` (0: FFmpeg chooses, as before the default rule), and with FFmpeg resizing while decoding
  (`--resize-in-decoder`);
- original: a port of the original LoVR evaluation: every clip file copied to a temporary file, opened with decord
  (PyAV per clip when decord is not installed), frames read one by one into a growing `np.concatenate`, flipped
  "BGR->RGB", encoded clip by clip; the merged video decoded again the same way for the video embedding.

The clip files the original needs are written beforehand (the release ships them) and are not timed. The CPU is
shared, so the approaches take turns `--repeat` times and the table gives each one's median wall time, the spread
(fastest-slowest run), the CPU seconds the process used (all threads) and its peak resident memory during the run.
Target, checked on the run itself (the exit status is 1 when it is missed): the processor-exact path with every
default (`--num-workers` and decoder threads) >= 0.8x the decode-only floor's frames per second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lovr_standins: from the source tree, never installed

import numpy as np
import torch
from targets import Target, report

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.video import iter_frames_at, probe
from lovr_metric.evaluation.frames import (
    FrameSampling,
    Segment,
    VideoJob,
    default_decode_threads,
    default_num_workers,
    embed_job,
    plan_frames,
)
from lovr_standins.tiny_models import tiny_model_path
from lovr_standins.videos import make_synthetic_video

FPS = 25


def make_inputs(
    folder: Path, minutes: float, scene_seconds: float, size: tuple[int, int], fps: int = FPS
) -> tuple[Path, list[Path]]:
    """One file per scene (the clip files) and their concatenation (the long video), reused when present."""
    num_scenes = max(1, round(minutes * 60 / scene_seconds))
    suffix = "" if fps == FPS else f"-{fps}fps"
    long_video = folder / f"long-{num_scenes}x{scene_seconds:g}s-{size[0]}x{size[1]}{suffix}.mp4"
    clips = [folder / "clips" / f"{long_video.stem}-Scene-{n:03d}.mp4" for n in range(1, num_scenes + 1)]
    if long_video.exists() and all(clip.exists() for clip in clips):
        return long_video, clips
    clips[0].parent.mkdir(parents=True, exist_ok=True)
    for seed, clip in enumerate(clips):
        make_synthetic_video(clip, scene_seconds=[scene_seconds], fps=fps, size=size, seed=seed)
    listing = folder / "concat.txt"
    listing.write_text("".join(f"file '{clip.resolve()}'\n" for clip in clips))
    command = ["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy"]
    subprocess.run([*command, str(long_video)], check=True)
    return long_video, clips


def job_for(long_video: Path, clips: list[Path]) -> VideoJob:
    segments, start = [], 0.0
    for clip in clips:
        end = start + probe(clip).duration
        segments.append(Segment(clip.stem, "clip", start, end))
        start = end
    return VideoJob(long_video.stem, long_video, [*segments, Segment(long_video.stem, "video")])


def decode_only(job: VideoJob, sampling: FrameSampling, size: tuple[int, int] | None = None, threads: int = 0) -> int:
    """Decode exactly the frames `embed_job` embeds (at `size`, as `embed_job` would) with `threads` decoder
    threads (0: FFmpeg chooses), and do nothing with them."""
    info = probe(job.path)
    frames, _ = plan_frames(job, sampling, [info])
    count = 0
    for _ in iter_frames_at(job.path, [frame / info.fps for frame in sorted(frames)], size, threads):
        count += 1
    return count


def read_like_original(path: Path, interval: int) -> np.ndarray:
    """The original's loader: a temporary copy, then frame by frame into a growing array."""
    with tempfile.NamedTemporaryFile(suffix=path.suffix) as tmp:
        shutil.copyfile(path, tmp.name)
        try:
            from decord import VideoReader, cpu

            reader = VideoReader(tmp.name, ctx=cpu(0))
            indices = range(0, len(reader), interval)
            frames = None
            for index in indices:
                frame = reader[index].asnumpy()
                frames = frame[None] if frames is None else np.concatenate([frames, frame[None]])
        except ImportError:
            import av

            with av.open(tmp.name) as container:
                frames = None
                for index, decoded in enumerate(container.decode(video=0)):
                    if index % interval == 0:
                        frame = decoded.to_ndarray(format="rgb24")
                        frames = frame[None] if frames is None else np.concatenate([frames, frame[None]])
    return frames[..., ::-1]  # the original's "BGR->RGB" flip of frames that were RGB already


def original(long_video: Path, clips: list[Path], encoder, interval: int) -> int:
    """Clip by clip, then the merged video, each read and encoded the original way."""
    count = 0
    for path in [*clips, long_video]:
        frames = read_like_original(path, interval)
        features = torch.cat(
            [
                encoder.encode_frames(encoder.preprocess_frames(list(frames[start : start + 32])))
                for start in range(0, len(frames), 32)
            ]
        )
        torch.nn.functional.normalize(torch.nn.functional.normalize(features, dim=-1).mean(0), dim=0)
        count += len(frames)
    return count


@dataclass
class Run:
    """One run of an approach: frames embedded (or decoded), wall and CPU seconds, peak resident memory."""

    frames: int
    seconds: float
    cpu_seconds: float
    peak_rss_mib: float


class PeakRss:
    """The process's peak resident memory while the block runs, sampled every few milliseconds (`/proc`)."""

    def __enter__(self):
        self.peak, self._stop = _rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def run_once(approach) -> Run:
    with PeakRss() as rss:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        frames = approach()
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return Run(frames, wall, cpu, rss.peak)


def take_turns(approaches: dict, repeat: int) -> dict[str, list[Run]]:
    """Every approach `repeat` times, round-robin: on a shared CPU each one meets the same disturbances."""
    runs = {name: [] for name in approaches}
    for _ in range(repeat):
        for name, approach in approaches.items():
            runs[name].append(run_once(approach))
    return runs


def print_table(runs: dict[str, list[Run]], floors: dict[str, str | None]) -> None:
    """One row per approach: medians, the spread of wall times, and the ratio of rates to its floor's."""
    rate = {name: r[0].frames / statistics.median(x.seconds for x in r) for name, r in runs.items()}
    print(
        "| approach | frames | seconds (median) | spread | CPU s | frames/s | vs its decode-only floor | peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in runs.items():
        seconds = [x.seconds for x in r]
        ratio = f"{rate[name] / rate[floors[name]]:.2f}x" if floors.get(name) else "floor"
        spread = f"{min(seconds):.1f}-{max(seconds):.1f}" if len(r) > 1 else "1 run"
        print(f"| {name} | {r[0].frames} | {statistics.median(seconds):.2f} | {spread} | "
              f"{statistics.median(x.cpu_seconds for x in r):.1f} | {rate[name]:.0f} | {ratio} | "
              f"{max(x.peak_rss_mib for x in r):.0f} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--scene-seconds", type=float, default=15.0)
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the synthetic video")
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0, 1, 2, 4], help="the preprocessing sweep")
    parser.add_argument(
        "--decode-threads",
        type=int,
        nargs="+",
        default=[0],
        help="decoder threads to set beside the default rule's (0: FFmpeg chooses)",
    )
    parser.add_argument("--model", default="clip", help="a tiny model name, or a model id/folder")
    parser.add_argument("--repeat", type=int, default=5, help="runs per approach, taking turns; medians reported")
    parser.add_argument("--skip-original", action="store_true", help="leave out the (slow) original port")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="the tiny model gains nothing from more; decoding needs a core"
    )
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench-encode"))
    args = parser.parse_args()

    torch.set_num_threads(args.torch_threads)
    size = tuple(int(n) for n in args.size.split("x"))
    started = time.perf_counter()
    long_video, clips = make_inputs(args.workdir, args.minutes, args.scene_seconds, size)
    print(f"inputs: {long_video} ({probe(long_video).duration / 60:.1f} min, {len(clips)} clips) "
          f"ready in {time.perf_counter() - started:.0f} s")  # fmt: skip
    model = str(tiny_model_path(args.model)) if "/" not in args.model else args.model
    encoder = load_encoder(EncoderConfig(model=model), need="visual")
    job = job_for(long_video, clips)

    def sampling(**options) -> FrameSampling:
        return FrameSampling(interval=args.interval, batch_size=args.batch_size, **options)

    embed_job(job_for(long_video, clips[:1]), encoder, sampling())  # warm-up: first model call, allocator
    small = encoder.decode_size(*_frame_size(long_video))
    floor, small_floor = "decode only", f"decode only, resized to {small[0]}x{small[1]} by FFmpeg"
    approaches = {
        floor: lambda: decode_only(job, sampling()),
        small_floor: lambda: decode_only(job, sampling(), small),
    }
    floors: dict[str, str | None] = {floor: None, small_floor: None}
    default_name = None
    for threads in (t for t in args.decode_threads if t):
        name = f"decode only, decode_threads={threads}"
        approaches[name] = lambda t=threads: decode_only(job, sampling(), threads=t)
        floors[name] = floor
    for workers in args.num_workers:
        default = default_decode_threads(workers)
        for threads in [None, *(t for t in args.decode_threads if t != default)]:
            shown = f"{default} (default)" if threads is None else "0 (FFmpeg chooses)" if threads == 0 else threads
            mark = " (default)" if workers == default_num_workers() else ""
            name = f"lovr_metric embed_job (image processor resizes), num_workers={workers}{mark}, "
            name += f"decode_threads={shown}"
            options = {"num_workers": workers, "decode_threads": threads}
            if workers == default_num_workers() and threads is None:
                default_name = name  # the processor-exact path with every default: the target's row
            approaches[name] = lambda o=options: embed_job(job, encoder, sampling(**o)).num_frames
            floors[name] = floor
    resized = f"lovr_metric embed_job --resize-in-decoder, num_workers={default_num_workers()} (default)"
    approaches[resized] = lambda: embed_job(job, encoder, sampling(resize_in_decoder=True)).num_frames
    floors[resized] = small_floor
    runs = take_turns(approaches, args.repeat)
    if not args.skip_original:  # once: two orders of magnitude slower (its growing np.concatenate is quadratic)
        original_name = "original (tmp copy, decord, concat)"
        runs[original_name] = [run_once(lambda: original(long_video, clips, encoder, args.interval))]
        floors[original_name] = floor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"\n{len(clips)} clips + 1 video, every {args.interval}th frame, model {args.model}, {device}, "
          f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, median of {args.repeat} turns\n")  # fmt: skip
    print_table(runs, floors)
    if default_name is None:  # the sweep left the default out: nothing to check
        return report([], f"--num-workers {args.num_workers} leaves out the default, {default_num_workers()}")
    rate = {name: r[0].frames / statistics.median(x.seconds for x in r) for name, r in runs.items()}
    ratio = rate[default_name] / rate[floor]
    return report(
        [Target("processor-exact default / decode-only floor", ratio, 0.8, at_most=False)],
        f"medians of {args.repeat} turns",
    )


def _frame_size(path: Path) -> tuple[int, int]:
    info = probe(path)
    return info.width, info.height


if __name__ == "__main__":
    sys.exit(main())
