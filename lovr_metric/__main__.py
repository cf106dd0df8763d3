"""Command line of `lovr_metric`.

    python -m lovr_metric evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip \
        [--text-model sentence-transformers/all-MiniLM-L6-v2] [--granularity clip video theme] [--video-root DIR]
    accelerate launch -m lovr_metric evaluate ...   # the same, with the videos split between processes
    python -m lovr_metric compare runs/clip runs/siglip [--output delta.json]
    python -m lovr_metric leaderboard runs/clip runs/siglip runs/xclip --output board
    python -m lovr_metric models

`compare` prints per-metric deltas of two runs with a paired interval and p-value (`evaluation.compare`);
`leaderboard` writes `leaderboard.md` and `leaderboard.png` (`evaluation.leaderboard`). Both refuse runs of
different protocols or dataset rows. `models` prints the registry (`evaluation.registry`): each model's route and
status; it imports neither torch nor transformers (nor does `--help` of this module: each command's config is
imported when that command runs). Options are parsed by `lovr_common.cli.DataclassArgumentParser`.

Exit status: 0 on success (for `evaluate`: every requested granularity was ranked; video files that failed to
decode are listed in the printed summary and in results.json), 1 on bad input or when a granularity produced no
metric (the message says what was looked for), 2 on a bad command line; 0 for `--help`.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from lovr_common.cli import DataclassArgumentParser, command_name

PROG = "python -m lovr_metric"
USAGE = (
    f"usage: {PROG} evaluate --dataset D --model M --output OUT ... | compare RUN_A RUN_B | leaderboard RUN... "
    f"--output DIR | models (`{PROG} COMMAND --help` lists the options)"
)


def _models(argv: list[str]) -> int:
    """Print the registry's table (no torch, no transformers: the other commands import them when they run)."""
    from lovr_metric.evaluation.registry import models_table

    if argv:
        print(f"{command_name(PROG + ' models')}: error: takes no arguments, got {argv}", file=sys.stderr)
        return 2
    print(models_table())
    return 0


def _evaluate(config) -> None:
    from lovr_metric.evaluation.outputs import failure_summary
    from lovr_metric.evaluation.runner import evaluate_model

    results = evaluate_model(config)
    if results is not None:  # the main process
        out = Path(config.output)
        print(
            f"wrote {out / 'results.json'}, {out / 'per_query.parquet'}, {out / 'results.md'}, {out / 'pass_at_k.png'}"
        )
        summary = failure_summary(results)
        if summary:
            print(summary)


def _compare(config) -> None:
    from lovr_metric.evaluation.compare import compare_runs, comparison_markdown

    comparison = compare_runs(config)
    print(comparison_markdown(comparison))
    if config.output:
        Path(config.output).write_text(json.dumps(comparison, indent=2) + "\n")
        print(f"wrote {config.output}")


def _leaderboard(config) -> None:
    from lovr_metric.evaluation.leaderboard import write_leaderboard

    markdown, image = write_leaderboard(config)
    print(markdown.read_text())
    print(f"wrote {markdown}, {image}")


def _config(path: str) -> type:
    """The config class `module:Name`, imported when its command runs (the evaluation modules import torch)."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


# command -> (its config, as "module:Name", what runs it, the config fields given by position); `models` is `_models`
COMMANDS: dict[str, tuple[str, Callable, tuple[str, ...]]] = {
    "evaluate": ("lovr_metric.evaluation.runner:EvaluateConfig", _evaluate, ()),
    "compare": ("lovr_metric.evaluation.compare:CompareConfig", _compare, ("run_a", "run_b")),
    "leaderboard": ("lovr_metric.evaluation.leaderboard:LeaderboardConfig", _leaderboard, ("runs",)),
}


def _with_positionals(args: list[str], positional: tuple[str, ...]) -> list[str]:
    """`compare A B` as `--run_a A --run_b B`; `leaderboard R1 R2 --output D` as `--runs R1 R2 --output D`."""
    if not positional:
        return args
    given = []
    while args and not args[0].startswith("-"):
        given.append(args.pop(0))
    if len(positional) == 1:
        return ([f"--{positional[0]}", *given] if given else []) + args
    named = [part for name, value in zip(positional, given, strict=False) for part in (f"--{name}", value)]
    return named + given[len(positional) :] + args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if argv[:1] == ["models"]:
        return _models(argv[1:])
    if not argv or argv[0] not in COMMANDS:
        print(f"{USAGE}; got {argv[:1]}", file=sys.stderr)
        return 2
    config_path, run, positional = COMMANDS[argv[0]]
    prog = command_name(f"{PROG} {argv[0]}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        parser = DataclassArgumentParser(_config(config_path), prog=prog)
        (config,) = parser.parse_args_into_dataclasses(args=_with_positionals(argv[1:], positional))
        run(config)
    except SystemExit as stop:  # argparse has reported --help or a bad option: its status, returned
        return stop.code
    except ValueError as err:  # bad input, or a granularity with no metric: the message, not a traceback
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
