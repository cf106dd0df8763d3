"""The package as users install it: a wheel built from the sdist, installed (not editable) into a clean venv. The
wheel holds the products and the `lovr` command, not the stand-ins (`lovr_standins`: tiny random-weight models and
sample videos, imported from the source tree by the demo, tests and benchmarks).

The venv gets the wheel alone (`--no-deps`); its dependencies come from this test environment's site-packages through a
`.pth` line, which adds the folder to `sys.path` without running that folder's own `.pth` files: the editable install
of this checkout stays invisible, so every `lovr_*` import below comes from the wheel.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lovr_metric import retrieval_metrics

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of the clean venv, folder to run it from, its site-packages, the wheel), with the freshly built wheel
    installed."""
    root = tmp_path_factory.mktemp("wheel")
    source, dist = root / "source", root / "dist"
    # A copy of the checkout's files, as a clean clone has them: the checkout's own build leftovers (egg-info)
    # would otherwise supply data files that the packaging configuration forgot.
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, source / rel)
    # Without flags, `build` makes the sdist and then the wheel from the unpacked sdist: both are exercised.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    assert sdist.stat().st_size > 0
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = root / "elsewhere"  # not the checkout: the current folder is on sys.path with `-m` and `-c`
    work.mkdir()
    return python, work, Path(site), wheel


def _run(installed, *args, program=None) -> str:
    python, work, _, _ = installed
    done = subprocess.run([program or python, *args], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_wheel_holds_the_products_and_not_the_stand_ins(installed):
    *_, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"generation", "lovr_cli", "lovr_common", "lovr_dataset", "lovr_metric", "model_cards"}
    [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "lovr = lovr_cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    python, work, _, _ = installed
    done = subprocess.run([python, "-c", "import lovr_standins"], cwd=work, capture_output=True, text=True)
    assert done.returncode == 1 and "No module named 'lovr_standins'" in done.stderr


@pytest.mark.parametrize(
    "command, expected",
    [(["--help"], "generate run"), (["export", "--help"], "usage: lovr export"), (["models"], "| clip-vit-b-32 |")],
)
def test_the_lovr_command_is_installed(installed, command, expected):
    python, *_ = installed
    assert expected in _run(installed, *command, program=Path(python).parent / "lovr")


@pytest.mark.parametrize(
    "module, expected",
    [("lovr_metric evaluate", "--video_root"), ("generation.run", "--workdir")],
)
def test_the_commands_start_from_the_wheel(installed, module, expected):
    assert expected in _run(installed, "-m", *module.split(), "--help")


def test_modules_and_data_files_come_from_the_wheel(installed):
    _, _, site, _ = installed
    out = _run(
        installed,
        "-c",
        "import json, generation, lovr_cli, lovr_common, lovr_dataset, lovr_metric, model_cards\n"
        "from model_cards.metric import default_metric_dir, metric_space_files\n"
        "from model_cards.dataset import TEMPLATE\n"
        "print(json.dumps({'files': [m.__file__ for m in (generation, lovr_cli, lovr_common, lovr_dataset, lovr_metric,"
        " model_cards)], 'space': [str(p) for p in metric_space_files(default_metric_dir())],"
        " 'template': str(TEMPLATE), 'template_exists': TEMPLATE.is_file()}))",
    )
    found = json.loads(out)
    assert all(Path(file).is_relative_to(site) for file in found["files"])
    assert {"README.md", "app.py", "lovr_retrieval.py", "requirements.txt"} <= set(found["space"])
    assert Path(found["template"]).is_relative_to(site) and found["template_exists"]


def test_evaluate_loads_the_installed_module(installed):
    # Texts 0 and 1 match their videos exactly; text 2 (of v2) is closer to v0: text->video pass@1 is 2/3.
    text = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]], dtype=np.float32)
    videos = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
    ids = ["v0", "v1", "v2"]
    expected = retrieval_metrics(text, ids, videos, ids, k_values=(1, 2))
    script = (
        "import json, evaluate, numpy as np, lovr_metric\n"
        f"text = np.array({text.tolist()}, dtype=np.float32)\n"
        f"videos = np.array({videos.tolist()}, dtype=np.float32)\n"
        "metric = evaluate.load(lovr_metric.lovr_retrieval_path())\n"
        f"print(json.dumps(metric.compute(text_embeddings=text, text_ids={ids}, video_embeddings=videos,"
        f" video_ids={ids}, k_values=[1, 2])))"
    )
    got = json.loads(_run(installed, "-c", script).splitlines()[-1])
    assert got == pytest.approx(expected)
    assert got["text_to_video_pass@1"] == pytest.approx(2 / 3)
