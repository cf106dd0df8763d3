"""Build + export and load of the LoVR dataset at full scale with synthetic text, against plain pyarrow.

    nice -n 5 python benchmarks/bench_dataset.py [--scale 1.0] [--workdir /tmp/lovr-bench]

Synthetic official release (caption_data/all_clip.jsonl, all_video.jsonl; no video files): 40,804 clips with
~1,000-word captions and 467 videos with ~17,000-word captions. Each step runs in its own process, so its peak
memory (max RSS) is its own:
- floor:  pyarrow reads the two JSON Lines files and writes the same Parquet (pyarrow.json + pq.write_table);
- export: `lovr_dataset.export` (the builder, every config, Parquet, README);
- pyarrow read: pq.read_table of the exported clips Parquet;
- load:   `datasets.load_dataset(export, "clips")` into a fresh cache (cold), then again (warm, cached).
Targets: export <= 2x floor, load <= 1.5x pyarrow read.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

NUM_CLIPS, NUM_VIDEOS, CLIP_WORDS, VIDEO_WORDS = 40_804, 467, 1_000, 17_000


def make_source(root: Path, scale: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{index}" for index in range(5_000)])
    num_videos = max(1, round(NUM_VIDEOS * scale))
    num_clips = max(num_videos, round(NUM_CLIPS * scale))
    (root / "caption_data").mkdir(parents=True)

    def text(words: int) -> str:
        return " ".join(vocabulary[rng.integers(0, len(vocabulary), words)])

    with open(root / "caption_data/all_clip.jsonl", "w") as f:
        for index in range(num_clips):
            vid = f"vid{index % num_videos:04d}"
            clip_id = f"{vid}-Scene-{index // num_videos + 1:03d}"
            record = {
                "vid": vid,
                "slice_num": index // num_videos + 1,
                "path": f"{vid}/{clip_id}.mp4",
                "cap": text(CLIP_WORDS),
            }
            f.write(json.dumps(record) + "\n")
    with open(root / "caption_data/all_video.jsonl", "w") as f:
        for index in range(num_videos):
            f.write(json.dumps({"vid": f"vid{index:04d}", "cap": text(VIDEO_WORDS)}) + "\n")


def step(name: str, source: Path, out: Path) -> None:
    """Run one measured step in this process and print its seconds and peak RSS as JSON."""
    import datasets
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from lovr_dataset import export

    start = time.perf_counter()  # imports are not timed: only the work is
    if name == "floor":
        out.mkdir(parents=True)
        for stem in ("all_clip", "all_video"):
            pq.write_table(pj.read_json(source / f"caption_data/{stem}.jsonl"), out / f"{stem}.parquet")
    elif name == "export":
        export(source, out, cache_dir=str(out.parent / "hf-cache-export"))
    elif name == "pyarrow_read":
        pq.read_table(sorted((out / "clips").glob("*.parquet")))
    elif name in ("load_cold", "load_warm"):
        datasets.load_dataset(str(out), "clips", cache_dir=str(out.parent / "hf-cache-load"))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(name: str, source: Path, out: Path) -> dict:
    command = [sys.executable, __file__, "--step", name, "--source", str(source), "--out", str(out)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lovr-bench"))
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        return step(args.step, args.source, args.out)

    shutil.rmtree(args.workdir, ignore_errors=True)
    source = args.workdir / "LoVR"
    started = time.perf_counter()
    make_source(source, args.scale)
    size = sum(path.stat().st_size for path in source.rglob("*.jsonl")) / 2**20
    print(
        f"synthetic source: {size:.0f} MiB of JSON Lines in {time.perf_counter() - started:.0f} s (scale {args.scale})"
    )

    floor = measure("floor", source, args.workdir / "floor")
    ours = measure("export", source, args.workdir / "lovr")
    read = measure("pyarrow_read", source, args.workdir / "lovr")
    cold = measure("load_cold", source, args.workdir / "lovr")
    warm = measure("load_warm", source, args.workdir / "lovr")

    rows = [
        ("build + export", ours, floor, "pyarrow json -> parquet", 2.0),
        ("load_dataset (cold cache)", cold, read, "pq.read_table", 1.5),
        ("load_dataset (warm cache)", warm, read, "pq.read_table", 1.5),
    ]
    print("\n| step | lovr_dataset s | baseline | baseline s | ratio | target | peak MiB (ours / baseline) |")
    print("|---|---|---|---|---|---|---|")
    for label, mine, base, base_label, target in rows:
        ratio = mine["seconds"] / base["seconds"]
        print(
            f"| {label} | {mine['seconds']:.2f} | {base_label} | {base['seconds']:.2f} | {ratio:.2f}x | <= {target}x "
            f"{'ok' if ratio <= target else 'MISSED'} | {mine['peak_mib']:.0f} / {base['peak_mib']:.0f} |"
        )


if __name__ == "__main__":
    main()
