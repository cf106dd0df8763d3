"""The distributed, resumable shape every stage shares, and the lock that gives a run folder one writer.

Each process gets its share of the ids still to do (`PartialState.split_between_processes`), appends its records
to its own shard file `W/.shards/<stage>-<rank>.jsonl`, one flushed line per record; the main process then merges
the shards into `W/<stage>.jsonl` with an atomic rename. A rerun first folds any leftover shards of a killed run into
the merged file (its work is kept, and no stale shard line can outrank a newer record), so it skips ids already done
and never duplicates or drops one.

Shards are appended to, so a torn last line there is an interrupted write and is dropped. A merged file is only
ever written whole: a torn or malformed line in it, or a key on two of its lines, is damage, and every reader
raises `JsonlError` naming the file and lines.

One writer per run folder: every stage holds `workdir_lock(W)` from reading its inputs to writing its outputs, an
exclusive `flock` on `W/.lock`. The OS drops it when its holder dies, so a killed run never blocks the next one; a
second run on the same folder is refused at once with `WorkdirBusyError`, naming the holder's pid. Under
`accelerate launch` the main process takes it for the whole launch and tells the other ranks the outcome.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from tqdm.auto import tqdm

from lovr_common.jsonl import JsonlError, JsonlWriter, read_jsonl, read_jsonl_numbered, write_jsonl_atomic

logger = logging.getLogger(__name__)

SHARD_DIR = ".shards"
LOCK_FILE = ".lock"
# Run folders this process (this launch, on every rank) holds, with how deeply the holds are nested.
_held: dict[Path, int] = {}


class WorkdirBusyError(RuntimeError):
    """Another run holds the run folder's lock (the message names its pid). Not an `OSError`, so that no handler
    of a stage's per-item I/O failures can take it for one."""


def stage_output(workdir: str | Path, stage: str) -> Path:
    """The merged output file of `stage` in run folder `workdir`."""
    return Path(workdir) / f"{stage}.jsonl"


def _shard_paths(workdir: Path, stage: str) -> list[Path]:
    return sorted((workdir / SHARD_DIR).glob(f"{stage}-*.jsonl"))


def read_merged(path: str | Path, key: str) -> dict[str, dict]:
    """The records of a file written whole (a merged stage file), keyed by `key`, in file order.

    Raises `JsonlError` naming the file and line for a malformed or torn line, and both lines for a repeated key.
    """
    records: dict[str, dict] = {}
    lines: dict[str, int] = {}
    for lineno, record in read_jsonl_numbered(path, tolerate_torn_tail=False):
        id_ = record.get(key)
        if id_ in lines:
            raise JsonlError(
                f"{path}:{lineno}: {key}={id_!r} is repeated (also on line {lines[id_]}): the file is damaged or was "
                f"edited by hand; remove one of the two lines"
            )
        lines[id_] = lineno
        records[id_] = record
    return records


def load_records(workdir: str | Path, stage: str, key: str) -> dict[str, dict]:
    """Every record of `stage` written so far, merged file then shards, keyed by `key` (a shard's record wins)."""
    workdir = Path(workdir)
    merged = stage_output(workdir, stage)
    records = read_merged(merged, key) if merged.exists() else {}
    for path in _shard_paths(workdir, stage):
        for record in read_jsonl(path):
            records[record[key]] = record
    return records


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
def workdir_lock(workdir: str | Path, *, create: bool = True) -> Iterator[None]:
    """Hold run folder `workdir` for this process, or this `accelerate launch`, until the block ends.

    Raises `WorkdirBusyError` on every rank when another process holds it. A missing folder is made when `create`
    (the stages that start a run folder), else a `ValueError` (the stages that read an earlier stage's output).
    Reentrant: `generation.run` holds it and the stages it calls hold it again. Every rank must enter and leave it
    together.
    """
    key = Path(workdir).resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    state = PartialState()
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
def command_lock(workdir: str | Path, command: str, *, create: bool = False) -> Iterator[None]:
    """`workdir_lock` for a command's `main`: a busy run folder ends `command` with a one-line message."""
    try:
        with workdir_lock(workdir, create=create):
            yield
    except WorkdirBusyError as err:
        raise SystemExit(f"{command}: {err}") from None


def run_sharded(
    *,
    workdir: str | Path,
    stage: str,
    key: str,
    items: Sequence[dict],
    process_batch: Callable[[list[dict]], Iterable[dict]],
    batch_size: int = 1,
    is_done: Callable[[dict], bool] = lambda record: True,
    desc: str | None = None,
) -> dict[str, dict]:
    """Run `process_batch` over the `items` whose `key` has no finished record yet and merge the results.

    `process_batch` receives a list of items and yields one record per item (each carrying `key`); a record may be
    yielded as soon as it is ready. `is_done(record)` tells whether an existing record counts as finished (for
    example, to retry failed ones). Holds `workdir_lock(workdir)` throughout. Returns every record of the stage, in
    the order of `items`, on every process.
    """
    state = PartialState()
    workdir = Path(workdir)
    order = [item[key] for item in items]
    with workdir_lock(workdir):
        if state.is_main_process and _shard_paths(workdir, stage):
            _merge(workdir, stage, key, order)
        state.wait_for_everyone()
        existing = load_records(workdir, stage, key)
        # Every rank must split the same list: none may write a record before all have read what is done.
        state.wait_for_everyone()
        todo = [item for item in items if not (item[key] in existing and is_done(existing[item[key]]))]
        if state.is_main_process and len(todo) < len(items):
            logger.info("%s: %d of %d already done, %d to do", stage, len(items) - len(todo), len(items), len(todo))

        shard = workdir / SHARD_DIR / f"{stage}-{state.process_index:05d}.jsonl"
        with state.split_between_processes(todo) as mine:
            if mine:
                bar = tqdm(total=len(mine), desc=desc or stage, disable=not state.is_main_process)
                with JsonlWriter(shard) as writer:
                    for start in range(0, len(mine), batch_size):
                        for record in process_batch(mine[start : start + batch_size]):
                            writer.write(record)
                            bar.update(1)
                bar.close()
        state.wait_for_everyone()

        if state.is_main_process:
            _merge(workdir, stage, key, order)
        state.wait_for_everyone()
        merged = load_records(workdir, stage, key)
    return {item[key]: merged[item[key]] for item in items if item[key] in merged}


def _merge(workdir: Path, stage: str, key: str, order: list[str]) -> None:
    """Fold the shards into the stage's file, ordered as `order` (unknown ids last), then drop the shards."""
    records = load_records(workdir, stage, key)
    rank = {id_: i for i, id_ in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: rank.get(r[key], len(rank)))
    write_jsonl_atomic(stage_output(workdir, stage), ordered)
    for path in _shard_paths(workdir, stage):
        path.unlink()
