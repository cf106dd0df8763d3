"""`make demo`'s path at reduced size: every product, offline, in one run."""

import json
import subprocess
import sys

import datasets
import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    out, dataset_dir = tmp_path / "out", tmp_path / "lovr"
    command = [
        sys.executable,
        str(REPO_ROOT / "demo.py"),
        "--out",
        str(out),
        "--dataset-dir",
        str(dataset_dir),
        "--synthetic-scenes",
        "3",
        "--num-queries",
        "3",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "RANDOM WEIGHTS: these numbers are meaningless" in result.stdout

    # bikes (10 s) and bigbuckbunny (5.3 s) give one clip each at LoVR's 5 s minimum; the synthetic video 3
    assert "segment: 3 of 3 videos cut into 5 clips" in result.stdout
    assert "caption: 5 of 5 clips captioned" in result.stdout
    assert "fuse:    3 of 3 videos fused" in result.stdout

    clips = datasets.load_dataset(str(dataset_dir), "clips")
    assert sorted([*clips["test"]["clip_id"], *clips["train"]["clip_id"]]) == [
        "bigbuckbunny-Scene-001",
        "bikes-Scene-001",
        "synthetic-Scene-001",
        "synthetic-Scene-002",
        "synthetic-Scene-003",
    ]
    assert len(clips["test"]) == 3

    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["random_weights"] is True
    assert results["metrics"]["clip"]["text_to_video_num_queries"] == 3
    assert results["metrics"]["video"]["text_to_video_num_queries"] == 3
    assert (out / "eval" / "pass_at_k.png").stat().st_size > 0

    staged = out / "publish"
    assert (staged / "dataset" / "README.md").exists()
    assert sorted(p.name for p in (staged / "space").iterdir()) == [
        "README.md",
        "_retrieval_inputs.py",
        "_tiled_ranks.py",
        "_tiled_top.py",
        "app.py",
        "lovr_retrieval.py",
        "requirements.txt",
        "retrieval.py",
    ]
