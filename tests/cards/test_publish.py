import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import DatasetCard, ModelCard, SpaceCard

import model_cards.publish
from lovr_metric.evaluation.tasks import incomplete_reason
from model_cards.__main__ import main
from model_cards.metric import default_metric_dir

from .conftest import METRIC_CARD, write_metric_dir, write_results, write_run


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """A dry run must not even create the API client."""

    def refuse(*args, **kwargs):
        raise AssertionError("HfApi was instantiated during a dry run")

    monkeypatch.setattr(model_cards.publish, "HfApi", refuse)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _refused(args: list[str], message: str) -> str:
    """`main(args)` stops the command with one line naming what is wrong (exit status 1); returns that line."""
    with pytest.raises(SystemExit) as info:
        main(args)
    error = info.value.code
    assert isinstance(error, str) and "\n" not in error, error  # a message, which Python prints with status 1
    assert error.startswith("python -m model_cards publish: error: ") and re.search(message, error), error
    return error


def test_dry_run_stages_exact_folders_and_prints_every_operation(tmp_path, export_dir, run_dir, metric_dir, capsys):
    (export_dir / "videos" / "vidA.mp4").write_bytes(b"not for the Hub")
    hub_model = write_results(tmp_path / "eval-hub")
    local_model = write_results(tmp_path / "eval-local", model=str(tmp_path), random_weights=True)
    out = tmp_path / "staged"
    main(
        [
            "publish",
            "--org",
            "org",
            "--dataset",
            str(export_dir),
            "--workdir",
            str(run_dir),
            "--metric",
            "--metric_dir",
            str(metric_dir),
            "--results",
            str(hub_model),
            str(local_model),
            "--allow_random_weights",
            "--dry-run",
            "--out",
            str(out),
        ]
    )

    assert _files(out / "dataset") == [
        "README.md",
        "clips/gallery-00000-of-00001.parquet",
        "clips/test-00000-of-00001.parquet",
        "videos/test-00000-of-00001.parquet",
    ]
    assert DatasetCard.load(out / "dataset" / "README.md").data.license == "cc-by-nc-sa-4.0"
    assert _files(out / "space") == ["README.md", "app.py", "lovr_retrieval.py", "requirements.txt"]
    assert SpaceCard.load(out / "space" / "README.md").data.sdk == "gradio"
    local_card_dir = str(tmp_path).strip("/").replace("/", "--")
    assert _files(out / "model-cards") == sorted(
        [f"{local_card_dir}/README.md", "openai--clip-vit-base-patch32/README.md"]
    )
    assert ModelCard.load(out / "model-cards" / "openai--clip-vit-base-patch32" / "README.md").data.eval_results

    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "[dry-run] create_repo dataset org/LoVR exist_ok=True private=False",
        "[dry-run] upload_folder dataset org/LoVR",
        f"    from {out / 'dataset'}: README.md, clips/gallery-00000-of-00001.parquet, "
        "clips/test-00000-of-00001.parquet, videos/test-00000-of-00001.parquet",
        "[dry-run] create_repo space org/lovr_retrieval exist_ok=True private=False space_sdk='gradio'",
        "[dry-run] upload_folder space org/lovr_retrieval",
        f"    from {out / 'space'}: README.md, app.py, lovr_retrieval.py, requirements.txt",
        "[dry-run] create_commit model openai/clip-vit-base-patch32 create_pr=True "
        'merge="LoVR results into the model\'s current README.md"',
        f"    from {out / 'model-cards' / 'openai--clip-vit-base-patch32'}: README.md",
        f"[dry-run] skipped: {out / 'model-cards' / local_card_dir / 'README.md'}: model {str(tmp_path)!r} is not "
        "a Hub repo id, so no pull request",
        f"Staged folders are in {out}; nothing was sent to the Hub.",
    ]


def test_dry_run_rerun_replaces_its_own_staging(tmp_path, metric_dir, capsys):
    out = tmp_path / "staged"
    args = ["publish", "--org", "org", "--metric", "--metric_dir", str(metric_dir), "--dry-run", "--out", str(out)]
    main(args)
    (metric_dir / "extra.py").write_text("")
    main(args)
    assert _files(out / "space") == ["README.md", "app.py", "extra.py", "lovr_retrieval.py", "requirements.txt"]


def test_out_folder_not_made_by_publish_is_refused(tmp_path, metric_dir):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = ["publish", "--org", "org", "--metric", "--metric_dir", str(metric_dir), "--dry-run", "--out", str(out)]
    _refused(args, "was not made by this command")
    assert (out / "notes.txt").read_text() == "keep me"


