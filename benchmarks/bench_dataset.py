"""Build + export and load of the LoVR dataset at full scale with synthetic text, against plain pyarrow.

    nice -n 5 python benchmarks/bench_dataset.py [--scale 1.0] [--repeats 3] [--workdir /tmp/lovr-bench]

Synthetic official release in the release's layout: caption_data/all_clip.jsonl and all_video.jsonl, 40,804 clips
with ~1,000-word captions and 467 videos with ~17,000-word captions, and an empty file in video_data/ for every clip
and video (an export lists the release's clip files; nothing here decodes them). Every measured step runs in a
process of its own, so its peak memory (max RSS) is its own, and the steps take turns, `--repeats` times; the table
gives medians.
- floor:  pyarrow reads the two JSON Lines files and writes the same Parquet (pyarrow.json + pq.write_table);
- export: `lovr_dataset.export` (the builder, every config, Parquet, README);
- pyarrow read: pq.read_table of the exported clips Parquet;
- load:   `datasets.load_dataset(export, "clips")` into a fresh cache (cold), then again (warm, cached);
- plain load: `datasets.load_dataset("parquet", ...)` of the export's clips table (every split, its features) as
  pyarrow writes it, in one file with row groups of 1,000 rows as the export's, cold: what these rows cost
  `datasets` in any Parquet, so that the ratio is what the export's own files add;
- sharded load: the same export with its clips split into `SHARDS` Parquet files, loaded cold with
  `num_proc=SHARDS_PROC` (datasets gives each process whole files): does sharding let a cold load use every core?
Imports are not timed. Both readers first read a tiny export, so that what a library does once per process
(datasets imports some modules lazily on its first load) is not charged to this dataset; that one-time cost has a
row of its own. CPU seconds (user + system, every thread) sit next to wall seconds: pyarrow reads row groups on
several threads, datasets reads them one after the other and then writes its Arrow cache.
Targets, checked on the run itself (the exit status is 1 when one is missed): build + export <= 1.5x the floor's time
and peak memory <= 1.3x the floor's; a cold load <= 1.2x the plain load; a warm load <= 1.5x pyarrow read.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from targets import Target, report

NUM_CLIPS, NUM_VIDEOS, CLIP_WORDS, VIDEO_WORDS = 40_804, 467, 1_000, 17_000
TINY_SCALE = 0.001
SHARDS, SHARDS_PROC = 4, 2
EXPORT_TARGET, EXPORT_MEMORY_TARGET = 1.5, 1.3  # build + export against the floor: time, peak memory
LOAD_TARGET = 1.2  # a cold load of the export against one of the same table as pyarrow writes it
# Rows per row group of the plain Parquet: those of datasets' writer, hence of the export (pyarrow's default puts
# all 40,804 clips in one row group, which datasets loads 2-3x slower).
PLAIN_ROW_GROUP = 1000


def make_source(root: Path, scale: float, seed: int = 0) -> None:
    """The synthetic release in `root`, with an empty file for each clip (where its record's `path` puts it) and
    video: listing them is part of exporting the release, decoding them is not."""
    from lovr_dataset.sources.official import CLIP_DIR, MERGED_DIR

    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{index}" for index in range(5_000)])
    num_videos = max(1, round(NUM_VIDEOS * scale))
    num_clips = max(num_videos, round(NUM_CLIPS * scale))
    (root / "caption_data").mkdir(parents=True)
    (root / MERGED_DIR).mkdir(parents=True)
    for index in range(num_videos):
        (root / MERGED_DIR / f"vid{index:04d}.mp4").touch()
        (root / CLIP_DIR / f"vid{index:04d}").mkdir(parents=True)

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
            (root / CLIP_DIR / record["path"]).touch()
    with open(root / "caption_data/all_video.jsonl", "w") as f:
        for index in range(num_videos):
            f.write(json.dumps({"vid": f"vid{index:04d}", "cap": text(VIDEO_WORDS)}) + "\n")


def clip_parquet(export_dir: Path) -> list[Path]:
    return sorted((export_dir / "clips").glob("*.parquet"))


def reshard(export_dir: Path, out: Path, shards: int) -> None:
    """A copy of `export_dir` whose clips train split is `shards` Parquet files of consecutive rows."""
    import pyarrow.parquet as pq

    shutil.copytree(export_dir, out)
    parts = sorted((out / "clips").glob("train-*.parquet"))  # the export's own parts, in order
    table = pq.read_table(parts)
    for part in parts:
        part.unlink()
    bounds = np.linspace(0, table.num_rows, shards + 1).astype(int)
    for index, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(table.slice(start, end - start), out / "clips" / f"train-{index:05d}-of-{shards:05d}.parquet")


def step(name: str, workdir: Path, repeat: int) -> None:
    """Run one measured step in this process and print its seconds, CPU seconds and peak RSS as JSON."""
    import datasets
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    from lovr_dataset import export

    datasets.disable_progress_bars()
    source, out, tiny = workdir / "LoVR", workdir / "lovr", workdir / "lovr-tiny"
    load_cache = str(workdir / f"hf-cache-load-{repeat}")
    first_call = None
    if name == "prepare":  # the exports the other steps read; in a process of its own, like every step
        export(workdir / "LoVR-tiny", tiny, cache_dir=str(workdir / "hf-cache-tiny"))
        export(source, out, cache_dir=str(workdir / "hf-cache-export"))
        reshard(out, workdir / "lovr-sharded", SHARDS)
        (workdir / "plain").mkdir()  # the export's clips, every split, in one file as pyarrow writes it
        pq.write_table(
            pq.read_table(clip_parquet(out)), workdir / "plain/clips.parquet", row_group_size=PLAIN_ROW_GROUP
        )
        return
    if name == "pyarrow_read":
        pq.read_table(clip_parquet(tiny))
    elif name in ("load_cold", "load_warm", "load_sharded", "load_plain"):
        started = time.perf_counter()
        datasets.load_dataset(str(tiny), "clips", cache_dir=str(workdir / f"hf-cache-tiny-{name}-{repeat}"))
        first_call = time.perf_counter() - started

    start, cpu_start = time.perf_counter(), time.process_time()
    if name == "floor":
        floor = workdir / f"floor-{repeat}"
        floor.mkdir()
        for stem in ("all_clip", "all_video"):
            pq.write_table(pj.read_json(source / f"caption_data/{stem}.jsonl"), floor / f"{stem}.parquet")
    elif name == "export":
        export(source, workdir / f"lovr-{repeat}", cache_dir=str(workdir / f"hf-cache-export-{repeat}"))
    elif name == "pyarrow_read":
        pq.read_table(clip_parquet(out))
    elif name in ("load_cold", "load_warm"):
        datasets.load_dataset(str(out), "clips", cache_dir=load_cache)
    elif name == "load_plain":
        datasets.load_dataset("parquet", data_files=str(workdir / "plain/clips.parquet"), cache_dir=load_cache)
    elif name == "load_sharded":
        datasets.load_dataset(str(workdir / "lovr-sharded"), "clips", cache_dir=load_cache + "-sharded",
                              num_proc=SHARDS_PROC)  # fmt: skip
    result = {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu_start,
        "first_call_seconds": first_call,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))


def measure(name: str, workdir: Path, repeat: int) -> dict:
    command = [sys.executable, __file__, "--step", name, "--workdir", str(workdir), "--repeat", str(repeat)]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> dict:
    """Median seconds over the repeats; the highest peak memory seen."""
    summary = {key: statistics.median(run[key] for run in runs) for key in ("seconds", "cpu_seconds")}
    summary["peak_mib"] = max(run["peak_mib"] for run in runs)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lovr-bench"))
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.step:
        step(args.step, args.workdir, args.repeat)
        return 0

    shutil.rmtree(args.workdir, ignore_errors=True)
    source = args.workdir / "LoVR"
    started = time.perf_counter()
    make_source(source, args.scale)
    make_source(args.workdir / "LoVR-tiny", TINY_SCALE)
    size = sum(path.stat().st_size for path in source.rglob("*.jsonl")) / 2**20
    print(
        f"synthetic source: {size:.0f} MiB of JSON Lines in {time.perf_counter() - started:.0f} s (scale {args.scale})"
    )
    # Linux carries a process's peak RSS over into the children it starts, so this process stays small: every step,
    # the preparing exports included, runs in a child.
    subprocess.run([sys.executable, __file__, "--step", "prepare", "--workdir", str(args.workdir)], check=True)

    names = ("floor", "export", "pyarrow_read", "load_cold", "load_warm", "load_sharded", "load_plain")
    runs = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:  # the steps take turns, so that a slow spell of the machine hits all of them
            runs[name].append(measure(name, args.workdir, repeat))
            if name == "export":  # keep the disk use flat: only ./lovr is read by later steps
                shutil.rmtree(args.workdir / f"lovr-{repeat}")
    floor, ours, read, cold, warm, sharded, plain = (summarize(runs[name]) for name in names)

    rows = [
        ("build + export", ours, floor, "pyarrow json -> parquet", EXPORT_TARGET),
        ("load_dataset (cold cache)", cold, plain, "load_dataset of the same table, one pyarrow file", LOAD_TARGET),
        # A figure: datasets reads row groups one after the other and writes its cache, pq.read_table on every core.
        ("load_dataset (cold cache)", cold, read, "pq.read_table", None),
        ("load_dataset (warm cache)", warm, read, "pq.read_table", 1.5),
        # A figure, not a target: on 2 cores a second loader process costs more than it saves (docs/benchmarks.md).
        (f"load_dataset (cold, {SHARDS} shards, num_proc={SHARDS_PROC})", sharded, read, "pq.read_table", None),
    ]
    print(f"\nmedians of {args.repeats} runs taking turns")
    header = ["step", "lovr_dataset s (CPU s)", "baseline", "baseline s (CPU s)", "ratio", "target"]
    print("| " + " | ".join([*header, "peak MiB (ours / baseline)"]) + " |")
    print("|---|---|---|---|---|---|---|")
    targets = []
    for label, mine, base, base_label, target in rows:
        ratio = mine["seconds"] / base["seconds"]
        verdict = "none (figure only)"
        if target is not None:
            targets.append(Target(f"{label}: time / {base_label}", ratio, target))
            verdict = f"<= {target}x {'ok' if ratio <= target else 'MISSED'}"
        print(
            f"| {label} | {mine['seconds']:.2f} ({mine['cpu_seconds']:.2f}) | {base_label} | {base['seconds']:.2f} "
            f"({base['cpu_seconds']:.2f}) | {ratio:.2f}x | {verdict} | {mine['peak_mib']:.0f} / {base['peak_mib']:.0f} |"
        )
    first_call = statistics.median(run["first_call_seconds"] for run in runs["load_cold"])
    print(f"\nfirst load_dataset in a process (a {TINY_SCALE:g}-scale export): {first_call:.2f} s, once per process")
    memory = ours["peak_mib"] / floor["peak_mib"]
    targets.insert(1, Target("build + export: peak memory / pyarrow json -> parquet", memory, EXPORT_MEMORY_TARGET))
    return report(targets, f"scale {args.scale:g}, medians of {args.repeats} run(s)")


if __name__ == "__main__":
    sys.exit(main())
