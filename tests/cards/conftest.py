"""Tiny LoVR exports, run folders and results for the card tests, written by hand so every number is checkable.

The export mirrors `python -m lovr_dataset export`: Parquet per config and split plus a README.md whose YAML
declares `configs:`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import Dataset
from huggingface_hub import DatasetCard, DatasetCardData

# Two videos: "vidA" (3 clips) and "-vidB" (1 clip; ids may start with '-').
CLIPS = {
    "video_id": ["vidA", "vidA", "vidA", "-vidB"],
    "clip_id": ["vidA-Scene-001", "vidA-Scene-002", "vidA-Scene-003", "-vidB-Scene-001"],
    "clip_index": [1, 2, 3, 1],
    "start": [0.0, 5.0, 12.0, 0.0],
    "end": [5.0, 12.0, 30.0, 6.0],
    # 4, 2, 6 and 3 words
    "caption": ["a man rides bikes", "red car", "the dog runs across the street", "a rabbit wakes"],
    "clip_path": [None, None, None, None],
    "video_path": ["vidA.mp4", "vidA.mp4", "vidA.mp4", "-vidB.mp4"],
    "split": ["test", "test", "gallery", "gallery"],
}
VIDEOS = {
    "video_id": ["vidA", "-vidB"],
    # 11 and 5 words
    "caption": ["a man rides bikes then a red car passes by fast", "a rabbit wakes up slowly"],
    "duration": [30.0, 6.0],
    "num_clips": [3, 1],
    "clip_ids": [["vidA-Scene-001", "vidA-Scene-002", "vidA-Scene-003"], ["-vidB-Scene-001"]],
    "video_path": ["vidA.mp4", "-vidB.mp4"],
}
METRIC_CARD = """---
title: LoVR retrieval
tags:
- evaluate
- metric
sdk: gradio
app_file: app.py
---
# Metric Card for LoVR retrieval
"""


def write_metric_dir(root: Path, card: str = METRIC_CARD) -> Path:
    """An evaluate module folder as `lovr_metric/lovr_retrieval` lays it out, plus a stray bytecode cache."""
    root.mkdir(parents=True)
    (root / "README.md").write_text(card)
    (root / "app.py").write_text("import evaluate\n")
    (root / "requirements.txt").write_text("evaluate\n")
    (root / "lovr_retrieval.py").write_text("import evaluate\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "lovr_retrieval.cpython-311.pyc").write_bytes(b"\0")
    return root


def write_results(
    root: Path, model: str = "openai/clip-vit-base-patch32", random_weights: bool = False, failed: tuple = ()
) -> Path:
    """A runner results.json with clip and video metrics (values chosen by hand); the video ids in `failed` failed
    to decode."""
    root.mkdir(parents=True, exist_ok=True)
    clip = {
        "text_to_video_pass@1": 0.5,
        "text_to_video_pass@5": 0.75,
        "text_to_video_mrr": 0.625,
        "video_to_text_pass@1": 0.25,
        "video_to_text_median_rank": 3.0,
        "text_to_video_num_queries": 4,
    }
    video = {"text_to_video_pass@1": 1.0, "video_to_text_pass@1": 0.5}
    results = {
        "model": model,
        "text_model": None,
        "revision": None,
        "random_weights": random_weights,
        "dataset": "lovr",
        "protocol": "default",
        "settings": {"interval": 10, "random_weights": random_weights, "missing": []},
        "metrics": {"clip": clip, "video": video},
        "cost_ms": {"clip": {}, "video": {}},
        "num_failed_videos": len(failed),
        "failed_videos": [{"id": v, "path": f"{v}.mp4", "reason": "corrupt"} for v in failed],
        "toolkit_version": "0.1.0",
    }
    (root / "results.json").write_text(json.dumps(results))
    return root


def write_export(root: Path, clips: dict = CLIPS, videos: dict = VIDEOS) -> Path:
    """Write the two configs as Parquet (`clips` split in two) and the README.md YAML declaring them."""
    root.mkdir(parents=True, exist_ok=True)
    clip_ds = Dataset.from_dict(clips)
    (root / "clips").mkdir()
    clip_ds.select(range(2)).to_parquet(root / "clips" / "test-00000-of-00001.parquet")
    clip_ds.select(range(2, len(clip_ds))).to_parquet(root / "clips" / "gallery-00000-of-00001.parquet")
    (root / "videos").mkdir()
    Dataset.from_dict(videos).to_parquet(root / "videos" / "test-00000-of-00001.parquet")
    card_data = DatasetCardData(
        configs=[
            {
                "config_name": "clips",
                "default": True,
                "data_files": [
                    {"split": "test", "path": "clips/test-*.parquet"},
                    {"split": "gallery", "path": "clips/gallery-*.parquet"},
                ],
            },
            {"config_name": "videos", "data_files": [{"split": "test", "path": "videos/test-*.parquet"}]},
        ]
    )
    DatasetCard(f"---\n{card_data.to_yaml()}\n---\n").save(root / "README.md")
    return root


def write_run(workdir: Path) -> Path:
    """A run folder with one record per stage file, settings as the stages write them (CONTRIBUTING.md)."""
    workdir.mkdir(parents=True, exist_ok=True)
    clips = [
        {
            "clip_id": f"vidA-Scene-{n:03d}",
            "clip_index": n,
            "start": start,
            "end": end,
            "start_frame": int(start * 25),
            "end_frame": int(end * 25),
            "clip_path": None,
            "low_dynamic": None,
        }
        for n, (start, end) in enumerate([(0.0, 5.0), (5.0, 12.0)], start=1)
    ]
    segments = {
        "video_id": "vidA",
        "video_path": "vidA.mp4",
        "videos_dir": str(workdir / "videos"),
        "duration": 30.0,
        "fps": 25.0,
        "num_frames": 750,
        "width": 640,
        "height": 272,
        "clips": clips,
        "status": "ok",
        "settings": {"detector": "content", "threshold": 34.0, "min_scene_len_s": 5.0, "downscale": 3},
    }
    caption_settings = {"model": "Qwen/Qwen2.5-VL-7B-Instruct", "prompt_version": "lovr-code-v1", "attempt": 1}
    captions = [
        {
            "clip_id": "vidA-Scene-001",
            "video_id": "vidA",
            "caption": "a red bike",
            "status": "ok",
            "settings": caption_settings,
            "score": 0.8,
            "scorer": {"name": "evqascore", "threshold": 0.5},
            "review": None,
        },
        {
            "clip_id": "vidA-Scene-002",
            "video_id": "vidA",
            "caption": "a car",
            "status": "ok",
            "settings": {**caption_settings, "attempt": 2},
            "score": 0.2,
            "scorer": {"name": "evqascore", "threshold": 0.5},
            "review": "pending",
        },
    ]
    videos = {
        "video_id": "vidA",
        "caption": "a red bike then a car",
        "clip_ids": ["vidA-Scene-001", "vidA-Scene-002"],
        "num_clips": 2,
        "duration": 30.0,
        "status": "ok",
        "boundaries": [{"after": "vidA-Scene-001", "status": "fallback", "reason": "timeout"}],
        "settings": {"model": "gpt-4o", "cluster_size": 10, "temperature": 0.5},
    }
    (workdir / "segments.jsonl").write_text(json.dumps(segments) + "\n")
    (workdir / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in captions))
    (workdir / "videos.jsonl").write_text(json.dumps(videos) + "\n")
    return workdir


@pytest.fixture
def export_dir(tmp_path) -> Path:
    return write_export(tmp_path / "lovr")


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return write_run(tmp_path / "run")


@pytest.fixture
def metric_dir(tmp_path) -> Path:
    return write_metric_dir(tmp_path / "lovr_retrieval")


@pytest.fixture
def hf_cache(tmp_path) -> str:
    return str(tmp_path / "hf_cache")
