"""`python -m model_cards publish --org ORG [--dataset DIR] [--workdir W] [--metric] [--results DIR ...]
[--allow_random_weights] [--allow_incomplete] [--dry-run] [--out DIR]`: see `model_cards.publish`.

Bad input (an invalid --org, a malformed results.json or run folder file, ...) ends the command with a one-line
error naming it and exit status 1, not a traceback.
"""

import sys

from lovr_common.cli import DataclassArgumentParser, command_name
from model_cards.publish import PublishConfig, publish

COMMANDS = {"publish": (PublishConfig, publish)}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: python -m model_cards {{{','.join(COMMANDS)}}} [--help]; got {argv[:1]}")
    config_class, run = COMMANDS[argv[0]]
    prog = command_name(f"python -m model_cards {argv[0]}")
    parser = DataclassArgumentParser(config_class, prog=prog)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv[1:])
        run(config)
    except ValueError as err:  # bad input: the message, not a traceback
        raise SystemExit(f"{prog}: error: {err}") from err


if __name__ == "__main__":
    main()
