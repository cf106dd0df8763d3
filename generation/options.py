"""The option groups that several `generation` commands share, and how `generation.run` copies a stage's options.

Each option is declared once, in a group (a dataclass whose fields carry their `help`); a command's job is made of
the groups it uses, and `lovr_common.cli.DataclassArgumentParser` parses them together (`generation.stage.stage_main`):

- `RunFolder`: `--workdir`, the run folder every stage reads and writes (a base of each stage's own arguments);
- `FrameOptions`: how many frames a clip is decoded with, at what size (captioning and re-captioning);
- `generation.backends.BackendArguments`, `EndpointOptions`: which model generates, how clips reach it
  (`--visual_input`: one video or images) and how a server is reached;
- `generation.backends.GenerationParams`: sampling (`generation.fuse.FuseParams`: fusion's defaults).

`generation.run` takes the options of its stages that it offers through `option_copy`, which derives a dataclass
from a group's fields (type, default, help), with a prefix where it needs a second copy (`--fuse_model`).
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lovr_common.video import LOVR_MAX_CAPTION_FRAMES


@dataclass
class RunFolder:
    """The run folder `W` (CONTRIBUTING.md, "Run folder"): a base of every stage's arguments."""

    workdir: str = field(metadata={"help": "Run folder W: the stage reads its input files there and writes its own."})


@dataclass
class FrameOptions:
    """How a clip's frames are decoded for captioning (`generation.caption`) and re-captioning (`generation.refine`).

    max_frames (`int`, defaults to 64): cap on the frames of a caption (LoVR's rule never asks for more).
    max_side (`int`, *optional*): decode frames with their longer side at most this many pixels.
    """

    max_frames: int = field(
        default=LOVR_MAX_CAPTION_FRAMES, metadata={"help": "Cap on the frames of a caption (and a re-caption)."}
    )
    max_side: int | None = field(default=None, metadata={"help": "Decode frames with this longer side at most."})

    def __post_init__(self):
        for name in ("max_frames", "max_side"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, but got {name}={value}")


def option_copy(
    name: str,
    group: type,
    names: Sequence[str],
    *,
    prefix: str = "",
    unset: Mapping[str, str] | None = None,
    help_prefix: str = "",
) -> type:
    """A dataclass `name` of the fields `names` of the dataclass `group`, each named `prefix + name`, with its type,
    default and help, for a command that offers some of a stage's options (`generation.run`).

    A field named in `unset` defaults to None instead, "not given", and its help says what that means
    (`unset[name]`): the command then decides, e.g. from another option. `help_prefix` starts every help (what a
    prefixed copy is for).
    """
    unset = unset or {}
    fields = {f.name: f for f in dataclasses.fields(group)}
    hints = typing.get_type_hints(group)
    _check_names(group, [*names, *unset], fields)
    copied = []
    for option in names:
        original = fields[option]
        metadata: dict[str, Any] = dict(original.metadata)
        text = metadata.get("help", "")
        metadata["help"] = help_prefix + text[:1].lower() + text[1:] if help_prefix else text
        if option in unset:
            metadata["help"] = f"{metadata['help']} Unset: {unset[option]}.".strip()
            spec = field(default=None, metadata=metadata)
            copied.append((prefix + option, hints[option] | None, spec))
            continue
        if original.default is not dataclasses.MISSING:
            spec = field(default=original.default, metadata=metadata)
        elif original.default_factory is not dataclasses.MISSING:
            spec = field(default_factory=original.default_factory, metadata=metadata)
        else:
            spec = field(metadata=metadata)
        copied.append((prefix + option, hints[option], spec))
    namespace = {
        "__doc__": f"`{group.__name__}`'s options {', '.join(names)}" + (f", prefixed {prefix}." if prefix else "."),
        "__module__": _caller_module(),
    }
    return dataclasses.make_dataclass(name, copied, namespace=namespace)


def options_of(copy: Any, prefix: str = "") -> dict[str, Any]:
    """The values of an `option_copy` instance by their group's names (`prefix` dropped), for `group(**...)`."""
    return {f.name.removeprefix(prefix): getattr(copy, f.name) for f in dataclasses.fields(copy)}


def with_defaults(
    group: type, name: str, doc: str, *, defaults: Mapping[str, Any], fixed: Mapping[str, Any] | None = None
) -> type:
    """A subclass of the dataclass `group` named `name` (docstring `doc`) whose fields `defaults` default to other
    values (their help kept), and whose fields `fixed` hold a value that is no option (`init=False`:
    the command line leaves them out)."""
    fixed = fixed or {}
    originals = {f.name: f for f in dataclasses.fields(group)}
    _check_names(group, [*defaults, *fixed], originals)
    hints = typing.get_type_hints(group)
    changed = [(n, hints[n], field(default=v, metadata=originals[n].metadata)) for n, v in defaults.items()]
    changed += [(n, hints[n], field(default=v, init=False, metadata=originals[n].metadata)) for n, v in fixed.items()]
    namespace = {"__doc__": doc, "__module__": _caller_module()}
    return dataclasses.make_dataclass(name, changed, bases=(group,), namespace=namespace)


def _check_names(group: type, names: Sequence[str], fields: Mapping[str, dataclasses.Field]) -> None:
    unknown = [name for name in names if name not in fields]
    if unknown:
        raise ValueError(f"{group.__name__} has no field {unknown}; expected some of {list(fields)}")


def _caller_module() -> str:
    """The module that called the caller: a derived class belongs there (Python 3.11's `make_dataclass` would put
    it in `types`, and reprs and pickles would look for it there)."""
    return sys._getframe(2).f_globals["__name__"]
