"""The UVRB export of the tiny release (see conftest.py), checked field by field."""

from __future__ import annotations

import json
import shutil

import pytest

from lovr_common.jsonl import read_jsonl
from lovr_metric.interop import export_uvrb
from lovr_metric.interop.__main__ import main

CLIP = "video_data/long_video_clip/{}/{}.mp4"


def clip_path(clip_id: str) -> str:
    return CLIP.format(clip_id.rpartition("-Scene-")[0], clip_id)


def read_task(folder):
    return {
        name: sorted(read_jsonl(folder / f"jsonl/{name}.jsonl"), key=lambda r: r.get("id", r.get("qid")))
        for name in ("queries", "corpus", "instances")
    }


@pytest.fixture(scope="module")
def uvrb(release_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("uvrb") / "lovr-uvrb"
    return out, export_uvrb(release_export, out, cache_dir=str(out.parent / "hf-cache"))


def test_text_to_clip(uvrb):
    task = read_task(uvrb[0] / "LoVR-T2C")
    # the four captioned clips are the queries (fewer than 1000); every clip is in the corpus, the one whose file
    # is missing too (an export keeps its declared path), the one without a caption too
    assert task["queries"] == [
        {"id": "-dash-Scene-001", "text": "A dash of colour."},
        {"id": "-dash-Scene-002", "text": "A missing clip."},
        {"id": "bikes-Scene-001", "text": "Bikes line up at the start."},
        {"id": "bikes-Scene-002", "text": "Riders climb a hill."},
    ]
    clips = ["-dash-Scene-001", "-dash-Scene-002", "bikes-Scene-001", "bikes-Scene-002", "bikes-Scene-003"]
    assert task["corpus"] == [{"id": c, "video": clip_path(c)} for c in clips]
    assert task["instances"] == [{"qid": q["id"], "pos": [q["id"]]} for q in task["queries"]]


def test_text_to_video_leaves_out_the_video_without_a_file(uvrb):
    task = read_task(uvrb[0] / "LoVR-V")
    assert task == {
        "queries": [{"id": "bikes", "text": "A race."}],
        "corpus": [{"id": "bikes", "video": "video_data/merged/bikes.mp4"}],
        "instances": [{"qid": "bikes", "pos": ["bikes"]}],
    }
    assert uvrb[1]["tasks"]["LoVR-V"]["left_out"] == {
        "corpus_without_file": 1,
        "queries_without_file": 0,
        "queries_without_target": 1,
    }


def test_theme_to_clip(uvrb):
    task = read_task(uvrb[0] / "LoVR-TH")
    assert task["queries"] == [
        {"id": "-dash-Scene-001-theme-1", "text": "colour"},
        {"id": "bikes-Scene-002-theme-1", "text": "effort"},
    ]
    assert task["instances"] == [
        {"qid": "-dash-Scene-001-theme-1", "pos": ["-dash-Scene-001"]},
        {"qid": "bikes-Scene-002-theme-1", "pos": ["bikes-Scene-002"]},
    ]
    assert task["corpus"] == read_task(uvrb[0] / "LoVR-T2C")["corpus"]


def test_clip_to_video(uvrb):
    task = read_task(uvrb[0] / "LoVR-C2V")
    # the query clips of -dash have no long video to find: left out
    assert task["queries"] == [{"id": c, "video": clip_path(c)} for c in ("bikes-Scene-001", "bikes-Scene-002")]
    assert task["corpus"] == [{"id": "bikes", "video": "video_data/merged/bikes.mp4"}]
    assert task["instances"] == [{"qid": q["id"], "pos": ["bikes"]} for q in task["queries"]]


def test_manifest_and_files(uvrb, release_export):
    out, manifest = uvrb
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["dataset"] == str(release_export)
    assert list(manifest["tasks"]) == ["LoVR-T2C", "LoVR-V", "LoVR-TH", "LoVR-C2V"]
    assert {k: manifest["tasks"]["LoVR-C2V"][k] for k in ("query_modality", "num_queries", "num_corpus")} == {
        "query_modality": "video",
        "num_queries": 2,
        "num_corpus": 1,
    }
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        ["manifest.json"]
        + [f"{t}/jsonl/{f}.jsonl" for t in manifest["tasks"] for f in ("queries", "corpus", "instances")]
    )


def test_refuses_a_folder_with_content_and_a_missing_dataset(uvrb, tmp_path, capsys):
    out, _ = uvrb
    with pytest.raises(ValueError, match="not an empty folder"):
        export_uvrb(tmp_path, out)
    assert main(["export-uvrb", "--dataset", str(tmp_path / "absent"), "--output", str(tmp_path / "o")]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert main(["export-uvrb", "--dataset", str(tmp_path)]) == 2


def test_command_line(release_export, tmp_path, capsys):
    assert main(["export-uvrb", "--dataset", str(release_export), "--output", str(tmp_path / "o")]) == 0
    assert "LoVR-T2C, LoVR-V, LoVR-TH, LoVR-C2V" in capsys.readouterr().out


@pytest.mark.parametrize("inside", ["uvrb", "clips/uvrb", "a/b"])
def test_refuses_an_output_inside_the_export(release_export, tmp_path, capsys, inside):
    dataset = shutil.copytree(release_export, tmp_path / "lovr")
    files = sorted(dataset.rglob("*"))
    assert main(["export-uvrb", "--dataset", str(dataset), "--output", str(dataset / inside)]) == 1
    assert f"error: output='{dataset / inside}' lies inside dataset='{dataset}'" in capsys.readouterr().err
    assert sorted(dataset.rglob("*")) == files  # the export the user may push is left as it was
