import json

import pytest
from huggingface_hub import ModelCard

from lovr_metric.evaluation.tasks import incomplete_reason
from model_cards.model import (
    INCOMPLETE_LABEL,
    RANDOM_WEIGHTS_LABEL,
    ResultsError,
    load_results,
    merge_into_model_card,
    results_card,
)

from .conftest import write_results


def _model_index(card):
    return ModelCard(str(card)).data.to_dict()["model-index"]


def test_results_card_model_index_has_exact_entries(tmp_path):
    card = results_card(load_results(write_results(tmp_path / "eval")), "org/LoVR")
    (entry,) = _model_index(card)
    assert entry["name"] == "openai/clip-vit-base-patch32"
    got = [
        (
            r["task"]["type"],
            r["dataset"]["config"],
            r["dataset"]["split"],
            r["dataset"]["type"],
            [(m["type"], m["name"], m["value"]) for m in r["metrics"]],
        )
        for r in entry["results"]
    ]
    # num_queries is not a card metric; the video granularity only has pass@1 in each direction.
    assert got == [
        (
            "text-to-video-retrieval",
            "clips",
            "test",
            "org/LoVR",
            [
                ("pass_at_1", "text->clip pass@1", 0.5),
                ("pass_at_5", "text->clip pass@5", 0.75),
                ("mrr", "text->clip MRR", 0.625),
            ],
        ),
        (
            "video-to-text-retrieval",
            "clips",
            "test",
            "org/LoVR",
            [("pass_at_1", "clip->text pass@1", 0.25), ("median_rank", "clip->text median rank", 3.0)],
        ),
        ("text-to-video-retrieval", "videos", "test", "org/LoVR", [("pass_at_1", "text->video pass@1", 1.0)]),
        ("video-to-text-retrieval", "videos", "test", "org/LoVR", [("pass_at_1", "video->text pass@1", 0.5)]),
    ]
    assert all(r["dataset"]["name"] == "LoVR" for r in entry["results"])
    assert "| text->clip | 0.5 | 0.75 | - | - | 0.625 | - | - |" in card.text
    assert RANDOM_WEIGHTS_LABEL not in card.text


def test_a_lovr_original_run_says_so_and_shows_clip_to_theme(tmp_path):
    path = write_results(tmp_path / "eval") / "results.json"
    raw = json.loads(path.read_text())
    theme = {"text_to_video_pass@1": 0.25, "video_to_text_pass@1": 0.75}
    path.write_text(json.dumps({**raw, "protocol": "lovr-original", "metrics": {**raw["metrics"], "theme": theme}}))
    card = results_card(load_results(path), "org/LoVR")
    assert "under the `lovr-original` protocol" in card.text
    assert "| clip->theme | 0.75 |" in card.text and "| theme->clip | 0.25 |" in card.text
    names = [m["name"] for r in _model_index(card)[0]["results"] for m in r["metrics"]]
    assert "clip->theme pass@1" in names
    # A default run shows no theme row it did not rank, and names no protocol.
    default = results_card(load_results(write_results(tmp_path / "default")), "org/LoVR")
    assert "protocol" not in default.text and "theme" not in default.text


def test_random_weight_results_refused_without_flag(tmp_path):
    results = load_results(write_results(tmp_path / "eval", model="/tmp/tiny-clip", random_weights=True))
    with pytest.raises(ResultsError, match="random_weights=true.*meaningless"):
        results_card(results)


def test_random_weight_results_labelled_with_flag(tmp_path):
    results = load_results(write_results(tmp_path / "eval", model="/tmp/tiny-clip", random_weights=True))
    card = ModelCard(str(results_card(results, allow_random_weights=True)))
    assert _model_index(card)[0]["name"] == f"/tmp/tiny-clip ({RANDOM_WEIGHTS_LABEL})"
    assert "random-weights" in card.data.tags
    assert f"**{RANDOM_WEIGHTS_LABEL}.**" in card.text


