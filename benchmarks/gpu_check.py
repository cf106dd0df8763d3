"""GPU readiness check: the metric core's GPU branch at full LoVR scale and encoder throughput in fp16/bf16.

    bash benchmarks/gpu_check.sh                        # on a GPU machine, under 5 minutes; writes gpu_check.json
    python benchmarks/gpu_check.py --device cpu --scale 0.02 --encoder_batches 1   # a dry run of the same code

1. Metric: synthetic normalised embeddings, 40,804 texts x 40,804 clips, d = 512 (as `bench_metric.py`), ranked by
   `retrieval_metrics` on the device and on the CPU. The metrics must agree (a difference is only possible at near
   ties, where the two BLAS libraries round a score differently; the maximum difference is printed), and the
   device time is set against the bare matrix products of the same shape on the same device (the GEMM floor).
2. Encoders: a CLIP ViT-B/32-sized model (transformers' `CLIPConfig()` defaults, random weights: no checkpoint can be
   downloaded on the GPU machine, and the throughput of an architecture does not depend on its weights) through the
   toolkit's `TransformersEncoder`, frames/s and texts/s in float32, float16 and bfloat16. The numbers it embeds
   are meaningless; only the rates count.
3. Preprocessing: CLIP's image processor, 640x360 frames to 224 px, with PIL's backend (evaluate's default) and,
   where torchvision is installed, torchvision's on the CPU and on the device.

Needs torch and transformers only (no datasets, PyAV or evaluate), so the GPU image runs it as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lovr_metric import retrieval_metrics

NUM_CLIPS = 40_804
DIM = 512
TEXT_NOISE = 6.0
K_VALUES = (1, 5, 10, 20, 50, 100)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_data(num: int) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """Clip embeddings and noisy text copies of them (text -> clip pass@1 near 0.33 at full scale)."""
    generator = torch.Generator().manual_seed(0)
    videos = torch.nn.functional.normalize(torch.randn(num, DIM, generator=generator), dim=1)
    texts = torch.nn.functional.normalize(videos + TEXT_NOISE * torch.randn(num, DIM, generator=generator) / DIM**0.5)
    return texts, [f"clip{i:05d}" for i in range(num)], videos


def gemm_floor(texts: torch.Tensor, videos: torch.Tensor, rows: int = 4096) -> float:
    """Seconds of the score products alone, in row blocks of all videos, on the inputs' device."""
    synchronize(texts.device)
    start = time.perf_counter()
    for first in range(0, texts.shape[0], rows):
        torch.mm(texts[first : first + rows], videos.T)
    synchronize(texts.device)
    return time.perf_counter() - start


def check_metric(device: torch.device, scale: float) -> dict:
    num = max(100, round(NUM_CLIPS * scale))
    texts, ids, videos = make_data(num)
    start = time.perf_counter()
    on_cpu = retrieval_metrics(texts, ids, videos, ids, k_values=K_VALUES)
    cpu_seconds = time.perf_counter() - start
    texts_d, videos_d = texts.to(device), videos.to(device)
    retrieval_metrics(texts_d[:256], ids[:256], videos_d[:256], ids[:256], k_values=(1,))  # warm-up
    synchronize(device)
    start = time.perf_counter()
    on_device = retrieval_metrics(texts_d, ids, videos_d, ids, k_values=K_VALUES, device=device)
    synchronize(device)
    device_seconds = time.perf_counter() - start
    gemm_floor(texts_d, videos_d)  # warm-up
    floor = min(gemm_floor(texts_d, videos_d) for _ in range(3))
    differences = {key: abs(on_device[key] - on_cpu[key]) for key in on_cpu}
    return {
        "texts": num,
        "videos": num,
        "cpu_seconds": cpu_seconds,
        "device_seconds": device_seconds,
        "gemm_floor_seconds": floor,
        "ratio_to_floor": device_seconds / floor,
        "metrics_equal": all(d == 0 for d in differences.values()),
        "max_metric_difference": max(differences.values()),
        "device_metrics": on_device,
    }


