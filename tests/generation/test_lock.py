"""One writer per run folder: `lovr_common.run_folder.workdir_lock`, with real processes, real SIGKILL and a real
`accelerate launch`.

The holder is `echo_stage.py --hold GATE`: once its first record is written (the folder locked) it writes its pid
to GATE.held and waits for GATE.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generation import caption, fuse, refine, review, run, segment
from generation.backends import BackendArguments
from generation.stage import run_sharded
from lovr_common.run_folder import LOCK_FILE, WorkdirBusyError, workdir_lock
from tests.generation.echo_stage import ECHO, launch_command

ECHO_STAGE = Path(__file__).with_name("echo_stage.py")
EXPECTED = [{"id": f"i-{n:03d}", "text": f"I-{n:03d}", "status": "ok"} for n in range(6)]


def _start_holder(workdir, gate, launcher=(sys.executable, str(ECHO_STAGE)), count=6):
    cmd = [*launcher, str(workdir), str(count), "--hold", str(gate)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    held = gate.with_name(gate.name + ".held")
    deadline = time.monotonic() + 120
    while not held.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the holder never held the folder: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    return proc, int(held.read_text())


def _snapshot(workdir):
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(Path(workdir).rglob("*")) if p.is_file()}


def _records(workdir):
    return [json.loads(line) for line in ECHO.path(workdir).read_text().splitlines()]


def _probe(workdir) -> bool:
    """Whether another open file description could take the lock now (flock conflicts even within a process)."""
    fd = os.open(Path(workdir) / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_second_run_on_the_same_workdir_is_refused_naming_the_holder(tmp_path):
    workdir, gate = tmp_path / "w", tmp_path / "gate"
    holder, pid = _start_holder(workdir, gate)
    try:
        assert pid == holder.pid
        before = _snapshot(workdir)
        # every stage command, in this (second) process, stops before reading or writing anything
        w, m = ["--workdir", str(workdir)], ["--model", "no-such-model"]
        for name, main, argv in [
            ("segment", segment.main, ["--videos", str(tmp_path), *w]),
            ("caption", caption.main, [*w, *m]),
            ("refine", refine.main, [*w, *m, "--threshold", "0.5", "--scorer_model", "no-such-model"]),
            ("fuse", fuse.main, [*w, *m]),
            ("review", review.main, w),
            ("run", run.main, ["--videos", str(tmp_path), *w, *m]),
        ]:
            with pytest.raises(SystemExit, match=rf"^generation\.{name}: run folder .* in use by process {pid} "):
                main(argv)
        with pytest.raises(WorkdirBusyError, match=f"process {pid} "):
            run_sharded(workdir=workdir, stage=ECHO, items=[{"id": "x"}], process_batch=lambda b: [])
        # and a third process, from its command line: a non-zero exit with the message
        third = subprocess.run(
            [sys.executable, str(ECHO_STAGE), str(workdir), "6"], capture_output=True, text=True, timeout=120
        )
        assert third.returncode != 0 and f"in use by process {pid} " in third.stderr, third.stderr[-2000:]
        assert _snapshot(workdir) == before
    finally:
        gate.touch()
        _, err = holder.communicate(timeout=120)
    assert holder.returncode == 0, err[-2000:]
    assert _records(workdir) == EXPECTED
    assert (workdir / LOCK_FILE).read_text() == ""  # released: no stale pid left for a reader to believe


def test_a_sigkilled_holder_does_not_block_the_next_run(tmp_path):
    workdir, gate = tmp_path / "w", tmp_path / "gate"
    holder, _ = _start_holder(workdir, gate)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert holder.returncode == -signal.SIGKILL
    done = []

    def process(batch):
        done.extend(item["id"] for item in batch)
        return [{"id": item["id"], "text": item["id"].upper(), "status": "ok"} for item in batch]

    items = [{"id": f"i-{n:03d}"} for n in range(6)]
    run_sharded(workdir=workdir, stage=ECHO, items=items, process_batch=process, batch_size=3)
    assert done == [f"i-{n:03d}" for n in range(1, 6)]  # the killed holder's first record is kept
    assert _records(workdir) == EXPECTED


def test_the_lock_is_reentrant_and_held_until_the_outermost_block_ends(tmp_path):
    with workdir_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with workdir_lock(tmp_path / "." / ""):  # the same folder, spelt otherwise
            assert not _probe(tmp_path)
        assert not _probe(tmp_path)
    assert _probe(tmp_path)


def test_a_stage_reading_an_earlier_one_does_not_create_a_missing_workdir(tmp_path):
    with pytest.raises(ValueError, match=r"run folder .*typo does not exist"):
        fuse.run(fuse.FuseJob(fuse.FuseConfig(str(tmp_path / "typo")), fuse.FuseParams(), BackendArguments(model="m")))
    assert not (tmp_path / "typo").exists()


def test_temporary_files_left_by_a_killed_writer_are_removed_by_the_next_holder(tmp_path):
    # write_jsonl_atomic's temporary file, as a SIGKILL between its write and its rename leaves it
    (tmp_path / ".captions.jsonl.tmp-999999").write_text('{"clip_id": "a"}\n')
    (tmp_path / "notes.tmp-1").write_text("a user's file")
    with workdir_lock(tmp_path):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "notes.tmp-1"]


@pytest.mark.slow
def test_accelerate_launch_shares_the_lock_and_a_second_launch_is_refused(tmp_path):
    workdir, gate = tmp_path / "w", tmp_path / "gate"
    holder, pid = _start_holder(workdir, gate, launch_command(2), count=20)
    try:
        before = _snapshot(workdir)
        second = subprocess.run([*launch_command(2), str(workdir), "20"], capture_output=True, text=True, timeout=120)
        # both ranks of the refused launch stop (the launcher returns), each saying who holds the folder
        assert second.returncode != 0, second.stderr[-2000:]
        for rank in (0, 1):
            assert (
                f"[rank{rank}]: lovr_common.run_folder.lock.WorkdirBusyError: run folder {workdir} is in use by process {pid} "
                in second.stderr
            ), second.stderr[-3000:]
        assert _snapshot(workdir) == before
    finally:
        gate.touch()
        _, err = holder.communicate(timeout=120)
    # no rank of the accepted launch was refused: rank 1 wrote its share while rank 0 held the lock
    assert holder.returncode == 0, err[-2000:]
    assert [r["id"] for r in _records(workdir)] == [f"i-{n:03d}" for n in range(20)]
