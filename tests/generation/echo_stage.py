"""A minimal stage for testing `generation.stage.run_sharded` under `accelerate launch` (`launch_command`).

    accelerate launch --multi_gpu --num_processes 2 tests/generation/echo_stage.py W N [--die_after K] [--hold GATE]
        [--lag_main S]

Each item `i-NNN` gets the record {"id", "text": the id upper-cased, "status"}. With --die_after, the process that
has written K records kills itself with SIGKILL (a hard crash mid-run). With --hold, the main process, once its
first record is written (the run folder locked), writes its pid to GATE.held and waits until GATE exists. With
--lag_main, the main process reads the run folder S seconds late, as a rank that starts slower than the others.

It makes its process state as the stages do (`lovr_common.processes.process_state`), so that its ranks see each
other on this CPU machine.
"""

import argparse
import os
import signal
import time
from pathlib import Path

from generation import stage
from lovr_common.processes import process_state
from lovr_common.run_folder import StageFile

HOLD_LIMIT_S = 60
ECHO = StageFile("echo", "id", "tests.generation.echo_stage")


def launch_command(num_processes: int) -> list[str]:
    """The start of a real `accelerate launch` of `num_processes` CPU ranks of this script."""
    from tests.conftest import accelerate_launch

    return [*accelerate_launch(num_processes), __file__]


def _hold(gate: Path) -> None:
    held = gate.with_name(gate.name + ".held")
    tmp = held.with_name(held.name + ".tmp")
    tmp.write_text(str(os.getpid()))
    tmp.rename(held)  # whole, so that a reader never sees an empty pid
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not gate.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"echo_stage: {gate} did not appear within {HOLD_LIMIT_S} s")
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("count", type=int)
    parser.add_argument("--die_after", type=int)
    parser.add_argument("--hold", type=Path)
    parser.add_argument("--lag_main", type=float)
    args = parser.parse_args()
    state = process_state()
    if args.lag_main and state.is_main_process:
        load_records = stage.load_records

        def late_load_records(*a, **kw):
            time.sleep(args.lag_main)
            return load_records(*a, **kw)

        stage.load_records = late_load_records
    written = 0

    def process(batch):
        nonlocal written
        for item in batch:
            if args.die_after is not None and written == args.die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            written += 1
            yield {"id": item["id"], "text": item["id"].upper(), "status": "ok"}
            if args.hold and written == 1 and state.is_main_process:
                _hold(args.hold)

    items = [{"id": f"i-{n:03d}"} for n in range(args.count)]
    stage.run_sharded(workdir=args.workdir, stage=ECHO, items=items, process_batch=process, batch_size=3)


if __name__ == "__main__":
    main()
