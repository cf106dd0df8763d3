"""Command line of `lovr_metric`.

    python -m lovr_metric evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip \
        [--text-model sentence-transformers/all-MiniLM-L6-v2] [--granularity clip video theme] [--video-root DIR]
    accelerate launch -m lovr_metric evaluate ...   # the same, with the videos split between processes

Exit status: 0 when every requested granularity was ranked (video files that failed to decode are listed in the
printed summary and in results.json), 1 on bad input or when a granularity produced no metric (the message says
what was looked for), 2 on a bad command line; 0 for `--help`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from transformers import HfArgumentParser

from lovr_metric.evaluation.report import failure_summary
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model

PROG = "python -m lovr_metric evaluate"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = f"usage: {PROG} --dataset D --model M --output OUT ... (`{PROG} --help` lists the options)"
    if argv[:1] in (["-h"], ["--help"]):
        print(usage)
        return 0
    if not argv or argv[0] != "evaluate":
        print(f"{usage}; got {argv[:1]}", file=sys.stderr)
        return 2
    parser = HfArgumentParser(EvaluateConfig, prog=PROG)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv[1:])
        results = evaluate_model(config)
    except SystemExit as stop:  # argparse has reported --help or a bad option: its status, returned
        return stop.code
    except ValueError as err:  # bad input, or a granularity with no metric: the message, not a traceback
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    if results is not None:  # the main process
        out = Path(config.output)
        print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'pass_at_k.png'}")
        summary = failure_summary(results)
        if summary:
            print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
