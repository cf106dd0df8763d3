"""A cost model of the full LoVR evaluation and construction: per-frame and per-clip costs measured here at reduced
scale, projected to 467 videos of 26 minutes (40,804 clips, ~21.9M frames) for given cores and GPUs, next to the
original code's approach measured the same way.

    nice -n 5 python benchmarks/bench_scale.py [--cores 2 16 16] [--gpus 0 1 8] [--minutes 1.5] [--size 1280x720]

`--cores` and `--gpus` are paired in order: one projected setup per pair (2 cores and no GPU, 16 and 1, 16 and 8).

Measured on a synthetic `--minutes` video at `--size`, 30 fps (LoVR's frames over its hours), one scene per clip
of LoVR's mean length; every cost is CPU seconds of this process and its children (all threads), so it divides
over cores:

- evaluation, ours: one decode pass per video (`iter_frames_at`, RGB for the embedded frames only), the image
  processor of a CLIP ViT-B/32 (224 px, PIL, processor-exact pixels) per embedded frame, and a ViT-B/32-sized
  random-weight `CLIPModel(CLIPConfig())` per frame on the CPU; frames shared by a clip and its video embedded once;
- evaluation, original: every clip file and then the merged video decoded again (a temporary copy each, frame by
  frame into a growing `np.concatenate`: `bench_encode.py`'s port; PyAV stands in for decord), BGR PIL images
  preprocessed on the same thread, encoded in batches of 8;
- construction: scene scoring (`generation._scenes.score_video`, PySceneDetect at 1/3 scale) against the
  original's `detect` + `split_video_ffmpeg` (every clip re-encoded); per clip, the caption frames (LoVR's count)
  and a 336 px image processor (LLaVA-1.5's; Qwen2.5-VL's needs torchvision), decoded in one pass per video
  (ours) or from each clip file (original).

Not measurable here, and so parameters with labelled defaults: the GPU's encode rate (`--gpu-frames-per-second`)
and a 7B VLM's seconds per caption on one GPU (`--caption-gpu-seconds`); pass the figures of
`benchmarks/gpu_check.py` (and a caption run) from a GPU machine. Wall time is projected as the larger of the CPU
work over the cores and the GPU work over the GPUs where the stages overlap (ours: decoding and preprocessing beside
the model), and as their sum over one process per GPU where they run one after the other (the original; and our
caption stage today). Refinement and fusion are left out.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # lovr_standins: from the source tree, never installed

import numpy as np
import torch
from bench_encode import job_for, make_inputs, read_like_original
from PIL import Image
from targets import report

from lovr_common.video import (
    VideoInfo,
    decode_frames_at,
    iter_frames_at,
    lovr_caption_num_frames,
    probe,
    uniform_times,
)
from lovr_metric.evaluation.frames import FrameSampling, Segment, VideoJob, plan_frames
from lovr_standins.tiny_models import tiny_model_path

NUM_VIDEOS, NUM_CLIPS, VIDEO_MINUTES, FPS = 467, 40_804, 26.0, 30
CLIP_SECONDS = VIDEO_MINUTES * 60 * NUM_VIDEOS / NUM_CLIPS  # 17.9 s
INTERVAL = 10
# Assumed, not measured (no GPU here): CLIP ViT-B/32 takes 4.4 GFLOPs a 224 px frame; 5,000 frames/s in fp16 at
# batch 32 is ~22 TFLOP/s, a conservative share of an A100-class GPU. The original's batches of 8 get the same rate.
GPU_FRAMES_PER_SECOND = 5000.0
# Assumed: a caption of ~1,300 tokens (LoVR's ~1,000-word clip captions) from a batched 7B VLM at ~900 tokens/s on
# one A100-class GPU (vLLM-class serving, which the original used); the same for both approaches.
CAPTION_GPU_SECONDS = 1.5


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its finished children (FFmpeg re-encoding clips)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(work, repeat: int = 1) -> float:
    """The median CPU seconds of `work()` over `repeat` runs."""
    runs = []
    for _ in range(repeat):
        start = cpu_seconds()
        work()
        runs.append(cpu_seconds() - start)
    return statistics.median(runs)


@dataclass
class Costs:
    """CPU seconds per decoded frame (`*_decode`, `segment_*`), per embedded frame, and per captioned clip."""

    decode: float
    preprocess: float
    decode_resized: float
    preprocess_resized: float
    encode_cpu: float
    original_decode: float
    original_preprocess: float
    original_encode_cpu: float
    copy_per_byte: float
    segment: float
    segment_original: float
    caption_clip: float
    caption_clip_original: float


def clip_processor(size: int):
    """The PIL CLIP image processor the toolkit loads without torchvision, at `size` px (shortest edge and crop)."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(
        tiny_model_path("clip"), size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    )


