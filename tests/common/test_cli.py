"""`lovr_common.cli.DataclassArgumentParser` parses as `transformers.HfArgumentParser` does, for the field types the
toolkit's commands use, shows one spelling per option in --help, and one grammar for flags (`--flag` / `--no_flag`,
`--flag true|false` accepted)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from lovr_common.cli import DataclassArgumentParser


class Mode(enum.Enum):
    FAST = "fast"
    EXACT = "exact"


@dataclass
class Options:
    name: str = field(metadata={"help": "A required string."})
    num_items: int = field(default=3, metadata={"help": "An int.", "aliases": ["-n"]})
    ratio: float = 0.5
    verbose: bool = False
    keep_going: bool = field(default=True, metadata={"help": "On unless --no_keep_going."})
    limit: Optional[int] = None  # noqa: UP045 (the spelling older configs use)
    label: str | None = None
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    policy: str = field(default="keep", metadata={"choices": ["keep", "drop"]})
    order: Literal["asc", "desc"] = "asc"
    mode: Mode = Mode.FAST


def parse(*argv):
    (options,) = DataclassArgumentParser(Options).parse_args_into_dataclasses(args=list(argv))
    return options


def test_defaults_and_types():
    assert parse("--name", "x") == Options(name="x")
    options = parse("--name", "x", "--num_items", "5", "--ratio", "0.25", "--limit", "7", "--sizes", "4", "5", "6")
    assert (options.num_items, options.ratio, options.limit, options.sizes) == (5, 0.25, 7, [4, 5, 6])
    assert parse("--name", "x", "--label", "y").label == "y"


@pytest.mark.parametrize(
    "argv, verbose",
    [
        ([], False),
        (["--verbose"], True),
        (["--no_verbose"], False),
        (["--verbose", "true"], True),
        (["--verbose", "no"], False),
        (["--verbose", "FALSE"], False),
        (["--verbose=0"], False),
        (["--verbose=yes"], True),
        (["--no_verbose", "--verbose"], True),  # the last one given wins
    ],
)
def test_bool_flags(argv, verbose):
    assert parse("--name", "x", *argv).verbose is verbose


def test_a_flag_takes_no_other_word():
    # `--verbose here` is the flag, then a positional: the word is not read as the flag's value.
    parser = DataclassArgumentParser(Options)
    parser.add_argument("path")
    options, rest = parser.parse_args_into_dataclasses(args=["--name", "x", "--verbose", "here"])
    assert options.verbose is True and rest.path == "here"


def test_a_bad_flag_value_names_the_option_and_the_value(capsys):
    with pytest.raises(SystemExit):
        parse("--name", "x", "--verbose=maybe")
    assert "argument --verbose: got 'maybe'; expected no value, or one of yes/true" in capsys.readouterr().err


@dataclass
class Unset:
    sample: bool | None = None


def test_an_optional_flag_stays_unset_until_given():
    def parse_unset(*argv):
        return DataclassArgumentParser(Unset).parse_args_into_dataclasses(args=list(argv))[0].sample

    assert parse_unset() is None
    assert parse_unset("--sample") is True and parse_unset("--no_sample") is False
    assert parse_unset("--sample", "false") is False


def test_no_flag_and_dash_spellings():
    assert parse("--name", "x", "--no_keep_going").keep_going is False
    assert parse("--name", "x", "--no-keep-going").keep_going is False
    assert parse("--name", "x", "--keep-going", "false").keep_going is False
    assert parse("--name", "x", "--num-items", "9").num_items == 9
    assert parse("--name", "x", "-n", "8").num_items == 8  # a metadata alias


def test_choices_literal_and_enum():
    options = parse("--name", "x", "--policy", "drop", "--order", "desc", "--mode", "exact")
    assert (options.policy, options.order, options.mode) == ("drop", "desc", "exact")
    for argv in (["--policy", "other"], ["--order", "up"], ["--verbose=maybe"], ["--num_items", "many"]):
        with pytest.raises(SystemExit):
            parse("--name", "x", *argv)


def test_required_and_unknown_options_are_errors(capsys):
    with pytest.raises(SystemExit):
        parse()
    assert "the following arguments are required: --name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--name", "x", "--unknown", "1")
    assert "unrecognized arguments: --unknown 1" in capsys.readouterr().err


def test_extra_arguments_come_back_as_a_namespace():
    parser = DataclassArgumentParser(Options)
    parser.add_argument("path")
    options, rest = parser.parse_args_into_dataclasses(args=["here", "--name", "x"])
    assert options.name == "x" and rest.path == "here"


def test_help_shows_one_spelling_per_option(capsys):
    with pytest.raises(SystemExit):
        DataclassArgumentParser(Options, prog="tool").parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--num_items NUM_ITEMS" in text and "--num-items" not in text and "-n NUM_ITEMS" not in text
    # A flag is one entry, both forms together; `--flag true|false` is accepted but not shown.
    assert "--keep_going, --no_keep_going" in text and "--verbose, --no_verbose" in text
    assert "[--verbose | --no_verbose]" in text and "VERBOSE" not in text and "--no-verbose" not in text
    assert "-h, --help" in text and "(default: 3)" in text
