"""A minimal stage for testing `generation._stage.run_sharded` under `accelerate launch`.

    accelerate launch --cpu --num_processes 2 tests/generation/echo_stage.py W N [DIE_AFTER]

Each item `i-NNN` gets the record {"id", "text": the id upper-cased, "status"}. With DIE_AFTER, the process that has
written that many records kills itself with SIGKILL (a hard crash mid-run).
"""

import os
import signal
import sys

from generation._stage import run_sharded


def main() -> None:
    workdir, count = sys.argv[1], int(sys.argv[2])
    die_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    written = 0

    def process(batch):
        nonlocal written
        for item in batch:
            if die_after is not None and written == die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            written += 1
            yield {"id": item["id"], "text": item["id"].upper(), "status": "ok"}

    items = [{"id": f"i-{n:03d}"} for n in range(count)]
    run_sharded(workdir=workdir, stage="echo", key="id", items=items, process_batch=process, batch_size=3)


if __name__ == "__main__":
    main()
