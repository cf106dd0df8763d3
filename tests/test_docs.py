"""The documentation site: it builds strictly, a broken link fails the build, and the tutorials and the README's
quickstarts run as written.

The tutorials' code blocks (```bash and ```python fences) run in order, in one empty folder, offline, as a reader
would type them: the three pages share that folder as the reader's session does (the first builds the sample
dataset the others use). A block that cannot run here (a download, the Hub, a GPU) is marked on the line before it
with `<!-- docs-test: skip (why) -->`, and the page says so too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

DOCS = REPO_ROOT / "docs"
# In reading order: each uses what the previous one made.
TUTORIALS = ["build-a-dataset.md", "evaluate-a-model.md", "publish.md"]
SKIP_MARKER = "<!-- docs-test: skip"
FENCE = re.compile(r"^```(bash|python)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def code_blocks(page: Path, section: str | None = None) -> list[tuple[str, str, int]]:
    """The (language, code, line) of each ```bash / ```python block of `page` (of its `## section` only, if given)
    that is not marked to skip."""
    text = page.read_text()
    start, end = 0, len(text)
    if section is not None:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end
    blocks = []
    for match in FENCE.finditer(text, start, end):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if not before.startswith(SKIP_MARKER):
            blocks.append((match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1))
    return blocks


def reader_env() -> dict[str, str]:
    """A reader's shell: this interpreter's `python` first on PATH, the clone on PYTHONPATH (the sample videos and
    stand-in models are `lovr_standins`, in the source tree only: the pages say so), offline, nothing cached from
    the suite."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[name] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.pop("LOVR_TINY_MODELS", None)  # the tutorial builds its models where it says
    return env


def test_every_tutorial_is_run():
    pages = sorted(p.name for p in (DOCS / "tutorials").glob("*.md") if p.name != "index.md")
    assert sorted(TUTORIALS) == pages
    for name in TUTORIALS:
        assert code_blocks(DOCS / "tutorials" / name), f"{name} has no block to run"


def run_blocks(page: Path, folder: Path, section: str | None = None) -> None:
    """Run the blocks of `page` one after the other in `folder`, as a reader would; fail on the first that fails."""
    env = reader_env()
    for index, (language, code, line) in enumerate(code_blocks(page, section)):
        if language == "bash":
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            script = folder / f".block-{page.stem}-{index}.py"
            script.write_text(code)
            command = [sys.executable, str(script)]
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        where = f"{page.relative_to(REPO_ROOT)}:{line}"
        assert result.returncode == 0, f"{where} failed:\n{code}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_readme_quickstarts_run_as_written(tmp_path):
    assert len(code_blocks(REPO_ROOT / "README.md", "Quickstarts")) == 3
    run_blocks(REPO_ROOT / "README.md", tmp_path, "Quickstarts")
    assert (tmp_path / "runs" / "clip" / "results.md").is_file()


@pytest.mark.slow
def test_tutorials_run_as_written(tmp_path):
    for name in TUTORIALS:
        run_blocks(DOCS / "tutorials" / name, tmp_path)
    # what the pages say the reader now has
    assert (tmp_path / "lovr" / "README.md").is_file()
    assert (tmp_path / "runs" / "eval-clip" / "results.json").is_file()
    assert (tmp_path / "board" / "leaderboard.md").is_file()
    assert (tmp_path / "staged" / "space" / "lovr_retrieval.py").is_file()


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = reader_env() | {"NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    result = _build(REPO_ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "WARNING" not in result.stderr, result.stderr[-5000:]
    site = tmp_path / "site"
    # the generated reference is there, with options read from the parsers
    evaluate = (site / "reference" / "commands" / "lovr_metric" / "index.html").read_text()
    assert "--video_root" in evaluate and "--protocol" in evaluate
    api = (site / "reference" / "api" / "lovr_metric" / "index.html").read_text()
    assert "retrieval_metrics" in api
    assert not (site / "hooks").exists()


@pytest.mark.slow
def test_broken_link_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    page = docs / "how-to" / "index.md"
    page.write_text(page.read_text() + "\nSee [nothing](no-such-page.md).\n")
    config = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(docs / "hooks" / "commands.py")]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            python = plugin["mkdocstrings"]["handlers"]["python"]
            python["paths"] = [str(REPO_ROOT / path) for path in python["paths"]]
    config_path = tmp_path / "mkdocs.yml"
    config_path.write_text(yaml.safe_dump(config))
    result = _build(config_path, tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
