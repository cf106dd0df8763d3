"""Command line of `lovr_metric`.

    python -m lovr_metric evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip \
        [--text-model sentence-transformers/all-MiniLM-L6-v2] [--granularity clip video theme] [--video-root DIR]
    accelerate launch -m lovr_metric evaluate ...   # the same, with the videos split between processes
"""

from __future__ import annotations

import logging
import sys

from transformers import HfArgumentParser

from lovr_metric.runner import EvaluateConfig, evaluate_model


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "evaluate":
        raise SystemExit(
            f"usage: python -m lovr_metric evaluate --dataset D --model M --output OUT ... (got {argv[:1]})"
        )
    parser = HfArgumentParser(EvaluateConfig, prog="python -m lovr_metric evaluate")
    (config,) = parser.parse_args_into_dataclasses(args=argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = evaluate_model(config)
    if results is not None:
        print(f"wrote {config.output}/results.json, results.md, pass_at_k.png")


if __name__ == "__main__":
    main()
