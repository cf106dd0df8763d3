"""`python -m lovr_dataset` runs no model: its start-up imports neither transformers nor torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, runpy, sys
sys.argv = ["lovr_dataset", *sys.argv[1:]]
try:
    runpy.run_module("lovr_dataset", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(json.dumps(sorted(name for name in ("transformers", "torch") if name in sys.modules)))
"""


@pytest.mark.parametrize("command", ["export", "push"])
def test_help_imports_neither_transformers_nor_torch(command):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, command, "--help"], capture_output=True, text=True, check=True
    )
    assert f"python -m lovr_dataset {command}" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1]) == []