def grow_like_original(frame: np.ndarray, count: int) -> np.ndarray:
    """The original's loader appending `count` frames: each `np.concatenate` copies the whole array so far."""
    frames = frame[None]
    for _ in range(count - 1):
        frames = np.concatenate([frames, frame[None]])
    return frames


def measure_evaluation(long_video: Path, clips: list[Path], repeat: int) -> dict[str, float]:
    """Per-frame costs of decoding, preprocessing and encoding, ours and the original's."""
    from transformers import CLIPConfig, CLIPModel

    info = probe(long_video)
    job = job_for(long_video, clips)
    owners, _ = plan_frames(job, FrameSampling(interval=INTERVAL), [info])
    times = [frame / info.fps for frame in sorted(owners)]
    decode = measure(lambda: sum(1 for _ in iter_frames_at(long_video, times)), repeat) / info.num_frames
    frames = list(decode_frames_at(long_video, times[:64]))
    processor = clip_processor(224)
    preprocess = measure(lambda: processor(images=frames, return_tensors="pt"), repeat) / len(frames)
    small = (round(224 * info.width / info.height), 224)  # what --resize_in_decoder asks FFmpeg for
    decode_resized = (
        measure(lambda: sum(1 for _ in iter_frames_at(long_video, times, small)), repeat) / info.num_frames
    )
    small_frames = list(decode_frames_at(long_video, times[:64], small))
    preprocess_resized = measure(lambda: processor(images=small_frames, return_tensors="pt"), repeat) / len(frames)
    bgr = [frame[..., ::-1] for frame in frames]
    original_preprocess = measure(
        lambda: [processor(images=[Image.fromarray(f) for f in bgr[i : i + 8]]) for i in range(0, len(bgr), 8)], repeat
    ) / len(frames)  # fmt: skip

    model = CLIPModel(CLIPConfig()).eval()  # ViT-B/32-sized, random weights: the rate does not depend on them
    pixels = processor(images=frames[:32], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        model.get_image_features(pixel_values=pixels[:8])  # warm-up
        encode = measure(lambda: model.get_image_features(pixel_values=pixels)) / len(pixels)
        original_encode = measure(lambda: [model.get_image_features(pixel_values=pixels[i : i + 8]) for i in (0, 8, 16, 24)]) / 32  # fmt: skip

    decoded = sum(probe(clip).num_frames for clip in clips)  # the original's pass over the clip files alone
    original_decode = measure(lambda: [read_like_original(clip, INTERVAL) for clip in clips]) / decoded
    copy_per_byte = measure(lambda: grow_like_original(frames[0], 64), repeat) / (64 * 65 / 2 * frames[0].nbytes)
    return {"decode": decode, "preprocess": preprocess, "decode_resized": decode_resized,
            "preprocess_resized": preprocess_resized, "encode_cpu": encode, "original_decode": original_decode,
            "original_preprocess": original_preprocess, "original_encode_cpu": original_encode,
            "copy_per_byte": copy_per_byte}  # fmt: skip


def measure_construction(long_video: Path, clips: list[Path], workdir: Path, repeat: int) -> dict[str, float]:
    """Per-frame costs of scene detection and per-clip costs of the caption frames, ours and the original's."""
    from scenedetect import ContentDetector, FrameTimecode, detect, split_video_ffmpeg

    from generation._scenes import DetectionSettings, score_video

    info = probe(long_video)
    segment = measure(lambda: score_video(long_video, info.fps, DetectionSettings())) / info.num_frames
    out = workdir / "split"
    spans = [(s.start, s.end) for s in job_for(long_video, clips).segments if s.kind == "clip"]
    # Cut where the clips are: what re-encoding costs depends on the frames, not on where the cuts fall.
    scenes = [(FrameTimecode(start, info.fps), FrameTimecode(end, info.fps)) for start, end in spans]

    def original_segmentation():
        shutil.rmtree(out, ignore_errors=True)
        detect(str(long_video), ContentDetector(threshold=34.0, min_scene_len=round(5 * info.fps)))
        split_video_ffmpeg(str(long_video), scenes, output_dir=out, show_progress=False)

    segment_original = measure(original_segmentation) / info.num_frames
    processor = clip_processor(336)
    clip_times = [uniform_times(start, end, lovr_caption_num_frames(round((end - start) * FPS), FPS)) for start, end in spans]  # fmt: skip

    def ours():  # one pass over the video for all its clips, as generation.caption does for a batch
        frames = decode_frames_at(long_video, [t for times in clip_times for t in times])
        offset = 0
        for times in clip_times:
            processor(images=list(frames[offset : offset + len(times)]))
            offset += len(times)

    def original():  # each clip file opened (a temporary copy) and decoded on its own
        for clip, (start, _), times in zip(clips, spans, clip_times, strict=True):
            with tempfile.NamedTemporaryFile(suffix=clip.suffix) as tmp:
                shutil.copyfile(clip, tmp.name)
                processor(images=list(decode_frames_at(tmp.name, [t - start for t in times])))

    caption_clip = measure(ours, repeat) / len(clips)
    return {"segment": segment, "segment_original": segment_original, "caption_clip": caption_clip,
            "caption_clip_original": measure(original, repeat) / len(clips)}  # fmt: skip


@dataclass
class Scale:
    """What the full evaluation decodes and embeds, from the frame plan of one 26-minute video of LoVR-length clips."""

    decoded: float  # frames decoded by one pass per video
    embedded: float  # distinct frames embedded (clips and video)
    original_embedded: float  # every clip's frames, then the video's again
    original_concat_bytes: float  # bytes the growing arrays copy, per frame byte


def full_scale(seed: int = 0) -> Scale:
    rng = np.random.default_rng(seed)
    frames = round(VIDEO_MINUTES * 60 * FPS)
    lengths = rng.uniform(5.0, 2 * CLIP_SECONDS - 5.0, size=round(NUM_CLIPS / NUM_VIDEOS))
    bounds = np.concatenate([[0.0], np.cumsum(lengths * VIDEO_MINUTES * 60 / lengths.sum())])
    segments = [Segment(str(i), "clip", a, b) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]
    info = VideoInfo(Path("synthetic.mp4"), frames / FPS, FPS, frames, 1280, 720)
    job = VideoJob("v", info.path, [*segments, Segment("v", "video")])
    owners, segment_frames = plan_frames(job, FrameSampling(interval=INTERVAL), [info])
    counts = [len(f) for f in segment_frames]
    # The k-th frame appended to the merged video's array copies the k before it. The clips' arrays are short; their
    # copying is part of the original's measured decoding cost per frame.
    concat = counts[-1] * (counts[-1] + 1) / 2
    return Scale(NUM_VIDEOS * frames, NUM_VIDEOS * len(owners), NUM_VIDEOS * sum(counts), NUM_VIDEOS * concat)


def project(costs: Costs, scale: Scale, frame_bytes: int, cores: int, gpus: int, args) -> dict[str, float]:
    """Projected hours of each stage, ours and the original's, on `cores` CPU cores and `gpus` GPUs."""
    original_cpu = (costs.original_decode * 2 * scale.decoded + costs.original_preprocess * scale.original_embedded
                    + costs.copy_per_byte * frame_bytes * scale.original_concat_bytes)  # fmt: skip
    processes = min(max(gpus, 1), cores)  # the original: one serial process per chunk, a chunk per GPU
    if gpus:
        original = (original_cpu + scale.original_embedded / args.gpu_frames_per_second) / processes
    else:
        original = (original_cpu + costs.original_encode_cpu * scale.original_embedded) / processes
    hours = {"evaluate_original": original}
    for key, decode, preprocess in [("evaluate", costs.decode, costs.preprocess),
                                    ("evaluate_resized", costs.decode_resized, costs.preprocess_resized)]:  # fmt: skip
        cpu = decode * scale.decoded + preprocess * scale.embedded
        if gpus:  # decoding and preprocessing run beside the model
            hours[key] = max(cpu / cores, scale.embedded / args.gpu_frames_per_second / gpus)
        else:
            hours[key] = (cpu + costs.encode_cpu * scale.embedded) / cores
    hours["segment"] = costs.segment * scale.decoded / cores
    hours["segment_original"] = costs.segment_original * scale.decoded / cores
    if gpus:
        caption_gpu = NUM_CLIPS * args.caption_gpu_seconds
        hours["caption"] = (costs.caption_clip * NUM_CLIPS + caption_gpu) / min(gpus, cores)
        hours["caption_overlapped"] = max(costs.caption_clip * NUM_CLIPS / cores, caption_gpu / gpus)
        hours["caption_original"] = (costs.caption_clip_original * NUM_CLIPS + caption_gpu) / min(gpus, cores)
    return {name: seconds / 3600 for name, seconds in hours.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, nargs="+", default=[2, 16, 16], help="CPU cores of each setup")
    parser.add_argument("--gpus", type=int, nargs="+", default=[0, 1, 8], help="GPUs of each setup")
    parser.add_argument("--minutes", type=float, default=1.5, help="length of the synthetic video measured")
    parser.add_argument("--size", default="1280x720", help="WIDTHxHEIGHT of the synthetic video (assumed LoVR's)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the short measurements (median)")
    parser.add_argument("--gpu-frames-per-second", type=float, default=GPU_FRAMES_PER_SECOND,
                        help=f"ViT-B/32 frames/s on one GPU (default {GPU_FRAMES_PER_SECOND:g}: assumed, see the source)")  # fmt: skip
    parser.add_argument("--caption-gpu-seconds", type=float, default=CAPTION_GPU_SECONDS,
                        help=f"seconds per clip caption of a 7B VLM on one GPU (default {CAPTION_GPU_SECONDS:g}: assumed)")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path(".cache/bench-scale"))
    args = parser.parse_args()
    if len(args.cores) != len(args.gpus) or min(args.cores) < 1 or min(args.gpus) < 0:
        parser.error(f"--cores {args.cores} and --gpus {args.gpus}: expected as many of each, cores >= 1, gpus >= 0")

    torch.set_num_threads(1)  # costs per core; the projection spreads them
    size = tuple(int(n) for n in args.size.split("x"))
    started = time.perf_counter()
    long_video, clips = make_inputs(args.workdir, args.minutes, round(CLIP_SECONDS), size, fps=FPS)
    costs = Costs(
        **measure_evaluation(long_video, clips, args.repeat),
        **measure_construction(long_video, clips, args.workdir, args.repeat),
    )
    scale = full_scale()
    print(f"measured on {long_video.name} ({len(clips)} clips) in {time.perf_counter() - started:.0f} s\n")
    print_costs(costs)
    print(f"\nfull scale: {scale.decoded / 1e6:.1f}M frames decoded; embedded {scale.embedded / 1e6:.2f}M (ours) vs "
          f"{scale.original_embedded / 1e6:.2f}M (original, which decodes {2 * scale.decoded / 1e6:.1f}M)\n")  # fmt: skip
    frame_bytes = size[0] * size[1] * 3
    growing = costs.copy_per_byte * frame_bytes * scale.original_concat_bytes / 3600
    print(
        f"of the original's CPU work, {growing:.0f} h is its growing np.concatenate (the merged video's array of "
        f"{round(VIDEO_MINUTES * 60 * FPS / INTERVAL) * frame_bytes / 2**30:.1f} GiB copied once per frame added)\n"
    )
    print_projection(costs, scale, frame_bytes, args)


