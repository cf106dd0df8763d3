"""The `lovr` command (`lovr_cli`): grouped help without torch or transformers, each subcommand the product's own
`main` (its `python -m` form kept), named as typed, and one spelling and one flag grammar in every command's help."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from generation import run as generation_run
from generation.stage import parse_job
from lovr_cli import COMMANDS, GENERATE_STAGES, main

REPO = Path(__file__).resolve().parents[1]
EVERY_COMMAND = [name for name, command in COMMANDS.items() if command] + [f"generate {s}" for s in GENERATE_STAGES]


def test_help_lists_every_command_by_group(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    groups = [line for line in text.splitlines() if re.fullmatch(r"\w+:", line)]
    assert groups == ["dataset:", "generation:", "evaluation:", "publishing:"]
    for name in EVERY_COMMAND:
        assert re.search(rf"^  {name}  +\S", text, re.MULTILINE), name


def test_help_and_models_import_neither_torch_nor_transformers():
    script = (
        "import sys, lovr_cli\n"
        "assert lovr_cli.main(['--help']) == 0 and lovr_cli.main(['models']) == 0\n"
        "print('heavy:', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'datasets'}))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "heavy: []"


def test_python_m_lovr_cli_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "lovr_cli", "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0 and "generate run" in done.stdout


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["generate"], ["generate", "paint"]])
def test_an_unknown_command_is_a_usage_error(argv, capsys):
    assert main(argv) == 2
    assert "error: expected" in capsys.readouterr().err


def _help(argv: list[str], capsys) -> str:
    try:
        status = main([*argv, "--help"])
    except SystemExit as stop:  # some commands let argparse's exit through, others return its status
        status = stop.code
    assert status == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", [name for name in EVERY_COMMAND if name != "models"])
def test_each_command_is_named_as_typed_with_one_spelling_per_option(name, capsys):
    text = _help(name.split(), capsys)
    assert text.startswith(f"usage: lovr {name} ")
    invocations = [line.strip().split("  ")[0] for line in text.split("options:")[1].splitlines() if line[2:3] == "-"]
    for invocation in invocations:
        spellings = re.findall(r"(?<![\w-])-{1,2}\w[\w-]*", invocation)
        if invocation.startswith("-h"):
            assert spellings == ["-h", "--help"]
        elif len(spellings) == 2:  # a flag: --flag, --no_flag
            assert spellings[1] == f"--no_{spellings[0][2:]}", invocation
            assert re.fullmatch(r"--\w+, --no_\w+", invocation), invocation  # it takes no value in --help
        else:
            assert len(spellings) == 1 and "-" not in spellings[0][2:], invocation


def test_the_python_m_forms_keep_their_own_names():
    for module in ("generation.fuse", "lovr_metric compare", "lovr_metric.interop export-uvrb", "model_cards publish"):
        done = subprocess.run(
            [sys.executable, "-m", *module.split(), "--help"], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stdout.startswith(f"usage: python -m {module} "), done.stderr[-2000:]


REQUIRED = ["--workdir", "W", "--videos", "V", "--model", "M"]


@pytest.mark.parametrize(
    "flags, do_sample, fuse_do_sample, recursive",
    [
        ([], True, None, False),
        (["--no_do_sample", "--recursive"], False, None, True),
        (["--do_sample", "false", "--recursive", "true"], False, None, True),
        (["--do-sample=no", "--no-recursive", "--fuse_do_sample"], False, True, False),
        (["--no_fuse_do_sample"], True, False, False),
        (["--fuse-do-sample", "FALSE"], True, False, False),
    ],
)
def test_generation_run_takes_flags_in_the_one_grammar(flags, do_sample, fuse_do_sample, recursive):
    config = parse_job(generation_run.RunConfig, [*REQUIRED, *flags])
    assert config.params.do_sample is do_sample
    assert config.fuse_params.fuse_do_sample is fuse_do_sample
    assert config.folders.recursive is recursive


def test_a_command_error_names_the_command_as_typed(tmp_path):
    missing = tmp_path / "no-such-run"
    with pytest.raises(SystemExit) as stop:
        main(["generate", "fuse", "--workdir", str(missing), "--model", "m"])
    assert str(stop.value.code).startswith("lovr generate fuse: ") and str(missing) in str(stop.value.code)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
