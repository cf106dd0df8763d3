"""The command reference, generated from the parsers: a mkdocs hook, and a script that prints the same pages.

    mkdocs build --strict                        # the hook writes reference/commands/<product>.md into the site
    python docs/hooks/commands.py OUT_DIR        # the same pages as files, to read them without mkdocs

Each command's own `main` is called with `--help`, and the first argument parser it builds is caught as it starts
to parse (before anything runs): whatever that command declares (its config dataclasses through
`transformers.HfArgumentParser` or `lovr_common.cli.DataclassArgumentParser`, plain positional arguments, groups
composed from several dataclasses) is read from the parser's actions, so the pages cannot drift from the code.
The subcommands of a product are its `COMMANDS` table where it has one, otherwise the `{a,b}` list of its usage
message; the stages of `generation` are its modules that define `main`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import io
import logging
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# Products with subcommands: (module run with -m, the module holding its main).
SUBCOMMAND_PRODUCTS = {
    "lovr_dataset": ("lovr_dataset", "lovr_dataset.__main__"),
    "lovr_metric": ("lovr_metric", "lovr_metric.__main__"),
    "lovr_metric.interop": ("lovr_metric.interop", "lovr_metric.interop.__main__"),
    "model_cards": ("model_cards", "model_cards.__main__"),
}
PAGES = {
    "generation": ["generation"],
    "lovr_dataset": ["lovr_dataset"],
    "lovr_metric": ["lovr_metric", "lovr_metric.interop"],
    "model_cards": ["model_cards"],
}
PAGE_DIR = "reference/commands"
INTROS = {
    "generation": "The stages of the data-construction pipeline. Each runs as one process (`python -m`) or many "
    "(`accelerate launch -m`), and holds the run folder's lock while it runs.",
    "lovr_dataset": "Export a LoVR source (the official release, its Hub Parquet copy, or a run folder) to a "
    "script-free Hub dataset folder, and push that folder.",
    "lovr_metric": "Evaluate a model on a LoVR export, compare runs, build a leaderboard; read other formats "
    "(`lovr_metric.interop`).",
    "model_cards": "Render the dataset card, the metric Space and the model card, and publish them.",
}


class _Caught(Exception):
    """Raised in place of parsing: carries the parser a command built."""

    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__("parser caught")
        self.parser = parser


@dataclass
class Command:
    invocation: str  # "python -m lovr_metric evaluate"
    doc: str  # the first paragraph of what the command says about itself
    parser: argparse.ArgumentParser


@contextlib.contextmanager
def _catching_parsers():
    original = argparse.ArgumentParser.parse_known_args

    def catch(self, *args, **kwargs):
        raise _Caught(self)

    argparse.ArgumentParser.parse_known_args = catch
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original
        root.handlers[:], root.level = handlers, level  # the commands' logging.basicConfig, undone


def _parser_of(main_module: str, argv: list[str]) -> argparse.ArgumentParser:
    main = importlib.import_module(main_module).main
    with _catching_parsers(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(argv)
        except _Caught as caught:
            return caught.parser
        except SystemExit:
            pass
    raise RuntimeError(f"{main_module}.main({argv}) built no argument parser")


def _subcommands(main_module: str) -> list[str]:
    module = importlib.import_module(main_module)
    if hasattr(module, "COMMANDS"):
        return list(module.COMMANDS)
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            module.main([])
        except SystemExit as stop:
            output.write(str(stop.code))
    found = re.search(r"\{([\w,-]+)\}", output.getvalue())
    if not found:
        raise RuntimeError(f"{main_module}: no COMMANDS table and no {{a,b}} list in its usage message")
    return found.group(1).split(",")


def _first_paragraph(text: str | None) -> str:
    paragraphs = [part.strip() for part in (text or "").strip().split("\n\n")]
    prose = [part for part in paragraphs if part and not part.startswith(("python ", "accelerate ", "usage"))]
    return " ".join(prose[0].split()) if prose else ""


def commands(product: str) -> list[Command]:
    """Every command of one product (`generation`, or a key of `SUBCOMMAND_PRODUCTS`), with its parser."""
    if product == "generation":
        import generation

        found = []
        for info in sorted(pkgutil.iter_modules(generation.__path__), key=lambda info: info.name != "run"):
            module_name = f"generation.{info.name}"
            if info.name.startswith("_") or not hasattr(importlib.import_module(module_name), "main"):
                continue
            module = importlib.import_module(module_name)
            parser = _parser_of(module_name, ["--help"])
            found.append(Command(f"python -m {module_name}", _first_paragraph(module.__doc__), parser))
        return found
    prog, main_module = SUBCOMMAND_PRODUCTS[product]
    found = []
    for name in _subcommands(main_module):
        parser = _parser_of(main_module, [name, "--help"])
        found.append(Command(f"python -m {prog} {name}", _first_paragraph(parser.description), parser))
    return found


def _field_groups(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Option dest -> the dataclass that declares it, for parsers built from dataclasses."""
    owners = {}
    for dataclass_type in getattr(parser, "dataclass_types", []):
        for field in dataclasses.fields(dataclass_type):
            owners.setdefault(field.name, dataclass_type.__name__)
    return owners


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(action: argparse.Action) -> str:
    if action.choices is not None:
        return " \\| ".join(f"`{choice}`" for choice in action.choices)
    if action.nargs == 0:
        return "flag"
    type_name = getattr(action.type, "__name__", "str") if action.type is not None else "str"
    if type_name in ("string_to_bool", "_string_to_bool"):
        type_name = "bool (`true` / `false`; alone: `true`)"
    if action.nargs in ("+", "*"):
        return f"{type_name}, one or more"
    return type_name


