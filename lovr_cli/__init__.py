"""`lovr`: one command for everything a user runs, each subcommand the product's own `main`.

    lovr export DATA_DIR OUT_DIR          # = python -m lovr_dataset export DATA_DIR OUT_DIR
    lovr generate run --videos DIR --workdir W --model M
    lovr evaluate --dataset ./lovr --model openai/clip-vit-base-patch32 --output runs/clip
    lovr COMMAND --help                   # a command's options

A subcommand passes its arguments, unchanged, to the `main(argv)` of the module that its `python -m` form runs
(which keeps working); that module is imported only then, so `lovr --help` imports neither torch nor transformers.
Within the call the command is named as typed (`lovr export`) in its usage and messages
(`lovr_common.cli.invoked_as`). The exit status is the command's.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from lovr_common.cli import invoked_as

PROG = "lovr"


@dataclass(frozen=True)
class Command:
    """A `lovr` subcommand: the module whose `main(argv)` runs it, the words put before its arguments there (the
    product's own subcommand), and one line of help."""

    module: str
    prefix: tuple[str, ...]
    summary: str


GENERATE_STAGES = {
    "segment": Command("generation.segment", (), "Cut each video into clips at its shot changes (stage 1)."),
    "caption": Command("generation.caption", (), "Caption each clip with a vision-language model (stage 2)."),
    "refine": Command("generation.refine", (), "Score captions, re-caption the low ones, queue the rest (stage 3)."),
    "fuse": Command("generation.fuse", (), "Fuse each video's clip captions into one video caption (stage 4)."),
    "run": Command("generation.run", (), "All stages in order, segment -> caption -> refine -> fuse."),
}

# group -> command -> what runs it; `generate` takes a stage (GENERATE_STAGES)
GROUPS: dict[str, dict[str, Command | None]] = {
    "dataset": {
        "export": Command("lovr_dataset.__main__", ("export",), "Export a LoVR source to a Hub dataset folder."),
        "push": Command("lovr_dataset.__main__", ("push",), "Push an exported dataset folder to the Hub."),
    },
    "generation": {
        "generate": None,
        "review": Command("generation.review", (), "Merge the human review file's decisions into the captions."),
    },
    "evaluation": {
        "evaluate": Command("lovr_metric.__main__", ("evaluate",), "Evaluate a model on a LoVR export."),
        "compare": Command("lovr_metric.__main__", ("compare",), "Per-metric deltas of two runs, paired intervals."),
        "leaderboard": Command("lovr_metric.__main__", ("leaderboard",), "A leaderboard table and plot of runs."),
        "models": Command("lovr_metric.__main__", ("models",), "The model registry: each model's route and status."),
        "score-original": Command(
            "lovr_metric.interop.__main__", ("score-original",), "Score the original LoVR code's saved embeddings."
        ),
        "export-uvrb": Command(
            "lovr_metric.interop.__main__", ("export-uvrb",), "Write a LoVR export as UVRB-style tasks."
        ),
    },
    "publishing": {
        "publish": Command("model_cards.__main__", ("publish",), "Publish the dataset, metric Space and model cards."),
    },
}
COMMANDS = {name: command for group in GROUPS.values() for name, command in group.items()}


def usage() -> str:
    """`lovr --help`: the commands by group."""
    width = max(len(name) for name in [*COMMANDS, *(f"generate {stage}" for stage in GENERATE_STAGES)]) + 2
    lines = [f"usage: {PROG} COMMAND [ARGS...]   (`{PROG} COMMAND --help` lists a command's options)", ""]
    for group, commands in GROUPS.items():
        lines.append(f"{group}:")
        for name, command in commands.items():
            if command is None:  # generate: one line per stage
                lines += [f"  {'generate ' + stage:<{width}}{c.summary}" for stage, c in GENERATE_STAGES.items()]
            else:
                lines.append(f"  {name:<{width}}{command.summary}")
        lines.append("")
    lines.append(
        f"Each command is also `python -m <module>` (e.g. `{PROG} export` is `python -m lovr_dataset export`)."
    )
    return "\n".join(lines)


def _generate_usage() -> str:
    stages = ",".join(GENERATE_STAGES)
    return f"usage: {PROG} generate {{{stages}}} ... (`{PROG} generate STAGE --help` lists its options)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `lovr` command line `argv` (default `sys.argv[1:]`); its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(f"{usage()}\n\n{PROG}: error: expected one of the commands above, got {argv[:1]}", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    command = COMMANDS[name]
    if command is None:  # generate STAGE
        if rest[:1] in (["-h"], ["--help"]):
            print(_generate_usage())
            return 0
        if not rest or rest[0] not in GENERATE_STAGES:
            print(f"{_generate_usage()}\n{PROG} generate: error: expected a stage, got {rest[:1]}", file=sys.stderr)
            return 2
        name, command, rest = f"generate {rest[0]}", GENERATE_STAGES[rest[0]], rest[1:]
    run = importlib.import_module(command.module).main
    with invoked_as(f"{PROG} {name}"):
        status = run([*command.prefix, *rest])
    return 0 if status is None else status
