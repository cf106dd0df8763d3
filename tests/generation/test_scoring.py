import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from generation.backends import ChatResult, TransformersBackend
from generation.outcome import Failed
from generation.scoring import (
    STOPWORDS,
    EvqaScorer,
    JudgeScorer,
    LlmKeywords,
    ScoringItem,
    extract_keywords,
    frame_regions,
    harmonic_match,
    split_sentences,
)
from lovr_standins.tiny_models import tiny_model_path


def _naive_match(rows):
    """m(S) by hand: best match per column and per row, averaged, then their harmonic mean 2pr / (p + r).

    The harmonic mean H of p and r solves 1/H = (1/p + 1/r) / 2, so H = 2 / (1/p + 1/r) = 2pr / (p + r).
    """
    columns = list(zip(*rows, strict=True))
    p = sum(max(column) for column in columns) / len(columns)
    r = sum(max(row) for row in rows) / len(rows)
    return 2 * p * r / (p + r)


def test_harmonic_match_equals_hand_computation():
    rows = [[0.9, 0.1, 0.3], [0.2, 0.5, 0.4]]
    # per column: max = 0.9, 0.5, 0.4 -> mean 0.6; per row: max = 0.9, 0.5 -> mean 0.7
    # m = 2 * 0.6 * 0.7 / 1.3 = 0.646153...
    assert harmonic_match(torch.tensor(rows)) == pytest.approx(0.84 / 1.3)
    assert harmonic_match(torch.tensor(rows)) == pytest.approx(_naive_match(rows))


@pytest.mark.parametrize("shape", [(1, 4), (5, 1), (3, 7)])
def test_harmonic_match_against_naive_on_random_tensors(shape):
    rows = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape))).tolist()
    assert harmonic_match(torch.tensor(rows)) == pytest.approx(_naive_match(rows))


def test_harmonic_match_is_zero_when_a_side_is_not_positive():
    # per column: max = -0.1, 0.4 -> mean 0.15 > 0; per row: max = 0.4, -0.2 -> mean 0.1; both positive
    assert harmonic_match(torch.tensor([[-0.1, 0.4], [-0.3, -0.2]])) == pytest.approx(2 * 0.15 * 0.1 / 0.25)
    # every similarity negative: precision and recall are both negative -> 0, not a negative "mean"
    assert harmonic_match(torch.tensor([[-0.5, -0.2]])) == 0.0


def test_extract_keywords_drops_stopwords_and_keeps_first_appearance_order():
    caption = "The video shows a man riding a red bike; the man waves. In the scene, a red car passes by."
    assert extract_keywords(caption) == ["man", "riding", "red", "bike", "waves", "car", "passes"]
    assert extract_keywords(caption, max_keywords=2) == ["man", "riding"]
    assert {"the", "video", "scene"} <= STOPWORDS


def test_split_sentences():
    assert split_sentences("A man rides. He waves!  Then? end") == ["A man rides.", "He waves!", "Then?", "end"]
    assert split_sentences("no sentence end") == ["no sentence end"]
    assert split_sentences("   ") == []


def test_frame_regions_tile_the_frame_exactly():
    frame = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    regions = frame_regions(frame, tiles=2)
    assert len(regions) == 5 and regions[0] is frame
    # the four tiles cover every pixel exactly once: rows 0-1 | 2-4, columns 0-2 | 3-5
    assert [r.shape[:2] for r in regions[1:]] == [(2, 3), (2, 3), (3, 3), (3, 3)]
    assert sum(r.size for r in regions[1:]) == frame.size
    assert frame_regions(frame, tiles=1) == [frame]


@pytest.fixture(scope="module")
def scorer():
    return EvqaScorer(str(tiny_model_path("clip")), num_frames=2, tiles=2, random_weights=True)


def _frames(seed, n=2):
    return list(np.random.default_rng(seed).integers(0, 256, size=(n, 40, 48, 3), dtype=np.uint8))