def make_encoder(device: torch.device, dtype: torch.dtype):
    """The toolkit's encoder around a ViT-B/32-sized CLIP with random weights (no tokenizer: texts are token ids)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from lovr_common.encoders import TransformersEncoder

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig()).to(device=device, dtype=dtype).eval()
    processor = CLIPImageProcessorPil()  # evaluate's default backend
    return TransformersEncoder(model, None, processor, family="clip", text_max_length=77, padding=True)


def check_preprocessing(device: torch.device, frames: list[np.ndarray]) -> dict[str, float]:
    """Frames per second of CLIP's image processor at 224 px: PIL's backend (evaluate's default) on the CPU, and
    where torchvision is installed its backend on the CPU and on `device` (`--image_processor_backend torchvision`
    preprocesses on the CPU today; the device row says what moving it there would give)."""
    from transformers import CLIPImageProcessor, CLIPImageProcessorPil
    from transformers.utils import is_torchvision_available

    cases = {"pil, cpu": (CLIPImageProcessorPil(), {})}
    if is_torchvision_available():
        cases["torchvision, cpu"] = (CLIPImageProcessor(), {"device": "cpu"})
        if device.type != "cpu":
            cases[f"torchvision, {device.type}"] = (CLIPImageProcessor(), {"device": str(device)})
    rates = {}
    for name, (processor, options) in cases.items():
        processor(images=frames[:8], return_tensors="pt", **options)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        processor(images=frames, return_tensors="pt", **options)
        synchronize(device)
        rates[name] = len(frames) / (time.perf_counter() - start)
    return rates


def check_encoders(device: torch.device, batches: int, batch_size: int) -> dict:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(360, 640, 3), dtype=np.uint8) for _ in range(batch_size)]
    tokens = torch.randint(0, 49_000, (batch_size, 77), device=device)
    rows = {}
    for name, dtype in DTYPES.items():
        if device.type == "cpu" and dtype is not torch.float32:
            continue
        encoder = make_encoder(device, dtype)
        inputs = encoder.preprocess_frames(frames)
        with torch.inference_mode():
            encoder.encode_frames(inputs)  # warm-up
            synchronize(device)
            start = time.perf_counter()
            for _ in range(batches):
                encoder.encode_frames(inputs)
            synchronize(device)
            frame_seconds = time.perf_counter() - start
            encoder.model.get_text_features(input_ids=tokens)
            synchronize(device)
            start = time.perf_counter()
            for _ in range(batches):
                encoder.model.get_text_features(input_ids=tokens)
            synchronize(device)
            text_seconds = time.perf_counter() - start
        rows[name] = {
            "frames_per_second": batches * batch_size / frame_seconds,
            "texts_per_second": batches * batch_size / text_seconds,
        }
    return {
        "model": "CLIP ViT-B/32 architecture, random weights (rates only)",
        "batch_size": batch_size,
        **rows,
        "preprocess_frames_per_second": check_preprocessing(device, frames),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 40,804 clips")
    parser.add_argument("--encoder_batches", type=int, default=20)
    parser.add_argument("--encoder_batch_size", type=int, default=256)
    parser.add_argument("--output", default="gpu_check.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; run it on a GPU machine, or pass --device cpu for a dry run")
        return 1
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "metric": check_metric(device, args.scale),
        "encoders": check_encoders(device, args.encoder_batches, args.encoder_batch_size),
    }
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    m = report["metric"]
    print(f"{report['device']}, torch {report['torch']}")
    print("| metric core | texts x videos | seconds | vs GEMM floor | CPU seconds | metrics equal (max diff) |")
    print("|---|---|---|---|---|---|")
    print(f"| device branch | {m['texts']} x {m['videos']} | {m['device_seconds']:.2f} | {m['ratio_to_floor']:.2f}x "
          f"| {m['cpu_seconds']:.2f} | {m['metrics_equal']} ({m['max_metric_difference']:.2g}) |")  # fmt: skip
    print("| encoder dtype | frames/s | texts/s |\n|---|---|---|")
    for name in DTYPES:
        row = report["encoders"].get(name)
        if row:
            print(f"| {name} | {row['frames_per_second']:.0f} | {row['texts_per_second']:.0f} |")
    print("| image processor (640x360 -> 224 px) | frames/s |\n|---|---|")
    for name, rate in report["encoders"]["preprocess_frames_per_second"].items():
        print(f"| {name} | {rate:.0f} |")
    return 0 if m["max_metric_difference"] <= 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
