"""Property: however often `generation.run` is SIGKILLed, rerunning it to completion gives the uninterrupted run's
folder.

The real pipeline (tiny random-weight models, real synthetic videos, a real SIGKILL of a real process) is killed at
seeded random moments, then run to completion and compared with one uninterrupted run. A kill comes a random
0-0.3 s after a random one of the first few changes that attempt makes to the run folder (a shard line, a merge, a
failure logged...): so every attempt gets further, and kills land anywhere from segmentation to fusion, right
after a write or between two. Every file must be equal byte for byte, except
`failures.jsonl`: it is a log, one line per failure per run (a killed run may have logged the broken video before
dying, and every rerun retries it), so only its set of distinct lines must be equal.
"""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generation.run import main
from lovr_common.run_folder import LOCK_FILE
from lovr_standins.videos import make_synthetic_video

from .pipeline_args import run_args

SEED = 11
KILLS = 4
# An uninterrupted run changes the folder about 20 times; each attempt is killed after 1 to 4 of its changes.
CHANGES = (1, 4)
EXTRA_DELAY_S = 0.3
LIMIT_S = 60


def _args(videos: Path, workdir: Path) -> list[str]:
    return run_args(videos, workdir, "--batch_size", "2")


def _folder(workdir: Path) -> dict[str, bytes | set[bytes]]:
    files = {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.rglob("*")) if p.is_file()}
    files["failures.jsonl"] = set(files["failures.jsonl"].splitlines())
    return files


def _state(workdir: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file in `workdir`; a temporary file renamed away while we look is skipped."""
    state = []
    for path in workdir.rglob("*") if workdir.exists() else ():
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if path.name != LOCK_FILE:
            state.append((str(path), stat.st_size, stat.st_mtime_ns))
    return sorted(state)


def _killed_run(args: list[str], workdir: Path, changes: int, delay: float, deadline: float) -> int:
    """Start the pipeline and SIGKILL it `delay` s after its `changes`-th change to `workdir`; its return code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "generation.run", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        state, seen = _state(workdir), 0
        while proc.poll() is None and seen < changes:
            if time.monotonic() > deadline:
                pytest.fail(f"the run made {seen} of {changes} changes to {workdir} in time")
            time.sleep(0.005)
            if (now := _state(workdir)) != state:
                state, seen = now, seen + 1
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return proc.returncode


@pytest.mark.slow
def test_sigkills_at_random_moments_then_a_rerun_equal_an_uninterrupted_run(tmp_path):
    deadline = time.monotonic() + LIMIT_S
    videos = tmp_path / "videos"
    make_synthetic_video(videos / "tiny.mp4", scene_seconds=[5, 6], fps=10, size=(64, 48))  # 2 clips
    make_synthetic_video(videos / "other.mp4", scene_seconds=[6], fps=10, size=(48, 32))  # 1 clip
    (videos / "broken.mp4").write_bytes(b"")  # fails in segment, every run
    reference = tmp_path / "reference"
    assert main(_args(videos, reference)) == 1  # the broken video

    workdir = tmp_path / "killed"
    rng = random.Random(SEED)
    codes = [
        _killed_run(_args(videos, workdir), workdir, rng.randint(*CHANGES), rng.uniform(0, EXTRA_DELAY_S), deadline)
        for _ in range(KILLS)
    ]
    assert codes[0] == -signal.SIGKILL, "the first kill came after the run had ended: nothing was interrupted"
    assert set(codes) <= {-signal.SIGKILL, 1}, codes
    assert main(_args(videos, workdir)) == 1
    assert _folder(workdir) == _folder(reference)
    assert time.monotonic() < deadline
