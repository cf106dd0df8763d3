"""Every benchmark starts as its docstring runs it (`python benchmarks/NAME.py`), from any folder: its imports
resolve, the stand-ins (`lovr_standins`, never installed) included, and its options parse."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(path.name for path in BENCHMARKS.glob("*.py") if path.name != "targets.py"))
def test_the_benchmark_starts(script, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
