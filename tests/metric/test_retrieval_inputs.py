"""Tests of `lovr_metric.retrieval_metrics` on bad and extreme input: each bad input is a `ValueError` that names it,
and entries of extreme magnitude rank as their directions do.

    python -m pytest tests/metric/test_retrieval_inputs.py -q
"""

import numpy as np
import pytest
import torch

from lovr_metric import retrieval_metrics


def _valid():
    return {
        "text_embeddings": np.eye(3, 4),
        "text_ids": ["a", ["b", "c"], "c"],
        "video_embeddings": np.eye(3, 4),
        "video_ids": ["a", "b", "c"],
        "k_values": (1, 2),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_embeddings": np.ones(3)}, r"`text_embeddings` must be 2-D .* got shape \(3,\)"),
        ({"video_embeddings": np.ones((3, 5))}, r"same dimension, but got 4 and 5"),
        ({"video_embeddings": np.array([[1.0, 0, 0, 0], [np.nan, 0, 0, 0], [0, 0, 1, 0]])}, r"finite, but rows \[1\]"),
        ({"text_embeddings": np.array([[np.inf, 0, 0, 0]] * 3)}, r"`text_embeddings` must be finite"),
        ({"video_embeddings": np.zeros((0, 4)), "video_ids": []}, r"non-empty, but got shape \(0, 4\)"),
        ({"text_embeddings": np.eye(3, 4, dtype=np.int64)}, r"must hold floats, but got dtype torch.int64"),
        ({"text_embeddings": [[1.0, 0.0]]}, r"numpy array or a torch tensor, but got list"),
        ({"video_ids": ["a", "b", "a"]}, r"`video_ids` must be unique, .* \['a'\]"),
        ({"video_ids": ["a", "b"]}, r"`video_ids` has 2 entries but `video_embeddings` has 3 rows"),
        ({"text_ids": ["a", "b"]}, r"`text_ids` has 2 entries but `text_embeddings` has 3 rows"),
        ({"text_ids": ["a", "zz", ["c", "yy"]]}, r"2 texts name video ids that are not in `video_ids` .*'zz'.*'yy'"),
        ({"text_ids": ["a", [], "c"]}, r"`text_ids\[1\]` must be a video id .* got \[\]"),
        ({"text_ids": ["a", 7, "c"]}, r"`text_ids\[1\]` must be a video id .* got 7"),
        ({"k_values": (0, 1)}, r"`k_values` must be integers in \[1, 3\] .* got 0"),
        ({"k_values": (4,)}, r"`k_values` must be integers in \[1, 3\] .* got 4"),
        ({"k_values": ()}, r"at least one k"),
    ],
)
def test_bad_input_raises_value_error_naming_it(change, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(**{**_valid(), **change})


def test_bad_block_options_and_all_texts_skipped():
    with pytest.raises(ValueError, match=r"`chunk_size` must be a positive int, but got 0"):
        retrieval_metrics(**_valid(), chunk_size=0)
    with pytest.raises(ValueError, match=r"`max_block_bytes` must be a positive int, but got -1"):
        retrieval_metrics(**_valid(), max_block_bytes=-1)
    with pytest.raises(ValueError, match=r"No text is left to evaluate: all 3 texts"):
        retrieval_metrics(**{**_valid(), "text_ids": ["x", "y", "z"]}, skip_missing=True)


# Three orthogonal rows of four entries +-1 (norm 2): each text's own video scores 1, every other 0.
ORTHOGONAL = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]])


@pytest.mark.parametrize(("dtype", "scale"), [(np.float32, 1e19), (np.float32, 3e38), (np.float64, 1e160)])
def test_huge_finite_entries_rank_like_unit_vectors(dtype, scale):
    # Entries of 1e19 square to 1e38 and four of them sum past float32's 3.4e38 (float64: 1e320 past 1.8e308): a
    # plain norm is inf and every row becomes 0, so all scores tie and each text ranks video "a" first (pass@1 =
    # 1/3). Rescaled first, each text ranks its own video first: pass@1 = 1, MRR = 1, both directions.
    ids = ["a", "b", "c"]
    rows = (ORTHOGONAL * scale).astype(dtype)
    assert np.isfinite(rows).all()
    results = retrieval_metrics(rows, ids, rows.copy(), ids, k_values=(1,))
    for direction in ("text_to_video", "video_to_text"):
        assert results[f"{direction}_pass@1"] == 1.0 and results[f"{direction}_mrr"] == 1.0


def test_tiny_finite_entries_rank_like_unit_vectors():
    # In float32 1e-25 and 1e-30 square to 0: a plain norm is 0, clamped to 1e-12, so video a becomes
    # 1e-13 * (1, 0) and b 1e-18 * (1, 1), and the text (1, 1) scores a (7e-14) above its own b (1.4e-18): rank 2.
    # Rescaled first, a is (1, 0) and b (0.707, 0.707): b scores 1 and a 0.707, so b ranks first.
    videos = np.array([[1e-25, 0.0], [1e-30, 1e-30]], dtype=np.float32)
    results = retrieval_metrics(np.array([[1.0, 1.0]], dtype=np.float32), ["b"], videos, ["a", "b"], k_values=(1,))
    assert results["text_to_video_pass@1"] == 1.0 and results["text_to_video_mean_rank"] == 1.0


def test_ordinary_rows_normalise_as_torch_does_and_extreme_rows_to_unit_length():
    # The fast path (plain division) gives torch.nn.functional.normalize's numbers bit for bit; rows of extreme
    # magnitude match the float64 normalisation of the same row to float32 rounding.
    from lovr_metric.lovr_retrieval._retrieval_inputs import unit_rows

    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(64, 512, generator=generator)
    rows[5] *= 1e19
    rows[9] *= 1e-30
    unit = unit_rows("rows", rows, str)
    ordinary = [row for row in range(64) if row not in (5, 9)]
    assert torch.equal(unit[ordinary], torch.nn.functional.normalize(rows[ordinary], dim=1))
    reference = torch.nn.functional.normalize(rows.double() / rows.double().abs().amax(1, keepdim=True), dim=1)
    assert torch.allclose(unit[[5, 9]].double(), reference[[5, 9]], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # A zero text scores 0 with every video: all tie, so its target "a", first in the gallery, would be rank 1.
        (
            {"text_embeddings": np.array([[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])},
            r"`text_embeddings` has 2 all-zero rows \(text_ids\[1\]=\['b', 'c'\], text_ids\[2\]='c'\)",
        ),
        (
            {"video_embeddings": np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])},
            r"`video_embeddings` has 1 all-zero rows \(video_ids\[2\]='c'\); a zero vector has no direction",
        ),
    ],
)
def test_all_zero_rows_are_refused_naming_them(change, message):
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(**{**_valid(), **change})


def test_zero_rows_of_skipped_texts_are_named_by_their_position():
    # Text 0 names a missing id and is skipped; the zero text is text 1 of the input, row 0 of what is ranked.
    texts = np.array([[1.0, 0.0], [0.0, 0.0]])
    with pytest.raises(ValueError, match=r"1 all-zero rows \(text_ids\[1\]='a'\)"):
        retrieval_metrics(texts, ["gone", "a"], np.eye(2), ["a", "b"], k_values=(1,), skip_missing=True)
