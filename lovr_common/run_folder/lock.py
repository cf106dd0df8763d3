"""One writer per run folder: `workdir_lock(W)`, an exclusive `flock` on `W/.lock` holding the holder's pid.

The OS drops the lock when its holder dies, so a killed run never blocks the next one; a second run on the same
folder is refused at once with `WorkdirBusyError`, naming the holder's pid. Under `accelerate launch` the main
process takes it for the whole launch and tells the other ranks the outcome. Every stage holds it from reading its
inputs to writing its outputs; `generation.run` holds it once for all its stages (the lock is reentrant).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lovr_common.run_folder.layout import LOCK_FILE

# Run folders this process (this launch, on every rank) holds, with how deeply the holds are nested.
_held: dict[Path, int] = {}


class WorkdirBusyError(RuntimeError):
    """Another run holds the run folder's lock (the message names its pid). Not an `OSError`, so that no handler
    of a stage's per-item I/O failures can take it for one."""


def _acquire(workdir: Path, create: bool) -> int:
    """The file descriptor holding `workdir`'s lock; raises `WorkdirBusyError` when another process holds it."""
    if create:
        workdir.mkdir(parents=True, exist_ok=True)
    elif not workdir.is_dir():
        raise ValueError(f"run folder {workdir} does not exist: expected the --workdir of an earlier generation stage")
    fd = os.open(workdir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        os.close(fd)
        holder = f"process {pid}" if pid else "a process that has not written its pid yet"
        raise WorkdirBusyError(
            f"run folder {workdir} is in use by {holder} (it holds {workdir / LOCK_FILE}); one run at a time per "
            f"folder: wait for it to end, or give another --workdir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    # Only a dead writer can have left temporary files behind, now that no other process holds the folder.
    for tmp in workdir.glob(".*.jsonl.tmp-*"):
        tmp.unlink(missing_ok=True)
    return fd


@contextmanager
def workdir_lock(workdir: str | os.PathLike, *, create: bool = True) -> Iterator[None]:
    """Hold run folder `workdir` for this process, or this `accelerate launch`, until the block ends.

    Raises `WorkdirBusyError` on every rank when another process holds it. A missing folder is made when `create`
    (the stages that start a run folder), else a `ValueError` (the stages that read an earlier stage's output).
    Reentrant: `generation.run` holds it and the stages it calls hold it again. Every rank must enter and leave it
    together.
    """
    # accelerate (and torch) load only once a writer locks: the readers of a run folder never need them.
    from accelerate.utils import broadcast_object_list

    from lovr_common.processes import process_state

    key = Path(workdir).resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    state = process_state()
    fd, refusal = None, None
    if state.is_main_process:
        try:
            fd = _acquire(key, create)
        except (OSError, ValueError, WorkdirBusyError) as err:
            refusal = err  # raised on every rank below, so that no rank waits for the others forever
    if state.num_processes > 1:
        (refusal,) = broadcast_object_list([refusal])
    if refusal is not None:
        raise refusal
    _held[key] = 1
    try:
        yield
        state.wait_for_everyone()  # no rank may still be writing once the main process lets go
    finally:
        del _held[key]
        if fd is not None:
            os.ftruncate(fd, 0)
            os.close(fd)


@contextmanager
def command_lock(workdir: str | os.PathLike, command: str, *, create: bool = False) -> Iterator[None]:
    """`workdir_lock` for a command's `main`: a busy run folder ends `command` with a one-line message."""
    try:
        with workdir_lock(workdir, create=create):
            yield
    except WorkdirBusyError as err:
        raise SystemExit(f"{command}: {err}") from None