def print_costs(costs: Costs) -> None:
    rows = [
        ("decode, per decoded frame", costs.decode, costs.original_decode),
        ("preprocess (CLIP 224 px), per embedded frame", costs.preprocess, costs.original_preprocess),
        ("decode resized by FFmpeg (--resize_in_decoder), per decoded frame", costs.decode_resized, None),
        ("preprocess of those frames, per embedded frame", costs.preprocess_resized, None),
        ("encode ViT-B/32 on 1 CPU thread, per embedded frame", costs.encode_cpu, costs.original_encode_cpu),
        ("scene detection, per decoded frame", costs.segment, costs.segment_original),
        ("caption frames + 336 px processor, per clip", costs.caption_clip, costs.caption_clip_original),
    ]
    print("| cost (CPU ms) | ours | original | original / ours |")
    print("|---|---:|---:|---:|")
    for name, ours, original in rows:
        if original is None:
            print(f"| {name} | {1000 * ours:.3f} | | |")
        else:
            print(f"| {name} | {1000 * ours:.3f} | {1000 * original:.3f} | {original / ours:.1f}x |")


def print_projection(costs: Costs, scale: Scale, frame_bytes: int, args) -> None:
    print("| cores | GPUs | stage | ours (h) | original (h) | original / ours |")
    print("|---:|---:|---|---:|---:|---:|")
    for cores, gpus in zip(args.cores, args.gpus, strict=True):
        hours = project(costs, scale, frame_bytes, cores, gpus, args)
        stages = [
            ("evaluate", "evaluate"),
            ("evaluate --resize_in_decoder", "evaluate_resized"),
            ("segment", "segment"),
        ]
        if gpus:
            stages += [
                ("caption (decode, then generate)", "caption"),
                ("caption, overlapped", "caption_overlapped"),
            ]
        for label, key in stages:
            original = hours[f"{key.split('_')[0]}_original"]
            print(f"| {cores} | {gpus} | {label} | {hours[key]:.1f} | {original:.1f} | {original / hours[key]:.1f}x |")
    return report([])


if __name__ == "__main__":
    sys.exit(main())
