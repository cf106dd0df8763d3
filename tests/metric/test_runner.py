"""`python -m lovr_metric evaluate` end to end on a tiny exported dataset: outputs, failed videos, a video tower,
exit statuses when a granularity cannot be ranked, paths that leave the video root, and the same numbers under a
real `accelerate launch` with two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from datasets import load_dataset

from lovr_metric.__main__ import main
from lovr_metric.evaluation.data import FINGERPRINT_SCHEME
from lovr_metric.evaluation.outputs import RANDOM_WEIGHTS_WARNING
from lovr_metric.evaluation.ranking import read_per_query
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model
from tests.conftest import accelerate_launch

from .encode_data import BROKEN, evaluate_args

TOP_KEYS = {
    "model",
    "text_model",
    "revision",
    "random_weights",
    "dataset",
    "protocol",
    "protocol_settings",
    "dataset_fingerprint",
    "settings",
    "metrics",
    "intervals",
    "bootstrap",
    "unranked",
    "cost_ms",
    "num_video_files",
    "num_failed_videos",
    "failed_videos",
    "complete",
    "incomplete_reason",
    "toolkit_version",
}
COST_KEYS = {"decode", "preprocess", "encode", "total_with_io", "total_without_io"}


def _args(model, export, videos_dir, out, cache) -> list[str]:
    return evaluate_args(
        model, export, videos_dir, cache, "--output", str(out), "--interval", "4", "--k-values", "1", "2"
    )


def test_evaluate_writes_results_table_and_plot(tmp_path, lovr_export, tiny_models, capsys):
    export, videos_dir = lovr_export
    assert main(_args(tiny_models["clip"], export, videos_dir, tmp_path / "out", tmp_path / "cache")) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())

    assert set(results) == TOP_KEYS
    assert results["random_weights"] is True and results["text_model"] is None
    assert results["settings"]["interval"] == 4 and results["settings"]["bgr"] is False
    # The image processor that made the pixels is recorded (and keys the cache): PIL's backend unless asked.
    assert results["settings"]["encoder"]["image_processor"] == "CLIPImageProcessorPil"
    assert "image_processor" not in results["settings"]["text_encoder"]
    assert results["settings"]["granularity"] == ["clip", "video"]  # by default what the data has texts for
    assert set(results["cost_ms"]) == {"clip", "video"}
    assert all(set(parts) == COST_KEYS for parts in results["cost_ms"].values())
    # The corrupt video is reported, in results.json and in the printed summary; its clips and caption are left out
    # of the rankings and counted.
    assert results["num_failed_videos"] == 1 and results["failed_videos"][0]["id"] == BROKEN
    assert results["num_video_files"] == 3 and results["unranked"] == {}
    printed = capsys.readouterr().out
    assert f"1 of 3 video files could not be decoded ({BROKEN})" in printed and "failed_videos" in printed
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

    # Every metric has its bootstrap interval, which holds it; every query is in per_query.parquet.
    assert results["protocol"] == "default" and results["dataset_fingerprint"].startswith(FINGERPRINT_SCHEME)
    assert results["protocol_settings"] == {
        "name": "default",
        "frames": "RGB",
        "pooling": "normalized",
        "video_frames": "the video's own file",
        "theme_directions": ["text_to_video"],
    }
    for granularity, values in results["metrics"].items():
        intervals = results["intervals"][granularity]
        assert set(intervals) == set(values) - {
            "num_skipped_texts",
            "text_to_video_num_queries",
            "video_to_text_num_queries",
        }
        assert all(intervals[key][0] <= values[key] <= intervals[key][1] for key in intervals)
    per_query = read_per_query(tmp_path / "out" / "per_query.parquet")
    assert sorted(per_query) == [
        ("clip", "text_to_video"),
        ("clip", "video_to_text"),
        ("video", "text_to_video"),
        ("video", "video_to_text"),
    ]
    for (granularity, direction), ranks in per_query.items():
        assert len(ranks.query_ids) == results["metrics"][granularity][f"{direction}_num_queries"]
        mrr = float(np.mean([1 / r[0] for r in ranks.relevant_ranks]))
        assert mrr == pytest.approx(results["metrics"][granularity][f"{direction}_mrr"])

    table = (tmp_path / "out" / "results.md").read_text()
    assert RANDOM_WEIGHTS_WARNING in table and "| text → clip |" in table and "| video → text |" in table
    assert "95% bootstrap intervals over queries (1000 resampled query sets, seed 0" in table
    assert f"1 of 3 video files could not be decoded ({BROKEN})" in table
    table = table.split("bootstrap intervals over queries")[0]  # the metrics table, above the intervals
    # The columns follow --k-values 1 2, and every cell of the four rows is filled.
    header = "| direction | pass@1 | pass@2 | mrr | ndcg@10 | median_rank | mean_rank | num_queries |"
    rows = [line for line in table.splitlines() if line.startswith("| ") and " → " in line]
    assert header in table.splitlines() and len(rows) == 4
    assert all(cell.strip() for row in rows for cell in row.split("|")[1:-1])
    assert (tmp_path / "out" / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"


def test_export_without_its_video_root_exits_1_saying_where(tmp_path, lovr_export, tiny_models):
    # The export folder holds no video files: all 3 fail to decode, so neither clips nor videos can be ranked. The
    # real command exits 1 with the reasons and the folder it looked in, and writes nothing.
    export, _ = lovr_export
    args = _args(tiny_models["clip"], export, None, tmp_path / "out", tmp_path / "cache")
    done = subprocess.run([sys.executable, "-m", "lovr_metric", *args], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr[-3000:]
    error = done.stderr[done.stderr.index("python -m lovr_metric evaluate: error:") :]
    assert "no metric for granularity 'clip': none of the 5 clips that its 5 query captions" in error
    assert "no metric for granularity 'video': none of the 3 videos that its 3 video captions" in error
    assert f"3 of 3 video files could not be decoded, e.g. {export / 'alpha.mp4'}: " in error
    assert f"looked for under {export}" in error and "pass --video_root DIR" in error
    assert "nothing was written" in error and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_theme_on_data_without_themes_exits_1_before_loading(tmp_path, lovr_export, capsys):
    # The model folder does not exist: the error is about the themes, so it came before the model was loaded.
    export, videos_dir = lovr_export
    args = _args(tmp_path / "no-model", export, videos_dir, tmp_path / "out", tmp_path / "cache")
    assert main([*args, "--granularity", "theme"]) == 1
    error = capsys.readouterr().err
    assert "no metric for granularity 'theme': the dataset holds no theme texts (a 'themes' config)" in error
    assert "nothing was written" in error and not (tmp_path / "out").exists()


def test_unreadable_videos_exit_1_after_writing_clips(tmp_path, official_export, tiny_models, capsys):
    # The video root holds the 6 clip files but not the 2 merged videos: clips rank, videos cannot.
    export, release = official_export
    root = tmp_path / "root"
    shutil.copytree(release / "video_data" / "long_video_clip", root / "video_data" / "long_video_clip")
    args = _args(tiny_models["clip"], export, root, tmp_path / "out", tmp_path / "cache")
    assert main([*args, "--granularity", "clip", "video"]) == 1
    error = capsys.readouterr().err
    assert "no metric for granularity 'video': none of the 2 videos that its 2 video captions" in error
    assert "2 of 8 video files could not be decoded, e.g. " in error and "pass --video_root DIR" in error
    assert f"the others were ranked: see {tmp_path / 'out' / 'results.json'}" in error
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(results["metrics"]) == {"clip"} and set(results["unranked"]) == {"video"}
    assert results["metrics"]["clip"]["text_to_video_num_queries"] == 4
    assert results["num_failed_videos"] == 2 and results["num_video_files"] == 8
    assert "No metric for video: none of the 2 videos" in (tmp_path / "out" / "results.md").read_text()


def test_video_tower_model(tmp_path, lovr_export, tiny_models):
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


def test_adapter_for_anything_else(tmp_path, lovr_export):
    export, videos_dir = lovr_export
    config = EvaluateConfig(
        dataset=str(export),
        video_root=str(videos_dir),
        model="mean-colour",
        output=str(tmp_path / "out"),
        cache_dir=str(tmp_path / "cache"),
        k_values=[1],
    )
    adapter = MeanColourAdapter()
    results = evaluate_model(config, encoder=adapter)
    assert adapter.calls > 0 and results["random_weights"] is False
    assert results["settings"]["encoder"]["family"] == "MeanColourAdapter"
    assert results["metrics"]["clip"]["text_to_video_num_queries"] > 0


def test_official_release_clip_files_merged_videos_and_themes(tmp_path, official_export, tiny_models):
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
def test_accelerate_launch_two_processes_gives_the_same_results(tmp_path, lovr_export, tiny_models):
    export, videos_dir = lovr_export
    main(_args(tiny_models["clip"], export, videos_dir, tmp_path / "single", tmp_path / "cache-single"))
    multi_args = _args(tiny_models["clip"], export, videos_dir, tmp_path / "multi", tmp_path / "cache-multi")
    command = [*accelerate_launch(2), "-m", "lovr_metric", *multi_args]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes share the texts and video files" in done.stderr  # two ranks, not one launched twice
    single = json.loads((tmp_path / "single" / "results.json").read_text())
    multi = json.loads((tmp_path / "multi" / "results.json").read_text())
    assert multi["metrics"] == single["metrics"]
    assert multi["num_failed_videos"] == 1
    # Both processes wrote shards; the main process merged their index files.
    cache_folder = next((tmp_path / "cache-multi").glob("*/*/shards")).parent
    assert [p.name for p in cache_folder.glob("index*.jsonl")] == ["index.jsonl"]


@pytest.mark.slow
@pytest.mark.parametrize("late", ["main", "other"])
def test_every_text_is_embedded_when_one_rank_reads_the_cache_late(tmp_path, late):
    # The late rank reads the cache after the other has written its share: it must split the same list all the same.
    script = os.path.join(os.path.dirname(__file__), "late_rank_texts.py")
    done = subprocess.run(
        [*accelerate_launch(2), script, str(tmp_path / "cache"), late, "9"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "missing 0 of 9" in done.stdout


def test_pyav_is_imported_only_to_open_a_video():
    # A re-run with every embedding cached decodes nothing: it does not wait for PyAV's import (0.3 s).
    script = "import sys, lovr_metric.evaluation.runner, lovr_metric.__main__; print('av' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]
