"""Fixtures shared by every area of the suite."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from .local_hub import LocalHub

REPO_ROOT = Path(__file__).resolve().parents[1]

# The suite never reaches the Hub, whoever runs it (the Makefile sets these too).
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Built once and reused across runs: the tiny random-weight models are deterministic recipes.
os.environ.setdefault("LOVR_TINY_MODELS", str(REPO_ROOT / ".cache" / "tiny-models"))


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    """Where `lovr_standins.tiny_models` builds and keeps the tiny models for this suite."""
    return Path(os.environ["LOVR_TINY_MODELS"])


def accelerate_launch(num_processes: int) -> list[str]:
    """The start of a real `accelerate launch` of `num_processes` ranks on this CPU machine, without a saved
    accelerate config. Several ranks need accelerate's torchrun launcher (`--multi_gpu`, which starts CPU ranks
    where no GPU is visible: `lovr_common.processes`; GPUs are hidden from it, so that the ranks are CPU ranks on a
    GPU machine too), each launch on a port of its own so that launches running at once rarely meet; the simple
    launcher (`--cpu`) starts one process, whatever `--num_processes` says."""
    if num_processes == 1:
        start = [sys.executable, "-m", "accelerate.commands.launch", "--cpu"]
    else:
        start = [
            "env",
            "CUDA_VISIBLE_DEVICES=",
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--main_process_port",
            str(_free_port()),
        ]
    return [
        *start,
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def local_hub(tmp_path_factory):
    """A `tests.local_hub.LocalHub` on 127.0.0.1 shared by one test module, stopped at its end.

    Hub clients run in subprocesses with `local_hub.client_env()`; a crash inside the server fails the module.
    """
    with LocalHub(clients_dir=tmp_path_factory.mktemp("hub-clients")) as hub:
        yield hub
    if hub.errors:
        pytest.fail("the local hub crashed:\n" + "\n".join(hub.errors))