def test_random_weight_results_refused_without_flag(tmp_path):
    results = write_results(tmp_path / "eval", random_weights=True)
    _refused(
        ["publish", "--org", "org", "--results", str(results), "--dry-run", "--out", str(tmp_path / "o")],
        "random_weights=true",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--org", "org"], "nothing to publish"),
        (["--org", "bad org!", "--metric"], "make no valid repo id"),
        (
            ["--org", "my/org", "--metric"],
            r"--org 'my/org' / --dataset_name 'LoVR' make no valid repo id: .*'my/org/LoVR'",
        ),
        (["--org", "org", "--dataset", "/nonexistent/lovr"], "'/nonexistent/lovr' is not a directory"),
        (["--org", "org", "--results", "/nonexistent/eval"], "results.json' does not exist"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, args, message):
    _refused(["publish", *args, "--dry-run", "--out", str(tmp_path / "o")], message)
    assert not (tmp_path / "o").exists()


def test_metric_folder_checks(tmp_path):
    incomplete = write_metric_dir(tmp_path / "a")
    (incomplete / "app.py").unlink()
    _refused(
        ["publish", "--org", "org", "--metric", "--metric_dir", str(incomplete), "--dry-run"], r"lacks \['app.py'\]"
    )
    wrong_sdk = write_metric_dir(tmp_path / "b", card=METRIC_CARD.replace("sdk: gradio", "sdk: static"))
    _refused(
        ["publish", "--org", "org", "--metric", "--metric_dir", str(wrong_sdk), "--dry-run"],
        r"YAML has \{'sdk': 'static'\}",
    )


def test_the_real_metric_folder_publishes_when_present(tmp_path):
    from model_cards.metric import default_metric_dir, load_metric_card

    if not (default_metric_dir() / "README.md").exists():
        pytest.skip("lovr_metric/lovr_retrieval is not written yet")
    assert load_metric_card(default_metric_dir()).data.sdk == "gradio"


def test_cli_entry_point_runs(tmp_path, metric_dir):
    out = tmp_path / "staged"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_cards",
            "publish",
            "--org",
            "org",
            "--metric",
            "--metric_dir",
            str(metric_dir),
            "--dry-run",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "[dry-run] upload_folder space org/lovr_retrieval" in done.stdout
    assert (out / "space" / "README.md").is_file()


def test_dry_run_on_a_real_lovr_dataset_export(tmp_path, run_dir, hf_cache, capsys):
    """The run folder goes through `lovr_dataset.export`, then the staged dataset loads back with `datasets`."""
    import datasets

    from lovr_dataset.export import export

    exported = export(run_dir, tmp_path / "lovr", cache_dir=hf_cache, num_queries=1)
    out = tmp_path / "staged"
    _stage_dataset(exported, run_dir, out)
    parquet = sorted(p for p in _files(exported) if p.endswith(".parquet"))
    assert _files(out / "dataset") == sorted(["README.md", *parquet])
    card = DatasetCard.load(out / "dataset" / "README.md")
    assert card.data["configs"] == DatasetCard.load(exported / "README.md").data["configs"]
    # 2 clips of 5 s and 7 s, captions of 3 and 2 words, one video of 30 s
    assert "| clip duration (s) | 2 | 5 | 6 | 6 | 7 |" in card.text
    assert "| clip caption words | 2 | 2 | 2.50 | 2.50 | 3 |" in card.text
    staged = datasets.load_dataset(str(out / "dataset"), "clips", cache_dir=hf_cache + "-staged")
    original = datasets.load_dataset(str(exported), "clips", cache_dir=hf_cache)
    assert {s: d.to_list() for s, d in staged.items()} == {s: d.to_list() for s, d in original.items()}


def test_the_export_writes_the_full_card_that_publish_uploads(tmp_path, run_dir, hf_cache):
    """One renderer: the export's README.md is the card publish stages for the same repo, with real download sizes."""
    from lovr_dataset.export import export

    exported = export(run_dir, tmp_path / "lovr", cache_dir=hf_cache, num_queries=1, repo_id="org/LoVR")
    out = tmp_path / "staged"
    _stage_dataset(exported, run_dir, out)
    written = (exported / "README.md").read_text(encoding="utf-8")
    assert (out / "dataset" / "README.md").read_text(encoding="utf-8") == written
    card = DatasetCard.load(exported / "README.md")
    assert card.data["pretty_name"] == "LoVR"
    assert card.data["language"] == ["en"]
    assert card.data["task_categories"] == ["text-retrieval", "video-text-to-text"]
    assert card.data["size_categories"] == ["n<1K"]
    assert "lovr" in card.data["tags"]
    for info in card.data["dataset_info"]:
        parquet = (exported / info["config_name"]).glob("*.parquet")
        assert info["download_size"] == sum(path.stat().st_size for path in parquet) > 0
    # the body: statistics from the data and the settings of the run it was built from
    assert "| clip caption words | 2 | 2 | 2.50 | 2.50 | 3 |" in card.text
    assert 'load_dataset("org/LoVR", "clips")' in card.text


def test_the_staged_space_card_names_the_organisations_space(tmp_path):
    main(["publish", "--org", "lovr-demo", "--metric", "--dry-run", "--out", str(tmp_path / "staged")])
    card = (tmp_path / "staged" / "space" / "README.md").read_text()
    assert 'evaluate.load("lovr-demo/lovr_retrieval")' in card and "ORG/" not in card
    assert (
        "ORG/lovr_retrieval" in (default_metric_dir() / "README.md").read_text()
    )  # the package keeps the placeholder


def test_staged_files_are_copies_not_links_of_their_sources(tmp_path, export_dir):
    out = tmp_path / "staged"
    main(["publish", "--org", "org", "--dataset", str(export_dir), "--metric", "--dry-run", "--out", str(out)])
    # The package's own metric folder, and the export (each README.md is rendered, not copied).
    pairs = [(out / "space" / rel, default_metric_dir() / rel) for rel in _files(out / "space") if rel != "README.md"]
    pairs += [(out / "dataset" / rel, export_dir / rel) for rel in _files(out / "dataset") if rel != "README.md"]
    assert {staged.name for staged, _ in pairs} >= {"retrieval.py", "lovr_retrieval.py", "test-00000-of-00001.parquet"}
    for staged, source in pairs:
        assert staged.stat().st_ino != source.stat().st_ino and staged.stat().st_nlink == 1, staged
        assert staged.read_bytes() == source.read_bytes()
    # Edited only now that it is known to be a copy, so that a failure above cannot edit the toolkit.
    staged, source = next((s, src) for s, src in pairs if s.name == "retrieval.py")
    before = source.read_bytes()
    with staged.open("r+b") as file:  # in place, as an editor that keeps the inode would
        file.write(b"# edited in the staging folder\n")
    assert source.read_bytes() == before


def _stage_dataset(exported: Path, run_dir: Path, out: Path) -> None:
    """`publish --dry-run` of an export and its run folder, staged in `out`."""
    main(
        [
            "publish",
            "--org",
            "org",
            "--dataset",
            str(exported),
            "--workdir",
            str(run_dir),
            "--dry-run",
            "--out",
            str(out),
        ]
    )


def _publish_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model_cards", "publish", *args], capture_output=True, text=True)


@pytest.mark.parametrize("damage", ["torn", "duplicated"])
def test_a_damaged_run_folder_file_is_one_line_naming_file_and_line(tmp_path, export_dir, damage):
    run = write_run(tmp_path / "damaged")
    captions = run / "captions.jsonl"
    first = captions.read_text().splitlines()[0]
    # Lines 1 and 2 are the two captions; line 3 is cut short, or vidA-Scene-001 again.
    captions.write_text(captions.read_text() + (first[:20] if damage == "torn" else first + "\n"))
    out = tmp_path / "staged"
    done = _publish_cli(
        "--org", "org", "--dataset", str(export_dir), "--workdir", str(run), "--dry-run", "--out", str(out)
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"python -m model_cards publish: error: {captions}:") and ":3" in line, line
    assert not out.exists()


def test_a_failed_publish_leaves_out_as_it_was(tmp_path, export_dir, metric_dir):
    refused = write_results(tmp_path / "eval", random_weights=True)  # refused once the dataset is staged
    failing = ["publish", "--org", "org", "--dataset", str(export_dir), "--results", str(refused), "--dry-run"]
    out = tmp_path / "staged"
    _refused([*failing, "--out", str(out)], "random_weights=true")
    assert not out.exists()
    main(["publish", "--org", "org", "--metric", "--metric_dir", str(metric_dir), "--dry-run", "--out", str(out)])
    before = {rel: (out / rel).read_bytes() for rel in _files(out)}
    siblings = sorted(tmp_path.iterdir())
    _refused([*failing, "--out", str(out)], "random_weights=true")
    assert {rel: (out / rel).read_bytes() for rel in _files(out)} == before  # the earlier staging, untouched
    assert sorted(tmp_path.iterdir()) == siblings  # nothing left beside it


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_metric_that_is_not_finite_is_not_published(tmp_path, value):
    results = write_results(tmp_path / "eval")
    raw = json.loads((results / "results.json").read_text())
    raw["metrics"]["clip"]["text_to_video_mrr"] = value
    (results / "results.json").write_text(json.dumps(raw))  # NaN / Infinity, as json writes them
    out = tmp_path / "staged"
    _refused(
        ["publish", "--org", "org", "--results", str(results), "--dry-run", "--out", str(out)],
        re.escape(f"{results / 'results.json'}: metrics['clip']['text_to_video_mrr'] is {value}"),
    )
    assert not out.exists()


def test_incomplete_results_are_published_only_when_allowed_and_marked(tmp_path):
    results = write_results(tmp_path / "eval", failed=("vidA",))
    reason = incomplete_reason(json.loads((results / "results.json").read_text()))  # one video failed to decode
    args = ["publish", "--org", "org", "--results", str(results), "--dry-run", "--out", str(tmp_path / "staged")]
    _refused(args, re.escape(f"{results / 'results.json'}: incomplete: {reason}; pass allow_incomplete=True"))
    main([*args, "--allow_incomplete"])
    card = ModelCard.load(tmp_path / "staged" / "model-cards" / "openai--clip-vit-base-patch32" / "README.md")
    assert f"**Incomplete: {reason}.**" in card.text and "| text->clip (incomplete gallery) |" in card.text
    assert all(m.metric_name.endswith("(incomplete gallery)") for m in card.data.eval_results)
