"""The shape every stage shares: a distributed, resumable runner over ids, and one command-line convention.

**The sharded runner** (`run_sharded`). Each process gets its share of the ids still to do
(`PartialState.split_between_processes`), appends its records to its own shard file `W/.shards/<stage>-<rank>.jsonl`,
one flushed line per record; the main process then merges the shards into `W/<stage>.jsonl` with an atomic rename.
A rerun first folds any leftover shards of a killed run into the merged file (its work is kept, and no stale shard
line can outrank a newer record), so it skips ids already done and never duplicates or drops one. The runner holds
`workdir_lock(W)` throughout, and it is the one place that logs failed items to `W/failures.jsonl` (`FailureLog`).

**A stage** is a module with a typed `run(job) -> <Stage>Summary` and a thin `main(argv) -> int`:

    def main(argv=None) -> int:
        return stage_main("generation.fuse", FuseJob, run, argv)

A job is a dataclass whose fields are the stage's argument groups (each a dataclass), or a single argument
dataclass, with a `workdir`. `stage_main` parses it (`lovr_common.cli.DataclassArgumentParser`: one spelling per
option in `--help`, flags as `--flag` / `--no_flag`), sets up logging (INFO on the main
process, WARNING on the others), holds the run folder, runs the stage, prints its report on the main process and
returns exit status 1 when something failed, else 0. Bad input (a `ValueError`: bad arguments, a missing or damaged
stage file) and a busy run folder end the command with a one-line message naming it (`SystemExit`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

from lovr_common.cli import DataclassArgumentParser, command_name
from lovr_common.jsonl import JsonlWriter, write_jsonl_atomic
from lovr_common.processes import process_state
from lovr_common.run_folder import StageFile, command_lock, load_records, record_failure, workdir_lock

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
J = TypeVar("J")


@dataclass(frozen=True)
class FailureLog:
    """How `run_sharded` logs a stage's failed records in `W/failures.jsonl`.

    Args:
        stage (`str`): the `stage` of the log's lines (`"segments"`, `"captions"`, `"refine"`, `"fuse"`).
        reason (`Callable[[dict], str | None]`): a record's failure reason, or None when it did not fail.
        path (`Callable[[dict], str | os.PathLike | None]`, *optional*): the input file of an item, for the log.
    """

    stage: str
    reason: Callable[[dict], str | None]
    path: Callable[[dict], str | os.PathLike | None] = lambda item: None


def run_sharded(
    *,
    workdir: str | os.PathLike,
    stage: StageFile,
    items: Sequence[dict],
    process_batch: Callable[[list[dict]], Iterable[dict]],
    batch_size: int = 1,
    is_done: Callable[[dict], bool] = lambda record: True,
    failures: FailureLog | None = None,
    desc: str | None = None,
    prepare: Callable[[list[dict]], Any] | None = None,
) -> dict[str, dict]:
    """Run `process_batch` over the `items` whose `stage.key` has no finished record yet and merge the results.

    `process_batch` receives a list of items and yields one record per item, in order (each carrying the key); a
    record may be yielded as soon as it is ready. With `prepare` (the part of the work that needs no model, such as
    decoding the batch's frames), `process_batch(batch, prepare(batch))` is called instead, and the next batch is
    prepared in a background thread while this one is processed: one batch ahead, so memory stays bounded. PyAV
    decodes and PIL resizes without the GIL, so decoding overlaps generation. `is_done(record)` tells whether an existing record counts as
    finished (for example, to retry failed ones). A record that `failures` calls failed gets a line in
    `W/failures.jsonl` as it is written. Holds `workdir_lock(workdir)` throughout. Returns every record of the
    stage, in the order of `items`, on every process.
    """
    state = process_state()
    workdir = Path(workdir)
    key = stage.key
    order = [item[key] for item in items]
    with workdir_lock(workdir):
        if state.is_main_process and stage.shard_paths(workdir):
            _merge(workdir, stage, order)
        state.wait_for_everyone()
        existing = load_records(workdir, stage)
        # Every rank must split the same list: none may write a record before all have read what is done.
        state.wait_for_everyone()
        todo = [item for item in items if not (item[key] in existing and is_done(existing[item[key]]))]
        if state.is_main_process and (len(todo) < len(items) or state.num_processes > 1):
            done = f"{len(items) - len(todo)} of {len(items)} already done, " if len(todo) < len(items) else ""
            shared = f", shared by {state.num_processes} processes" if state.num_processes > 1 else ""
            logger.info("%s: %s%d to do%s", stage.name, done, len(todo), shared)

        with state.split_between_processes(todo) as mine:
            if mine:
                _process(workdir, stage, mine, process_batch, batch_size, failures, desc or stage.name, prepare)
        state.wait_for_everyone()

        if state.is_main_process:
            _merge(workdir, stage, order)
        state.wait_for_everyone()
        merged = load_records(workdir, stage)
    return {item[key]: merged[item[key]] for item in items if item[key] in merged}


def _batch_records(
    batches: list[list[dict]], process_batch: Callable[..., Iterable[dict]], prepare: Callable | None
) -> Iterator[tuple[list[dict], Iterable[dict]]]:
    """`(batch, its records)` in order; with `prepare`, the next batch is prepared in a thread meanwhile."""
    if prepare is None:
        for batch in batches:
            yield batch, process_batch(batch)
        return
    if not batches:
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="lovr-prepare")
    try:
        ahead = None
        for index, batch in enumerate(batches):
            # The first batch has nothing to overlap with: prepared here, so lazy loading stays on this thread.
            prepared = prepare(batch) if ahead is None else ahead.result()
            ahead = pool.submit(prepare, batches[index + 1]) if index + 1 < len(batches) else None
            yield batch, process_batch(batch, prepared)
    finally:  # on an error the exception comes out at once; a preparation already running still ends before exit
        pool.shutdown(wait=False, cancel_futures=True)


def _process(
    workdir: Path,
    stage: StageFile,
    mine: list[dict],
    process_batch: Callable[[list[dict]], Iterable[dict]],
    batch_size: int,
    failures: FailureLog | None,
    desc: str,
    prepare: Callable[[list[dict]], Any] | None = None,
) -> None:
    """This rank's share: its records appended to its shard, its failures to the failure log."""
    state = process_state()
    bar = tqdm(total=len(mine), desc=desc, disable=not state.is_main_process)
    batches = [mine[start : start + batch_size] for start in range(0, len(mine), batch_size)]
    with JsonlWriter(stage.shard_path(workdir, state.process_index)) as writer:
        for batch, records in _batch_records(batches, process_batch, prepare):
            for item, record in zip_longest(batch, records):
                if item is None or record is None:
                    raise RuntimeError(
                        f"{stage.name}: process_batch gave {'more' if item is None else 'fewer'} records than the "
                        f"{len(batch)} items of its batch: it must yield one record per item, in order"
                    )
                if record[stage.key] != item[stage.key]:
                    raise RuntimeError(
                        f"{stage.name}: process_batch gave {stage.key}={record[stage.key]!r} for the item "
                        f"{item[stage.key]!r}: it must yield one record per item, in order"
                    )
                writer.write(record)
                if failures is not None and (reason := failures.reason(record)) is not None:
                    record_failure(workdir, failures.stage, item[stage.key], failures.path(item), reason)
                    logger.warning("%s: %s failed: %s", failures.stage, item[stage.key], reason)
                bar.update(1)
    bar.close()


def _merge(workdir: Path, stage: StageFile, order: list[str]) -> None:
    """Fold the shards into the stage's file, ordered as `order` (unknown ids last), then drop the shards."""
    records = load_records(workdir, stage)
    rank = {id_: i for i, id_ in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: rank.get(r[stage.key], len(rank)))
    write_jsonl_atomic(stage.path(workdir), ordered)
    for path in stage.shard_paths(workdir):
        path.unlink()


class StageSummary(Protocol):
    """What a stage's `run` returns: the lines its command prints, and whether anything failed (exit status 1)."""

    @property
    def failed(self) -> bool: ...

    def report(self) -> str:
        """The lines printed when the stage ends ("" prints nothing)."""


def argument_groups(job_type: type) -> list[type]:
    """The dataclasses parsed for `job_type`: its fields' types when they all are dataclasses
    (a job made of argument groups), else `job_type` itself (a job that is one argument dataclass)."""
    hints = typing.get_type_hints(job_type)
    groups = [hints[f.name] for f in dataclasses.fields(job_type)]
    if all(dataclasses.is_dataclass(group) for group in groups):
        return groups
    return [job_type]


def parse_job(job_type: type[J], argv: Sequence[str] | None = None, prog: str | None = None) -> J:
    """The job of a command line (`argv`, default `sys.argv[1:]`); `prog` names the command in its usage."""
    groups = argument_groups(job_type)
    parsed = DataclassArgumentParser(groups, prog=prog).parse_args_into_dataclasses(args=argv)
    return parsed[0] if groups == [job_type] else job_type(*parsed)


def stage_main(
    command: str,
    job_type: type[J],
    run: Callable[[J], StageSummary],
    argv: Sequence[str] | None = None,
    *,
    creates_workdir: bool = False,
) -> int:
    """Parse, run and report one stage command (the module docstring); its exit status."""
    state = process_state()
    logging.basicConfig(level=logging.INFO if state.is_main_process else logging.WARNING, format=LOG_FORMAT)
    prog = command_name(f"python -m {command}")  # `lovr generate fuse` when run through `lovr`
    try:
        job: Any = parse_job(job_type, argv, prog=prog)
        with command_lock(job.workdir, command, create=creates_workdir):
            summary = run(job)
    except ValueError as err:  # bad arguments, no such run folder, a missing or damaged stage file
        raise SystemExit(f"{command_name(command)}: {err}") from None
    if state.is_main_process and (report := summary.report()):
        print(report)
    return 1 if summary.failed else 0