def test_evqa_score_equals_naive_recomputation_from_the_model(scorer):
    # Random weights: the value is meaningless, but it must be exactly the formula over the model's features.
    item = ScoringItem("c-Scene-001", _frames(0), "A red bike on a road. A man waves at the camera.")
    (result,) = scorer.score([item])
    processor, model = AutoProcessor.from_pretrained(tiny_model_path("clip")), scorer.encoder.model

    def embed_images(images):
        inputs = processor(images=[torch.from_numpy(i).permute(2, 0, 1) for i in images], return_tensors="pt")
        return torch.nn.functional.normalize(model.get_image_features(**inputs).pooler_output, dim=-1)

    def embed_texts(texts):
        inputs = processor(text=texts, padding=True, return_tensors="pt")
        return torch.nn.functional.normalize(model.get_text_features(**inputs).pooler_output, dim=-1)

    with torch.no_grad():
        frames = embed_images(item.frames)
        regions = embed_images([r for f in item.frames for r in frame_regions(f, 2)])
        sentences = embed_texts(split_sentences(item.caption))
        keywords = embed_texts(extract_keywords(item.caption))
    global_feature = torch.nn.functional.normalize(frames.mean(0, keepdim=True), dim=-1)
    expected_global = harmonic_match(global_feature @ sentences.T)
    expected_local = harmonic_match(regions @ keywords.T)
    assert result.details["global"] == pytest.approx(expected_global, abs=1e-5)
    assert result.details["local"] == pytest.approx(expected_local, abs=1e-5)
    assert result.score == pytest.approx((expected_global + expected_local) / 2, abs=1e-5)
    assert result.details["keywords"] == ["red", "bike", "road", "man", "waves", "camera"]


def test_evqa_batch_equals_one_by_one_and_failures_stay_on_their_clip(scorer):
    items = [
        ScoringItem("a", _frames(1), "A dog runs across a field."),
        ScoringItem("b", _frames(2), "the and of"),  # no content words
        ScoringItem("c", [], "A cat sleeps."),  # no frames
        ScoringItem("d", _frames(3, n=3), "Two kids play football near a lake. " * 40),  # longer than 77 tokens
    ]
    batch = scorer.score(items)
    assert [isinstance(r, Failed) for r in batch] == [False, True, True, False]
    assert "no content words" in batch[1].reason and "no frames" in batch[2].reason
    for item, result in zip(items, batch, strict=True):
        if not isinstance(result, Failed):
            assert scorer.score([item])[0].score == pytest.approx(result.score, abs=1e-5)


def test_evqa_refuses_a_model_without_dual_encoder_methods():
    # X-CLIP embeds videos, not images: it has no get_image_features
    with pytest.raises(ValueError, match=r"xclip.*\(XCLIPModel\) has no get_image_features: expected a CLIP-like"):
        EvqaScorer(str(tiny_model_path("xclip")))


@pytest.mark.parametrize(
    "reply, expected",
    [("8", 0.8), ("Score: 7.5/10", 0.75), ("0", 0.0), ("10.", 1.0), ("I'd say 11", None), ("great!", None)],
)
def test_judge_parses_the_first_number_and_fails_cleanly_otherwise(reply, expected):
    result = JudgeScorer._parse(ChatResult(text=reply))
    assert isinstance(result, Failed) if expected is None else result.score == pytest.approx(expected)
    if expected is None:
        assert result.reason.startswith("no rating 0-10 in") and result.details["reply"] == reply
    failed = JudgeScorer._parse(ChatResult(error="HTTP 500: boom"))
    assert isinstance(failed, Failed) and failed.reason == "judge call failed: HTTP 500: boom"


def test_judge_with_a_real_tiny_vlm_gives_one_result_per_clip():
    # Random weights: the replies are gibberish, so most scores fail to parse; what matters is one result per clip,
    # each either a rating in range or a failure quoting the reply, never an exception.
    backend = TransformersBackend(str(tiny_model_path("vlm")))
    scorer = JudgeScorer(backend, model="tiny-vlm", num_frames=2)
    assert scorer.settings()["image_processor"] == "CLIPImageProcessorPil"
    results = scorer.score([ScoringItem("a", _frames(4), "A dog runs."), ScoringItem("b", _frames(5), "A cat.")])
    assert len(results) == 2
    for result in results:
        assert (not isinstance(result, Failed) and 0 <= result.score <= 1) or result.reason.startswith("no rating")


def test_llm_keywords_with_a_real_tiny_causal_lm():
    keywords = LlmKeywords(TransformersBackend(str(tiny_model_path("causal-lm"))), max_keywords=5)
    (out,) = keywords(["A dog runs across a field."])
    # random weights: any comma-separated text is a keyword list; at most 5, lower-cased, no empty entries
    assert isinstance(out, Failed) or (0 < len(out) <= 5 and all(k and k == k.lower() for k in out))
