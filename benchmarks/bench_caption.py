"""Caption throughput with the tiny random-weight VLM: batch 1 vs batch 8, decoding overlapped or not, one process
vs two.

    nice -n 5 python benchmarks/bench_caption.py [--clips 32] [--max-new-tokens 32]

`bikes.mp4` is cut into equal clips (hand-made segments, no segment stage). The in-process rows time
`generation.caption.caption_clips` alone (model loaded once); the two `run_sharded` rows time the stage's loop over
batches of 8 in-process, decoding each batch before generating it, or the next batch while this one generates (the
caption stage's `prepare`: the same frames and captions); the command rows time whole `python -m generation.caption`
/ `accelerate launch --multi_gpu --num_processes 2 -m generation.caption` runs (two CPU ranks where no GPU is
visible), start-up (imports, model loading) included. Captions from random weights are meaningless; only the speed
counts.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lovr_standins: from the source tree, never installed

from targets import report

from generation.backends import GenerationParams, TransformersBackend
from generation.caption import CaptionSettings, caption_clips, caption_frames, clips_from_segments
from generation.stage import run_sharded
from lovr_common.run_folder import CAPTIONS, SEGMENTS, clip_id_of
from lovr_common.video import probe
from lovr_standins.tiny_models import tiny_model_path
from lovr_standins.videos import sample_video

MAX_FRAMES = 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_segments(workdir: Path, num_clips: int) -> None:
    video = probe(sample_video("bikes"))
    step = video.duration / num_clips
    clips = [
        {
            "clip_id": clip_id_of("bikes", n + 1),
            "clip_index": n + 1,
            "start": round(n * step, 3),
            "end": round((n + 1) * step, 3),
            "start_frame": round(n * step * video.fps),
            "end_frame": round((n + 1) * step * video.fps),
            "clip_path": None,
            "low_dynamic": None,
        }
        for n in range(num_clips)
    ]
    record = {
        "video_id": "bikes",
        "video_path": video.path.name,
        "videos_dir": str(video.path.parent),
        "duration": video.duration,
        "fps": video.fps,
        "num_frames": video.num_frames,
        "width": video.width,
        "height": video.height,
        "clips": clips,
        "settings": {},
        "status": "ok",
    }
    workdir.mkdir(parents=True, exist_ok=True)
    SEGMENTS.path(workdir).write_text(json.dumps(record) + "\n")


def time_in_process(clips: list[dict], backend, params: GenerationParams, batch_size: int, max_frames: int) -> float:
    settings = CaptionSettings(max_frames=max_frames)
    start = time.perf_counter()
    for i in range(0, len(clips), batch_size):
        caption_clips(clips[i : i + batch_size], backend, settings, params)
    return time.perf_counter() - start


def time_sharded(
    workdir: Path, num_clips: int, backend, params: GenerationParams, overlap: bool, max_frames: int
) -> float:
    """The caption stage's loop (`run_sharded`, batches of 8, records written) with or without its `prepare`."""
    write_segments(workdir, num_clips)
    clips = clips_from_segments(workdir)
    settings = CaptionSettings(max_frames=max_frames)
    if overlap:
        hooks = {"prepare": lambda batch: caption_frames(batch, settings),
                 "process_batch": lambda batch, frames: caption_clips(batch, backend, settings, params, frames).values()}  # fmt: skip
    else:
        hooks = {"process_batch": lambda batch: caption_clips(batch, backend, settings, params).values()}
    start = time.perf_counter()
    run_sharded(workdir=workdir, stage=CAPTIONS, items=clips, batch_size=8, **hooks)
    return time.perf_counter() - start


def time_command(
    prefix: list[str], workdir: Path, model: Path, batch_size: int, max_new_tokens: int, max_frames: int
) -> float:
    args = ["--workdir", str(workdir), "--model", str(model), "--max_frames", str(max_frames), "--do_sample", "false"]
    args += ["--batch_size", str(batch_size), "--max_new_tokens", str(max_new_tokens)]
    start = time.perf_counter()
    subprocess.run([*prefix, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-frames", type=int, default=MAX_FRAMES, help="frames per clip (LoVR: 8 to 64)")
    parser.add_argument("--skip-commands", action="store_true", help="leave out the python -m / accelerate rows")
    args = parser.parse_args()
    model = tiny_model_path("vlm")
    params = GenerationParams(max_new_tokens=args.max_new_tokens, do_sample=False)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_segments(tmp / "segments", args.clips)
        clips = clips_from_segments(tmp / "segments")
        backend = TransformersBackend(str(model))
        time_in_process(clips[:2], backend, params, 2, args.max_frames)  # warm-up
        rows = [
            ("in-process, batch 1", time_in_process(clips, backend, params, 1, args.max_frames)),
            ("in-process, batch 8", time_in_process(clips, backend, params, 8, args.max_frames)),
        ]
        for overlap in (False, True, False, True):  # alternated: the machine's drift falls on both
            name = f"run_sharded, batch 8, {'next batch decoded meanwhile' if overlap else 'decode then generate'}"
            rows.append(
                (
                    name,
                    time_sharded(tmp / f"sharded-{len(rows)}", args.clips, backend, params, overlap, args.max_frames),
                )
            )
        single = [sys.executable, "-m", "generation.caption"]
        # Two ranks on a machine without GPUs need accelerate's torchrun launcher; its simple one (--cpu) starts
        # one process whatever --num_processes says (README, `generation`).
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        launch += ["--main_process_port", str(free_port()), "--num_machines", "1", "--mixed_precision", "no"]
        launch += ["--dynamo_backend", "no", "-m", "generation.caption"]
        commands = [("python -m, 1 process, batch 8", single), ("accelerate launch, 2 processes, batch 8", launch)]
        for name, prefix in [] if args.skip_commands else commands:
            workdir = tmp / name.replace(" ", "_").replace(",", "")
            write_segments(workdir, args.clips)
            rows.append((name, time_command(prefix, workdir, model, 8, args.max_new_tokens, args.max_frames)))

    print(f"Caption throughput, tiny random-weight VLM (outputs meaningless), {args.clips} clips of bikes.mp4, ")
    print(f"{args.max_frames} frames per clip, {args.max_new_tokens} new tokens at most, greedy")
    print(f"| {'setting':<52} | {'seconds':>8} | {'clips/s':>8} | {'vs batch 1':>10} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 10}|{'-' * 12}|")
    base = rows[0][1]
    for name, seconds in rows:
        print(f"| {name:<52} | {seconds:>8.2f} | {args.clips / seconds:>8.2f} | {base / seconds:>9.2f}x |")
    print("Command rows include start-up (imports, model loading) in every process.")
    return report([])


if __name__ == "__main__":
    sys.exit(main())
