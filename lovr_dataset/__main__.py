"""Command line of `lovr_dataset`: export a LoVR source to a Hub dataset folder, and push that folder.

python -m lovr_dataset export DATA_DIR OUT_DIR [--num-queries 1000] [--query-seed 0]
    [--missing-clip-files keep|drop|error] [--skip-malformed] [--skip-orphan-themes] [--repo-id ORG/NAME] [--overwrite]
python -m lovr_dataset push OUT_DIR --repo-id ORG/NAME [--private] [--dry-run]

Options may be spelt with dashes or underscores (`--num_queries`). The parser (`lovr_common.cli`) does not import
transformers: these commands run no model.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from lovr_common.cli import DataclassArgumentParser

from .export import export
from .push import push


@dataclass
class ExportArguments:
    num_queries: int = field(
        default=1000,
        metadata={"help": "Query clips to draw when the source names no split."},
    )
    query_seed: int = field(default=0, metadata={"help": "Seed of that draw."})
    missing_clip_files: str = field(
        default="keep",
        metadata={
            "choices": ["keep", "drop", "error"],
            "help": "Policy for clips whose file is missing.",
        },
    )
    skip_malformed: bool = field(default=False, metadata={"help": "Skip and count malformed JSON Lines lines."})
    skip_orphan_themes: bool = field(
        default=False,
        metadata={
            "help": "Leave out and count theme lines whose clip is not among the clips (they fail otherwise).",
        },
    )
    repo_id: str = field(
        default="lovr",
        metadata={"help": "The id the card's load_dataset examples show (your Hub repo)."},
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Replace an OUT_DIR that an earlier export wrote (it holds .lovr-export), once the new export "
            "is complete. A file, another folder, or the source itself (or a folder inside or above it) is refused."
        },
    )


@dataclass
class PushArguments:
    repo_id: str = field(metadata={"help": "The dataset repo, ORG/NAME."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    dry_run: bool = field(default=False, metadata={"help": "Print the plan; touch no network."})


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"export": (ExportArguments, ["data_dir", "out_dir"]), "push": (PushArguments, ["out_dir"])}
    if not argv or argv[0] not in commands:
        raise SystemExit(f"usage: python -m lovr_dataset {{{','.join(commands)}}} ... (got {argv[:1]})")
    arguments_class, positionals = commands[argv[0]]
    parser = DataclassArgumentParser(arguments_class, prog=f"python -m lovr_dataset {argv[0]}")
    for name in positionals:
        parser.add_argument(name)
    arguments, paths = parser.parse_args_into_dataclasses(args=argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv[0] == "export":
            options = vars(arguments)
            print(export(paths.data_dir, paths.out_dir, overwrite=options.pop("overwrite"), **options))
        else:
            print(push(paths.out_dir, arguments.repo_id, private=arguments.private, dry_run=arguments.dry_run))
    except ValueError as err:  # bad input: the message, not a traceback
        raise SystemExit(f"python -m lovr_dataset {argv[0]}: error: {err}") from err


if __name__ == "__main__":
    main()
