"""Command lines parsed from dataclasses, as `transformers.HfArgumentParser` parses them, without importing
transformers (about 0.6 s of start-up, and torch with it where installed) in commands that run no model.

    parser = DataclassArgumentParser(ExportArguments, prog="python -m lovr_dataset export")
    parser.add_argument("data_dir")                      # plain argparse arguments may be added
    arguments, rest = parser.parse_args_into_dataclasses(args=argv)

Each field is an option `--name`; a name with underscores is also accepted as `--name-with-dashes` (and any
`aliases` of its metadata), but `--help` shows the first spelling only. Field types, as HfArgumentParser treats them:

- `str`, `int`, `float`: one value of that type; a field without default is a required option.
- `bool`: `--flag` sets it, `--no_flag` clears it (`--help` shows `--flag, --no_flag`); for scripts,
  `--flag true|false` (also yes/no, t/f, y/n, 1/0, any case) and `--flag=false` are accepted too. A `bool | None`
  field stays None unless one of them is given.
- `X | None` (`Optional[X]`): as `X`, default None.
- `list[X]`: one or more values (`nargs="+"`).
- `Literal[...]` or an `Enum`: one of its values.

Metadata keys: `help`, `choices`, `aliases` (a string or a list); any other key goes to `add_argument` as is.

A command run through the `lovr` entry point (`lovr_cli`) is named as the user typed it (`lovr export`), not as its
`python -m` form: `lovr_cli` sets that name with `invoked_as`, the parser takes it as its `prog`, and a command's
own messages can read it with `command_name`.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, Union

_TRUE = ("yes", "true", "t", "y", "1")
_FALSE = ("no", "false", "f", "n", "0")
_INVOKED_AS: contextvars.ContextVar[str | None] = contextvars.ContextVar("invoked_as", default=None)


@contextlib.contextmanager
def invoked_as(name: str) -> Iterator[None]:
    """Within the block, commands are named `name` (`lovr export`) in their usage, help and error messages."""
    token = _INVOKED_AS.set(name)
    try:
        yield
    finally:
        _INVOKED_AS.reset(token)


def command_name(default: str) -> str:
    """The name the running command was invoked as (`invoked_as`), else `default` (its `python -m` form)."""
    return _INVOKED_AS.get() or default


def string_to_bool(value: str | bool) -> bool:
    """`value` as a bool: yes/no, true/false, t/f, y/n, 1/0 (any case), as HfArgumentParser reads them."""
    if isinstance(value, bool):
        return value
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(
        f"Truthy value expected: got {value} but expected one of yes/no, true/false, t/f, y/n, 1/0 (case insensitive)."
    )


class _Flag(argparse.Action):
    """A boolean option: its positive spellings set True, its negations (`--no_flag`, `--no-flag`) set False.
    It takes no value itself: `DataclassArgumentParser` turns `--flag false` into `--no_flag` before parsing."""

    def __init__(self, option_strings, dest, negations=(), default=None, required=False, help=None):
        super().__init__([*option_strings, *negations], dest, nargs=0, default=default, required=required, help=help)
        self.positives = list(option_strings)
        self.negations = list(negations)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string not in self.negations)

    def format_usage(self) -> str:
        return f"{self.positives[0]} | {self.negations[0]}"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option under its first spelling only: `--a_b` stands for `--a-b` and the aliases too; a flag as
    `--flag, --no_flag`."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, _Flag):
            return f"{action.positives[0]}, {action.negations[0]}"
        if not getattr(action, "one_spelling", False):
            return super()._format_action_invocation(action)
        option = action.option_strings[0]
        if action.nargs == 0:
            return option
        return f"{option} {self._format_args(action, self._get_default_metavar_for_optional(action))}"


class DataclassArgumentParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose options are the fields of one or more dataclasses."""

    def __init__(self, dataclass_types: type | Iterable[type], **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        kwargs["prog"] = _INVOKED_AS.get() or kwargs.get("prog")
        super().__init__(**kwargs)
        self._flags: dict[str, _Flag] = {}  # positive spelling -> its flag
        self.dataclass_types = [dataclass_types] if isinstance(dataclass_types, type) else list(dataclass_types)
        for dataclass_type in self.dataclass_types:
            hints = typing.get_type_hints(dataclass_type)  # resolves `from __future__ import annotations` strings
            for field in dataclasses.fields(dataclass_type):
                if field.init:
                    self._add_field(field, hints[field.name])

    def _add_field(self, field: dataclasses.Field, annotation: Any) -> None:
        names = [f"--{field.name}"]
        if "_" in field.name:
            names.append(f"--{field.name.replace('_', '-')}")
        kwargs = dict(field.metadata)
        aliases = kwargs.pop("aliases", [])
        names += [aliases] if isinstance(aliases, str) else list(aliases)
        annotation = _without_none(annotation, field.name)
        origin = typing.get_origin(annotation)
        if annotation is bool:
            negations = [f"--no_{field.name}", f"--no-{field.name.replace('_', '-')}"]
            kwargs.update(action=_Flag, negations=list(dict.fromkeys(negations)), default=_default(field, False))
            flag = self.add_argument(*dict.fromkeys(names), **kwargs)
            self._flags.update(dict.fromkeys(flag.positives, flag))
            return
        if origin is Literal or (isinstance(annotation, type) and issubclass(annotation, enum.Enum)):
            choices = typing.get_args(annotation) if origin is Literal else [member.value for member in annotation]
            kwargs.update(choices=choices, type=_choice_type(choices), **_default_or_required(field))
        elif origin is list or annotation is list:
            (kwargs["type"],) = typing.get_args(annotation) or (str,)
            kwargs.update(nargs="+", **_default_or_required(field))
        else:
            kwargs.update(type=annotation, **_default_or_required(field))
        self.add_argument(*dict.fromkeys(names), **kwargs).one_spelling = True

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        return super().parse_known_args(self._flag_words(sys.argv[1:] if args is None else args), namespace)

    def _flag_words(self, args: Sequence[str]) -> list[str]:
        """`args` with each `--flag WORD` and `--flag=WORD` (WORD true/false, yes/no, ...) as `--flag` or `--no_flag`."""
        args, out = list(args), []
        while args:
            arg = args.pop(0)
            if arg == "--":
                return [*out, arg, *args]
            name, equals, word = arg.partition("=")
            flag = self._flags.get(name)
            if flag is None or (not equals and not (args and args[0].lower() in (*_TRUE, *_FALSE))):
                out.append(arg)
                continue
            word = word if equals else args.pop(0)
            try:
                out.append(name if string_to_bool(word) else flag.negations[0])
            except argparse.ArgumentTypeError:
                self.error(f"argument {name}: got {word!r}; expected no value, or one of {'/'.join(_TRUE + _FALSE)}")
        return out

    def parse_args_into_dataclasses(self, args: list[str] | None = None) -> tuple:
        """One instance per dataclass, then (when the parser has other arguments) an `argparse.Namespace` of those."""
        namespace = self.parse_args(args=args)
        values = vars(namespace)
        outputs = []
        for dataclass_type in self.dataclass_types:
            names = {field.name for field in dataclasses.fields(dataclass_type) if field.init}
            outputs.append(dataclass_type(**{name: values.pop(name) for name in names if name in values}))
        if values:
            outputs.append(argparse.Namespace(**values))
        return tuple(outputs)


def _without_none(annotation: Any, name: str) -> Any:
    """`X` for `X | None` (`Optional[X]`); other unions are refused, as HfArgumentParser refuses them."""
    if typing.get_origin(annotation) not in (Union, types.UnionType):
        return annotation
    kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
    if len(kinds) != 1:
        raise ValueError(f"field {name!r} is typed {annotation}; expected one type, or one type | None")
    return kinds[0]


def _default(field: dataclasses.Field, fallback: Any) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return fallback


def _default_or_required(field: dataclasses.Field) -> dict:
    if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        return {"required": True, "default": argparse.SUPPRESS}  # no "(default: None)" in --help
    return {"default": _default(field, None)}


def _choice_type(choices) -> Any:
    """Maps the string typed on the command line to the choice it spells (choices need not be strings)."""
    by_text = {str(choice): choice for choice in choices}
    return lambda text: by_text.get(text, text)