def _default(action: argparse.Action) -> str:
    if action.required:
        return "**required**"
    if action.default is None or action.default is argparse.SUPPRESS:
        return "unset"
    if isinstance(action.default, list | tuple):
        return " ".join(f"`{item}`" for item in action.default)
    return f"`{action.default}`"


def _synopsis(invocation: str, parser: argparse.ArgumentParser) -> str:
    """The command with its positional arguments and required options; the table below lists the rest."""
    parts = [invocation]
    for action in parser._actions:
        if not action.option_strings:
            parts.append(action.dest.upper())
        elif action.required:
            parts.append(f"{action.option_strings[0]} {action.metavar or action.dest.upper()}")
    return " ".join(parts) + " [OPTIONS]"


def _negations(options: list[argparse.Action]) -> dict[str, str]:
    """Bool dest -> its `--no_<name>` spelling, where the parser declares one with help."""
    return {
        action.dest: action.option_strings[0]
        for action in options
        if action.nargs == 0 and action.option_strings[0].startswith("--no_") and action.help != argparse.SUPPRESS
    }


def command_markdown(command: Command) -> str:
    """One command's section: what it does, its usage line and a table of its options."""
    parser = command.parser
    parser.prog = command.invocation
    usage = _synopsis(command.invocation, parser)
    owners = _field_groups(parser)
    lines = [f"## `{command.invocation}`", ""]
    if command.doc:
        lines += [command.doc, ""]
    lines += ["```text", usage, "```", ""]
    shown = [action for action in parser._actions if action.help != argparse.SUPPRESS and action.dest != "help"]
    positionals = [action for action in shown if not action.option_strings]
    options = [action for action in shown if action.option_strings]
    negations = _negations(options)
    if positionals:
        lines += ["| argument | help |", "|---|---|"]
        lines += [f"| `{action.dest.upper()}` | {_cell(action.help or 'a path')} |" for action in positionals]
        lines.append("")
    grouped = len(set(owners.values())) > 1
    header = "| option | value | default | help |" + (" declared in |" if grouped else "")
    lines += [header, "|---" * (5 if grouped else 4) + "|"]
    for action in options:
        spelling = action.option_strings[0]
        if negations.get(action.dest) == spelling:
            continue  # shown with the option it negates
        name = f"`{spelling}`"
        if action.dest in negations:
            name += f" / `{negations[action.dest]}`"
        row = f"| {name} | {_value(action)} | {_default(action)} | {_cell(action.help or '')} |"
        if grouped:
            row += f" `{owners.get(action.dest, '')}` |"
        lines.append(row)
    lines.append("")
    return "\n".join(lines)


def page_markdown(page: str) -> str:
    """The reference page of one product's commands."""
    lines = [
        f"# `{page}` commands",
        "",
        INTROS[page],
        "",
        '!!! note "Generated"',
        "    This page is generated from the commands' own argument parsers when the site is built "
        "(`docs/hooks/commands.py`): it is what `--help` says, as tables. Every option with underscores is also "
        "accepted with dashes (`--video_root` or `--video-root`); a bool option given alone means `true`.",
        "",
    ]
    for product in PAGES[page]:
        for command in commands(product):
            lines.append(command_markdown(command))
    return "\n".join(lines)


def lovr_markdown() -> str:
    """The `lovr` console script's page: its own `--help`, which maps each subcommand to a command above."""
    from lovr_cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            main(["--help"])
        except SystemExit:
            pass
    return "\n".join(
        [
            "# `lovr`",
            "",
            "One command for everything: `lovr COMMAND ARGS...` passes its arguments unchanged to the product's "
            "own command, so the options are those of the other pages of this reference. Generated from "
            "`lovr --help`.",
            "",
            "```text",
            output.getvalue().strip(),
            "```",
            "",
        ]
    )


def on_files(files, config):
    """mkdocs hook: add the generated pages to the site (nothing is written into docs/)."""
    from mkdocs.structure.files import File

    repo = str(Path(config["config_file_path"]).resolve().parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    for page in PAGES:
        files.append(File.generated(config, f"{PAGE_DIR}/{page}.md", content=page_markdown(page)))
    files.append(File.generated(config, f"{PAGE_DIR}/lovr.md", content=lovr_markdown()))
    return files


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "commands")
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    for name in PAGES:
        (out / f"{name}.md").write_text(page_markdown(name))
        print(out / f"{name}.md")
    (out / "lovr.md").write_text(lovr_markdown())
    print(out / "lovr.md")
