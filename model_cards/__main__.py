"""`python -m model_cards publish --org ORG [--dataset DIR] [--workdir W] [--metric] [--results DIR ...]
[--allow_random_weights] [--dry-run] [--out DIR]`: see `model_cards.publish`."""

import sys

from transformers import HfArgumentParser

from model_cards.publish import PublishConfig, publish

COMMANDS = {"publish": (PublishConfig, publish)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python -m model_cards {{{','.join(COMMANDS)}}} [--help]; got {argv[:1]}")
    config_class, run = COMMANDS[argv[0]]
    (config,) = HfArgumentParser(config_class).parse_args_into_dataclasses(args=argv[1:])
    run(config)


if __name__ == "__main__":
    main()
