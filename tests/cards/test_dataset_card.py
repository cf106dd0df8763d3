import pytest
from huggingface_hub import DatasetCard

from model_cards.dataset import CITATION, dataset_card

from .conftest import write_export


def test_dataset_card_yaml_parses_back_with_exact_fields(export_dir, run_dir):
    export_yaml = DatasetCard.load(export_dir / "README.md").data
    card = DatasetCard(str(dataset_card(export_dir, run_dir, repo_id="org/LoVR")))
    data = card.data
    assert data.license == "cc-by-nc-sa-4.0"
    assert data.task_categories == ["text-retrieval", "video-text-to-text"]
    assert data.size_categories == ["n<1K"]  # the largest config has 4 rows
    assert data.pretty_name == "LoVR"
    assert data["configs"] == export_yaml["configs"]
    infos = {info["config_name"]: info for info in data["dataset_info"]}
    assert [f["name"] for f in infos["clips"]["features"]] == [
        "video_id",
        "clip_id",
        "clip_index",
        "start",
        "end",
        "caption",
        "clip_path",
        "video_path",
        "split",
    ]
    assert {s["name"]: s["num_examples"] for s in infos["clips"]["splits"]} == {"test": 2, "gallery": 2}
    assert {s["name"]: s["num_examples"] for s in infos["videos"]["splits"]} == {"test": 2}


def test_dataset_card_body_states_run_settings_statistics_and_licence(export_dir, run_dir):
    text = DatasetCard(str(dataset_card(export_dir, run_dir, repo_id="org/LoVR"))).text
    assert 'load_dataset("org/LoVR", "clips")' in text
    # settings read from the run folder's records
    for row in [
        "| `threshold` | `34.0` |",
        "| `model` | `Qwen/Qwen2.5-VL-7B-Instruct` |",
        "| `attempt` | `1`, `2` |",
        "| `name` | `evqascore` |",
        "| `threshold` | `0.5` |",
        "| `cluster_size` | `10` |",
        "| `model` | `gpt-4o` |",
    ]:
        assert row in text
    assert "Human review: pending: 1." in text
    assert "In this build: 1 boundaries `fallback`." in text
    # statistics: 2 videos, 4 clips; clip durations 5 6 7 18; clip caption words 2 3 4 6
    assert "| long videos | 2 |" in text and "| clips | 4 |" in text
    assert "| clip duration (s) | 4 | 5 | 6.50 | 9 | 18 |" in text
    assert "| clip caption words | 4 | 2 | 3.50 | 3.75 | 6 |" in text
    assert "| `clips` | `gallery` | 2 |" in text
    assert "**not** re-hosted" in text and "LongVideoBench" in text
    assert CITATION in text and "2505.13928" in CITATION


def test_dataset_card_without_run_folder_says_so(export_dir):
    text = DatasetCard(str(dataset_card(export_dir))).text
    assert "run folder that built this dataset was not given" in text
    assert "### segment" not in text


def test_dataset_card_errors_name_the_input(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        dataset_card(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no README.md"):
        dataset_card(tmp_path / "empty")
    (tmp_path / "noconf").mkdir()
    (tmp_path / "noconf" / "README.md").write_text("---\nlicense: mit\n---\n")
    with pytest.raises(ValueError, match="declares no `configs:`"):
        dataset_card(tmp_path / "noconf")
    export = write_export(tmp_path / "lovr")
    with pytest.raises(ValueError, match="is not a directory; expected a pipeline run folder"):
        dataset_card(export, workdir=tmp_path / "nope")
    with pytest.raises(ValueError, match="holds none of"):
        dataset_card(export, workdir=tmp_path / "empty")


def test_dataset_card_loads_the_metric_space_of_its_organisation(export_dir):
    # `publish` puts the dataset repo and the metric Space under one --org; the bare name loads nothing from the Hub.
    text = DatasetCard(str(dataset_card(export_dir, repo_id="org/LoVR"))).text
    assert 'evaluate.load("org/lovr_retrieval")' in text and 'evaluate.load("lovr_retrieval")' not in text
    # Without an organisation, the placeholder of the metric's own card (lovr_metric/lovr_retrieval/README.md).
    assert 'evaluate.load("ORG/lovr_retrieval")' in DatasetCard(str(dataset_card(export_dir))).text
