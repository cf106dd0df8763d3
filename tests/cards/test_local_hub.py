"""End to end against `tests/local_hub.py`, without `--dry-run`: `lovr_dataset export` then `push`, `model_cards
publish` (dataset, metric Space, a model-card pull request), then the published forms read back by fresh clients
that cannot import this project: `load_dataset("ORG/LoVR", "clips")` and `evaluate.load("ORG/lovr_retrieval")`.

Every Hub client is a subprocess started with `local_hub.client_env()`: huggingface_hub and evaluate read
`HF_ENDPOINT` when imported, and the token reaches them only through `HF_TOKEN`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pytest
from huggingface_hub import ModelCard

from lovr_metric import retrieval_metrics

from .conftest import write_results, write_run

ORG = "lovr-org"
MODEL = f"{ORG}/tiny-clip"
OLD_MODEL_CARD = "---\nlicense: mit\ntags:\n- clip\n---\n# Tiny CLIP\n\nA CLIP trained by hand.\n"
# A fresh client that cannot import this project: what a user without the toolkit has.
NO_PROJECT = (
    "import sys\n"
    "for name in ('lovr_common', 'lovr_dataset', 'lovr_metric', 'model_cards', 'generation'):\n"
    "    sys.modules[name] = None\n"
)


@dataclass
class Published:
    run: Path
    export: Path
    staged: Path
    outputs: list[str] = field(default_factory=list)


def _client(hub, args: list[str], cwd: Path, outputs: list[str], token: bool = True) -> subprocess.CompletedProcess:
    """Run `python ARGS` as a Hub client; its stdout and stderr join `outputs` (checked for the token)."""
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=hub.client_env(token=token), capture_output=True, text=True, timeout=180
    )
    outputs += [done.stdout, done.stderr]
    return done


def _check(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, f"{done.args[1:]} failed:\n{done.stdout}\n{done.stderr}"
    return done


def _seed_model(hub, repo_id: str, card: str | None, cwd: Path, outputs: list[str]) -> None:
    """Create the model repo `repo_id` with a client, holding `card` as its README.md unless None."""
    seed = f"from huggingface_hub import HfApi\napi = HfApi(); api.create_repo({repo_id!r})\n"
    if card is not None:
        seed += f"api.upload_file(path_or_fileobj={card.encode()!r}, path_in_repo='README.md', repo_id={repo_id!r})\n"
    _check(_client(hub, ["-c", seed], cwd, outputs))


@pytest.fixture(scope="module")
def published(local_hub, tmp_path_factory) -> Published:
    """A run folder exported, pushed and published once for the module; a model repo with a README first."""
    root = tmp_path_factory.mktemp("published")
    done = Published(run=write_run(root / "run"), export=root / "lovr", staged=root / "staged")
    results = write_results(root / "eval", model=MODEL)
    _seed_model(local_hub, MODEL, OLD_MODEL_CARD, root, done.outputs)
    export = [
        "-m",
        "lovr_dataset",
        "export",
        str(done.run),
        str(done.export),
        "--num-queries",
        "1",
        "--repo-id",
        f"{ORG}/LoVR",
    ]
    _check(_client(local_hub, export, root, done.outputs))
    push = ["-m", "lovr_dataset", "push", str(done.export), "--repo-id", f"{ORG}/LoVR"]
    _check(_client(local_hub, push, root, done.outputs))
    publish = [
        "-m",
        "model_cards",
        "publish",
        "--org",
        ORG,
        "--dataset",
        str(done.export),
        "--workdir",
        str(done.run),
        "--metric",
        "--results",
        str(results),
        "--out",
        str(done.staged),
    ]
    _check(_client(local_hub, publish, root, done.outputs))
    return done


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_pushed_dataset_loads_from_the_hub_as_the_local_export(local_hub, published, tmp_path):
    script = NO_PROJECT + (
        "import json, datasets\n"
        f"ds = datasets.load_dataset({f'{ORG}/LoVR'!r}, 'clips')\n"
        "print(json.dumps({s: {'features': d.features.to_dict(), 'rows': d.to_list()} for s, d in ds.items()}))\n"
    )
    done = _check(_client(local_hub, ["-c", script], tmp_path, published.outputs))
    local = datasets.load_dataset(str(published.export), "clips", cache_dir=str(tmp_path / "cache"))
    expected = {s: {"features": d.features.to_dict(), "rows": d.to_list()} for s, d in local.items()}
    # write_run has 2 clips; --num-queries 1 puts one in test and the other in train
    assert {s: len(v["rows"]) for s, v in expected.items()} == {"train": 1, "test": 1}
    assert json.loads(done.stdout.splitlines()[-1]) == json.loads(json.dumps(expected))


def test_publish_lands_dataset_space_and_model_card_pull_request(local_hub, published):
    # The Hub's first commit holds .gitattributes; everything else is exactly what was staged.
    dataset = local_hub.files("dataset", f"{ORG}/LoVR")
    assert dataset == {".gitattributes": dataset[".gitattributes"], **_files(published.staged / "dataset")}
    # push sent the export (its hidden .lovr-export marker left behind) and publish found nothing to change:
    # the one card renderer gave both the same README.md.
    pushed = {p: d for p, d in _files(published.export).items() if p != ".lovr-export"}
    assert {p: d for p, d in dataset.items() if p != ".gitattributes"} == pushed
    assert [c.title for c in local_hub.repos["dataset", f"{ORG}/LoVR"].commits.values()] == [
        "initial commit",
        "Upload LoVR",
    ]

    space = local_hub.files("space", f"{ORG}/lovr_retrieval")
    assert space == {".gitattributes": space[".gitattributes"], **_files(published.staged / "space")}
    assert "lovr_retrieval.py" in space and "app.py" in space

    # The pull request holds the merged card; main keeps the old one until someone merges it.
    assert local_hub.files("model", MODEL)["README.md"].decode() == OLD_MODEL_CARD
    merged = ModelCard(local_hub.files("model", MODEL, revision="refs/pr/1")["README.md"].decode())
    assert "A CLIP trained by hand." in merged.text
    assert merged.data.license == "mit" and "clip" in merged.data.tags
    lovr = [r for r in merged.data.eval_results if r.dataset_name == "LoVR"]
    # write_results: clip text_to_video_pass@1 = 0.5
    assert any(r.metric_value == 0.5 and r.dataset_type == f"{ORG}/LoVR" for r in lovr)


def test_model_without_a_card_gets_the_results_card(local_hub, published, tmp_path):
    model = f"{ORG}/no-card"
    _seed_model(local_hub, model, None, tmp_path, published.outputs)
    publish = [
        "-m",
        "model_cards",
        "publish",
        "--org",
        ORG,
        "--results",
        str(write_results(tmp_path / "eval", model)),
        "--out",
        str(tmp_path / "staged"),
    ]
    _check(_client(local_hub, publish, tmp_path, published.outputs))
    staged = (tmp_path / "staged" / "model-cards" / model.replace("/", "--") / "README.md").read_bytes()
    assert local_hub.files("model", model, revision="refs/pr/1")["README.md"] == staged


def test_no_pull_request_when_the_current_card_cannot_be_read(local_hub, published, tmp_path):
    """A README.md the Hub fails to serve is no missing README.md: a PR of the results card alone would replace the
    model's card. 403 without an error code (a proxy refusing) fails the read at once; 5xx ends the same way after
    huggingface_hub's retries (about 20 s)."""
    model = f"{ORG}/flaky"
    _seed_model(local_hub, model, OLD_MODEL_CARD, tmp_path, published.outputs)
    local_hub.faults[f"/{model}/resolve/main/README.md"] = 403
    publish = ["-m", "model_cards", "publish", "--org", ORG, "--results", str(write_results(tmp_path / "eval", model))]
    done = _client(local_hub, publish, tmp_path, published.outputs)
    assert done.returncode != 0 and "LocalEntryNotFoundError" in done.stderr
    assert list(local_hub.repos["model", model].refs) == ["main"]


