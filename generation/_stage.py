"""The distributed, resumable shape every stage shares.

Each process gets its share of the ids still to do (`PartialState.split_between_processes`), appends its records
to its own shard file `W/.shards/<stage>-<rank>.jsonl`, one flushed line per record; the main process then merges
the shards into `W/<stage>.jsonl` with an atomic rename. A rerun reads the merged file and any leftover shards
(a killed run's work is kept), so it skips ids already done and never duplicates or drops one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from accelerate import PartialState
from tqdm.auto import tqdm

from lovr_common.jsonl import JsonlWriter, read_jsonl, write_jsonl_atomic

logger = logging.getLogger(__name__)

SHARD_DIR = ".shards"


def stage_output(workdir: str | Path, stage: str) -> Path:
    """The merged output file of `stage` in run folder `workdir`."""
    return Path(workdir) / f"{stage}.jsonl"


def _shard_paths(workdir: Path, stage: str) -> list[Path]:
    return sorted((workdir / SHARD_DIR).glob(f"{stage}-*.jsonl"))


def load_records(workdir: str | Path, stage: str, key: str) -> dict[str, dict]:
    """Every record of `stage` written so far, merged file then shards, keyed by `key` (a later record wins)."""
    workdir = Path(workdir)
    records: dict[str, dict] = {}
    for path in [stage_output(workdir, stage), *_shard_paths(workdir, stage)]:
        if path.exists():
            for record in read_jsonl(path):
                records[record[key]] = record
    return records


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
    example, to retry failed ones). Returns every record of the stage, in the order of `items`, on every process.
    """
    state = PartialState()
    workdir = Path(workdir)
    existing = load_records(workdir, stage, key)
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
        _merge(workdir, stage, key, [item[key] for item in items])
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
