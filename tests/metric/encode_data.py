"""A tiny LoVR dataset with real video files for the encoder, cache and runner tests.

A run folder (`generation`'s layout) with two synthetic long videos cut into virtual clips and one video file that
is corrupt, exported with `lovr_dataset`'s own export, so the runner reads it through `load_dataset` like any user.
The fixtures built from it (`lovr_export`, `official_export`, `tiny_models`) live in this folder's conftest.py;
test modules import its constants (`SCENES`, `FPS`, `BROKEN`) and the command line `evaluate_args` from here.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from lovr_standins.videos import make_synthetic_video

SCENES = [1.0, 1.2, 0.8]  # seconds; each scene is one clip
FPS = 25
VIDEOS = ("alpha", "beta")
BROKEN = "gamma"  # listed with clips, but its file does not decode


def evaluate_args(model, export, videos_dir, cache, *options) -> list[str]:
    """The `lovr_metric evaluate` command line on an export (`--video-root` left out when `videos_dir` is None),
    followed by `options`."""
    root = [] if videos_dir is None else ["--video-root", str(videos_dir)]
    return ["evaluate", "--dataset", str(export), *root, "--model", str(model), "--cache-dir", str(cache), *options]


def _segments(video_id: str, videos_dir: Path) -> dict:
    clips, start = [], 0.0
    for n, seconds in enumerate(SCENES, start=1):
        end = round(start + seconds, 3)
        clips.append(
            {
                "clip_id": f"{video_id}-Scene-{n:03d}",
                "clip_index": n,
                "start": start,
                "end": end,
                "start_frame": round(start * FPS),
                "end_frame": round(end * FPS),
                "clip_path": None,
                "low_dynamic": None,
            }
        )
        start = end
    return {
        "video_id": video_id,
        "video_path": f"{video_id}.mp4",
        "videos_dir": str(videos_dir),
        "duration": start,
        "fps": FPS,
        "clips": clips,
        "settings": {},
        "status": "ok",
    }


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def make_lovr_run(root: Path) -> tuple[Path, Path]:
    """Write the run folder `root` and its videos folder; return both."""
    videos_dir = root.parent / f"{root.name}-videos"
    videos_dir.mkdir(parents=True)
    root.mkdir(parents=True)
    for seed, video_id in enumerate(VIDEOS):
        make_synthetic_video(videos_dir / f"{video_id}.mp4", scene_seconds=SCENES, fps=FPS, size=(64, 48), seed=seed)
    (videos_dir / f"{BROKEN}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    segments = [_segments(video_id, videos_dir) for video_id in (*VIDEOS, BROKEN)]
    ok = {"status": "ok", "settings": {"model": "hand-written"}}
    captions = [
        {
            "clip_id": clip["clip_id"],
            "video_id": s["video_id"],
            "caption": f"Scene {clip['clip_index']} of {s['video_id']}.",
            **ok,
        }
        for s in segments
        for clip in s["clips"]
    ]
    videos = [
        {
            "video_id": s["video_id"],
            "caption": f"The whole {s['video_id']} video.",
            "clip_ids": [c["clip_id"] for c in s["clips"]],
            "num_clips": len(s["clips"]),
            "duration": s["duration"],
            **ok,
        }
        for s in segments
    ]
    _write_jsonl(root / "segments.jsonl", segments)
    _write_jsonl(root / "captions.jsonl", captions)
    _write_jsonl(root / "videos.jsonl", videos)
    return root, videos_dir


def make_official_release(root: Path) -> Path:
    """The official layout: one file per clip, the merged videos, clip and video captions, theme texts."""
    clips, videos, themes = [], [], []
    for seed, video_id in enumerate(("-dash", "echo")):  # ids may start with '-'
        parts = []
        for n, seconds in enumerate(SCENES, start=1):
            clip_id = f"{video_id}-Scene-{n:03d}"
            path = root / "video_data/long_video_clip" / video_id / f"{clip_id}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            make_synthetic_video(path, scene_seconds=[seconds], fps=FPS, size=(64, 48), seed=10 * seed + n)
            parts.append(path)
            clips.append(
                {"vid": video_id, "slice_num": n, "path": f"{video_id}/{clip_id}.mp4", "cap": f"Clip {clip_id}."}
            )
            themes.append({"vid": clip_id, "cap": f"Theme of {clip_id}."})
        merged = root / "video_data/merged" / f"{video_id}.mp4"
        merged.parent.mkdir(parents=True, exist_ok=True)
        listing = root / f"{video_id}.txt"
        listing.write_text("".join(f"file '{part.resolve()}'\n" for part in parts))
        subprocess.run(
            ["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(merged)],
            check=True,
        )
        listing.unlink()
        videos.append({"vid": video_id, "cap": f"The whole {video_id} video."})
    (root / "caption_data").mkdir(parents=True)
    _write_jsonl(root / "caption_data/all_clip.jsonl", clips)
    _write_jsonl(root / "caption_data/all_video.jsonl", videos)
    _write_jsonl(root / "caption_data/clip_cap_theme.jsonl", themes)
    return root