def test_push_without_a_token_is_refused(local_hub, published, tmp_path):
    """The token that made the pushes above came from HF_TOKEN alone (each client has a fresh HF_HOME)."""
    outputs = []
    done = _client(
        local_hub,
        ["-m", "lovr_dataset", "push", str(published.export), "--repo-id", f"{ORG}/Other"],
        tmp_path,
        outputs,
        token=False,
    )
    assert done.returncode != 0
    assert "401" in done.stderr and "Invalid username or password" in done.stderr
    assert ("dataset", f"{ORG}/Other") not in local_hub.repos


def test_metric_loads_from_the_space_without_the_toolkit(local_hub, published, tmp_path):
    # evaluate 0.4.6 resolves "ORG/name" as the Space ORG/name: spaces/ORG/name/resolve/v0.4.6/name.py, then main.
    text_embeddings = [[1.0, 0.1], [0.0, 1.0]]
    video_embeddings = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
    inputs = dict(text_ids=["a", "c"], video_ids=["a", "b", "c"], k_values=[1, 2])
    script = NO_PROJECT + (
        "import json, evaluate, numpy as np\n"
        f"metric = evaluate.load({f'{ORG}/lovr_retrieval'!r})\n"
        f"out = metric.compute(text_embeddings=np.array({text_embeddings}), "
        f"video_embeddings=np.array({video_embeddings}), **{inputs!r})\n"
        "print(json.dumps({k: float(v) for k, v in out.items()}))\n"
    )
    done = _check(_client(local_hub, ["-c", script], tmp_path, published.outputs))
    local = retrieval_metrics(
        np.array(text_embeddings),
        inputs["text_ids"],
        np.array(video_embeddings),
        inputs["video_ids"],
        k_values=inputs["k_values"],
    )
    # text 0 ranks "a" first, text 1 ranks "b" above its "c": pass@1 = 1/2
    assert local["text_to_video_pass@1"] == 0.5
    assert json.loads(done.stdout.splitlines()[-1]) == pytest.approx({k: float(v) for k, v in local.items()})


def test_token_is_never_printed_nor_staged_nor_uploaded(local_hub, published):
    """Last in the module, so that it sees the output of every client above."""
    token = local_hub.token
    assert published.outputs and not [out for out in published.outputs if token in out]
    assert not [p for p, data in _files(published.staged).items() if token.encode() in data]
    for repo_type, repo_id in local_hub.repos:
        repo = local_hub.repos[repo_type, repo_id]
        assert not [p for c in repo.commits.values() for p, d in c.files.items() if token.encode() in d]