VALID = {
    "model": "m",
    "random_weights": False,
    "dataset": "d",
    "protocol": "default",
    "failed_videos": [],
    "settings": {"missing": []},
}


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({**VALID, "random_weights": "no", "metrics": {}}), "'random_weights' must be"),
        (json.dumps({**VALID, "protocol": None, "metrics": {"clip": {}}}), "'protocol' must be a str, but got None"),
        (
            json.dumps({**VALID, "metrics": {"frame": {}}}),
            r"granularities must be among \['clip', 'theme', 'video'\], got \['frame'\]",
        ),
        (
            json.dumps({**VALID, "metrics": {"clip": {"text_to_video_pass@1": "high"}}}),
            r"metrics\['clip'\]\['text_to_video_pass@1'\] is 'high'; expected a finite number",
        ),
        # json writes and reads NaN and Infinity, which a model-index would publish as `.nan` / `.inf`
        (
            json.dumps({**VALID, "metrics": {"clip": {"text_to_video_mrr": float("nan")}}}),
            r"metrics\['clip'\]\['text_to_video_mrr'\] is nan; expected a finite number",
        ),
        (
            json.dumps({**VALID, "metrics": {"video": {"video_to_text_median_rank": float("inf")}}}),
            r"metrics\['video'\]\['video_to_text_median_rank'\] is inf; expected a finite number",
        ),
        (json.dumps({**VALID, "failed_videos": None, "metrics": {}}), "'failed_videos' must be a list"),
        (json.dumps({**VALID, "settings": {}, "metrics": {}}), "'settings.missing' must be a list"),
    ],
)
def test_malformed_results_name_the_file(tmp_path, content, message):
    (tmp_path / "results.json").write_text(content)
    with pytest.raises(ResultsError, match=message) as info:
        load_results(tmp_path)
    assert "results.json" in str(info.value)


def test_missing_results_json(tmp_path):
    with pytest.raises(ResultsError, match=r"results\.json' does not exist"):
        load_results(tmp_path)


def test_incomplete_results_refused_without_flag(tmp_path):
    results = load_results(write_results(tmp_path / "eval", failed=("vidA",)))
    reason = incomplete_reason(json.loads(results.path.read_text()))  # one video failed to decode
    with pytest.raises(ResultsError) as info:
        results_card(results)
    assert str(info.value).startswith(f"{results.path}: incomplete: {reason}; pass allow_incomplete=True")


def test_incomplete_results_marked_in_the_table_and_every_model_index_entry(tmp_path):
    results = load_results(write_results(tmp_path / "eval", failed=("vidA",)))
    card = ModelCard(str(results_card(results, "org/LoVR", allow_incomplete=True)))
    names = [m["name"] for r in _model_index(card)[0]["results"] for m in r["metrics"]]
    assert len(names) == 7 and all(name.endswith(f" ({INCOMPLETE_LABEL})") for name in names)
    assert f"**Incomplete: {results.incomplete}.**" in card.text
    assert f"| text->clip ({INCOMPLETE_LABEL}) | 0.5 | 0.75 |" in card.text
    # A complete run carries no mark.
    complete = results_card(load_results(write_results(tmp_path / "complete")), "org/LoVR")
    assert INCOMPLETE_LABEL not in str(complete) and "Incomplete" not in str(complete)


EXISTING_README = """---
license: mit
tags:
- clip
model-index:
- name: clip
  results:
  - task: {type: zero-shot-image-classification}
    dataset: {type: imagenet, name: ImageNet}
    metrics: [{type: accuracy, value: 0.6}]
---
# CLIP

Model description.
"""


def test_merge_keeps_other_results_and_replaces_lovr_section(tmp_path):
    first = results_card(load_results(write_results(tmp_path / "a")), "org/LoVR")
    merged = merge_into_model_card(ModelCard(EXISTING_README), first)
    again = merge_into_model_card(merged, first)
    assert str(again) == str(merged)  # a second PR replaces, never duplicates
    card = ModelCard(str(merged))
    assert card.data.license == "mit" and card.data.tags == ["clip", "lovr", "video-retrieval"]
    results = _model_index(card)[0]["results"]
    assert [r["dataset"]["name"] for r in results] == ["ImageNet"] + ["LoVR"] * 4
    assert card.text.startswith("# CLIP\n\nModel description.")
    assert card.text.count("## LoVR long-video retrieval results") == 1
