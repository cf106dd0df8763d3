"""`python -m lovr_metric evaluate` end to end on a tiny exported dataset: outputs, failed videos, a video tower,
and the same numbers under a real `accelerate launch` with two processes."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import torch
from datasets import load_dataset

from lovr_metric.__main__ import main
from lovr_metric.report import RANDOM_WEIGHTS_WARNING
from lovr_metric.runner import EvaluateConfig, evaluate_model
from tests.conftest import accelerate_launch

from .encode_data import BROKEN, lovr_export, official_export, tiny_models  # noqa: F401

TOP_KEYS = {"model", "text_model", "revision", "random_weights", "dataset", "settings", "metrics", "cost_ms",
            "num_failed_videos", "failed_videos", "toolkit_version"}  # fmt: skip
COST_KEYS = {"decode", "preprocess", "encode", "total_with_io", "total_without_io"}


def _args(model, export, videos_dir, out, cache) -> list[str]:
    return ["evaluate", "--dataset", str(export), "--video-root", str(videos_dir), "--model", str(model),
            "--output", str(out), "--cache-dir", str(cache), "--interval", "4", "--k-values", "1", "2"]  # fmt: skip


def test_evaluate_writes_results_table_and_plot(tmp_path, lovr_export, tiny_models):  # noqa: F811
    export, videos_dir = lovr_export
    main(_args(tiny_models["clip"], export, videos_dir, tmp_path / "out", tmp_path / "cache"))
    results = json.loads((tmp_path / "out" / "results.json").read_text())

    assert set(results) == TOP_KEYS
    assert results["random_weights"] is True and results["text_model"] is None
    assert results["settings"]["interval"] == 4 and results["settings"]["bgr"] is False
    assert set(results["cost_ms"]) == {"clip", "video"}
    assert all(set(parts) == COST_KEYS for parts in results["cost_ms"].values())
    # The corrupt video is reported; its clips and caption are left out of the rankings and counted.
    assert results["num_failed_videos"] == 1 and results["failed_videos"][0]["id"] == BROKEN
    queries = load_dataset(str(export), "clips")["test"]
    lost = sum(row["video_id"] == BROKEN for row in queries)
    clip = results["metrics"]["clip"]
    assert clip["text_to_video_num_queries"] == clip["video_to_text_num_queries"] == len(queries) - lost
    assert clip["num_skipped_texts"] == lost
    video = results["metrics"]["video"]
    assert video["text_to_video_num_queries"] == 2 and video["num_skipped_texts"] == 1  # alpha, beta; not gamma
    for values in results["metrics"].values():
        assert {"text_to_video_pass@1", "text_to_video_pass@2", "video_to_text_mrr"} <= set(values)
        assert 0.0 <= values["text_to_video_pass@1"] <= values["text_to_video_pass@2"] <= 1.0

    table = (tmp_path / "out" / "results.md").read_text()
    assert RANDOM_WEIGHTS_WARNING in table and "| text → clip |" in table and "| video → text |" in table
    assert (tmp_path / "out" / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"


def test_video_tower_model(tmp_path, lovr_export, tiny_models):  # noqa: F811
    export, videos_dir = lovr_export
    main(_args(tiny_models["xclip"], export, videos_dir, tmp_path / "out", tmp_path / "cache"))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["settings"]["num_frames"] == 8 and results["settings"]["interval"] is None
    assert results["settings"]["encoder"]["family"] == "video"
    assert results["metrics"]["clip"]["text_to_video_num_queries"] > 0


class MeanColourAdapter:
    """A model-free adapter: a frame is its mean colour, a text its counts of the words red, green and blue."""

    calls = 0

    def encode_text(self, texts):
        self.calls += 1
        return torch.tensor([[t.lower().count(c) + 0.1 for c in ("red", "green", "blue")] for t in texts])

    def preprocess_frames(self, frames):
        return np.stack(frames).astype(np.float32)

    def encode_frames(self, inputs):
        self.calls += 1
        return torch.from_numpy(inputs.mean(axis=(1, 2)))


def test_adapter_for_anything_else(tmp_path, lovr_export):  # noqa: F811
    export, videos_dir = lovr_export
    config = EvaluateConfig(dataset=str(export), video_root=str(videos_dir), model="mean-colour",
                            output=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"), k_values=[1])  # fmt: skip
    adapter = MeanColourAdapter()
    results = evaluate_model(config, encoder=adapter)
    assert adapter.calls > 0 and results["random_weights"] is False
    assert results["settings"]["encoder"]["family"] == "MeanColourAdapter"
    assert results["metrics"]["clip"]["text_to_video_num_queries"] > 0


def test_official_release_clip_files_merged_videos_and_themes(tmp_path, official_export, tiny_models):  # noqa: F811
    export, release = official_export
    main(_args(tiny_models["siglip"], export, release, tmp_path / "out", tmp_path / "cache"))
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["num_failed_videos"] == 0
    assert set(results["metrics"]) == {"clip", "video", "theme"}
    assert results["metrics"]["clip"]["text_to_video_num_queries"] == 4  # the frozen query split
    theme = results["metrics"]["theme"]
    assert theme["text_to_video_num_queries"] == 6  # one theme per clip, against all 6 clips; theme -> clip only
    assert not any(key.startswith("video_to_text") for key in theme)
    assert "| theme → clip |" in (tmp_path / "out" / "results.md").read_text()


@pytest.mark.slow
def test_accelerate_launch_two_processes_gives_the_same_results(tmp_path, lovr_export, tiny_models):  # noqa: F811
    export, videos_dir = lovr_export
    main(_args(tiny_models["clip"], export, videos_dir, tmp_path / "single", tmp_path / "cache-single"))
    multi_args = _args(tiny_models["clip"], export, videos_dir, tmp_path / "multi", tmp_path / "cache-multi")
    command = [*accelerate_launch(2), "-m", "lovr_metric", *multi_args]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    multi = json.loads((tmp_path / "multi" / "results.json").read_text())
    assert multi["metrics"] == single["metrics"]
    assert multi["num_failed_videos"] == 1
    # Both processes wrote shards; the main process merged their index files.
    cache_folder = next((tmp_path / "cache-multi").glob("*/*/shards")).parent
    assert [p.name for p in cache_folder.glob("index*.jsonl")] == ["index.jsonl"]
