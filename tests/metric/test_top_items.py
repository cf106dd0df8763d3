"""The top items the core's tiled pass keeps (`rank_pass(top=k)`, `_tiled_top`), against an exact reference: each
score a sum of exact products of the embeddings in rational arithmetic, a stable sort by it (ties to the earlier
item). The core scores in float64, which agrees wherever no two scores lie within float64's rounding (about 1e-13),
as in every case here; the near ties below sit about 1e-10 apart, far below what float32 resolves. Tiles as small
as one text by one video put copies of an embedding in different products.

    python -m pytest tests/metric/test_top_items.py -q
"""

from fractions import Fraction

import numpy as np
import pytest
import torch

from lovr_metric.lovr_retrieval import _tiled_top
from lovr_metric.lovr_retrieval._tiled_ranks import rank_pass
from lovr_metric.lovr_retrieval._tiled_top import TOP_MARGIN

TILINGS = [(1, 1, 1), (5, 3, 2), (7, 4, 3), (64, 64, 64)]  # texts per tile, videos per tile, texts counted at a time


def exact_top(queries: torch.Tensor, items: torch.Tensor, k: int) -> list[list[int]]:
    """Per query, its k best items by the exact dot product, ties to the earlier item."""
    rows = [[Fraction(x) for x in row] for row in items.double().tolist()]
    out = []
    for query in queries.double().tolist():
        query = [Fraction(x) for x in query]
        scores = [sum(a * b for a, b in zip(query, row, strict=True)) for row in rows]
        out.append(sorted(range(len(rows)), key=lambda j: (-scores[j], j))[:k])
    return out


def unit(rows: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(rows, dim=1)


def top_of(texts, videos, k, tiling=(64, 64, 64)):
    pairs = torch.arange(texts.shape[0])
    ranked = rank_pass(texts, videos, pairs, pairs % videos.shape[0], *tiling, top=k)
    return ranked.text_top.tolist(), ranked.video_top.tolist()


@pytest.mark.parametrize("tiling", TILINGS)
@pytest.mark.parametrize("seed", range(4))
def test_top_items_are_the_exact_ones_whatever_the_tiles(seed, tiling):
    # Texts and videos drawn from few vectors: copies tie exactly, the earlier one first, across tiles.
    generator = torch.Generator().manual_seed(seed)
    text_base, video_base = unit(torch.randn(4, 6, generator=generator)), unit(torch.randn(5, 6, generator=generator))
    texts = text_base[torch.randint(0, 4, (37,), generator=generator)]
    videos = video_base[torch.randint(0, 5, (23,), generator=generator)] if seed % 2 else unit(torch.randn(23, 6))
    text_top, video_top = top_of(texts, videos, 10, tiling)
    assert text_top == exact_top(texts, videos, 10)
    assert video_top == exact_top(videos, texts, 10)


@pytest.mark.parametrize("seed", range(2))
def test_first_tiles_offered_from_their_block_maxima_keep_the_exact_top(seed):
    # Tiles of 143 x 143: a query's first tile is offered from the bound its 71 blocks' maxima give (one item past the
    # last block), texts and videos alike, and the last tile is narrower; copies tie within and across blocks.
    generator = torch.Generator().manual_seed(seed)
    text_base, video_base = unit(torch.randn(7, 6, generator=generator)), unit(torch.randn(9, 6, generator=generator))
    texts = text_base[torch.randint(0, 7, (200,), generator=generator)]
    videos = video_base[torch.randint(0, 9, (190,), generator=generator)] if seed else unit(torch.randn(190, 6))
    text_top, video_top = top_of(texts, videos, 10, (143, 143, 50))
    assert text_top == exact_top(texts, videos, 10)
    assert video_top == exact_top(videos, texts, 10)


@pytest.mark.parametrize("flush_denormal", [False, True])
def test_a_first_tile_bounded_at_zero_keeps_its_zeros(flush_denormal):
    # The first tile of each text holds one video scoring 1 and 142 scoring exactly 0, so its bound is 0; the second
    # tile's 47 videos all score below 0. The scores equal to the bound are offered too, denormals flushed or not,
    # or the zeros of the top would be lost to the negatives.
    axes = torch.eye(4)
    below = torch.stack([unit((-(0.1 + 0.01 * j) * axes[0] + axes[2])[None])[0] for j in range(47)])
    videos = torch.cat([axes[0:1], axes[1].repeat(142, 1), below])
    texts = axes[0].repeat(3, 1)
    if flush_denormal and not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        text_top, _ = top_of(texts, videos, 10, (143, 143, 50))
    finally:
        torch.set_flush_denormal(False)  # torch's default; it offers no way to read the setting back
    assert text_top == exact_top(texts, videos, 10) == [list(range(10))] * 3


def test_top_items_of_distinct_embeddings_at_a_larger_scale():
    generator = torch.Generator().manual_seed(0)
    videos = unit(torch.randn(300, 32, generator=generator))
    texts = unit(videos[torch.arange(260) % 300] + 0.5 * torch.randn(260, 32, generator=generator))
    text_top, video_top = top_of(texts, videos, 10, (64, 128, 32))
    # No two scores here lie within 1e-12 of each other: a float64 product orders them exactly.
    scores = (texts.double() @ videos.double().T).numpy()
    assert np.diff(np.sort(scores, axis=1), axis=1).min() > 1e-12
    assert text_top == np.argsort(-scores, axis=1, kind="stable")[:, :10].tolist()
    assert video_top == np.argsort(-scores.T, axis=1, kind="stable")[:, :10].tolist()


def test_the_stable_tie_rule_on_a_hand_made_gallery():
    videos = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8], [1.0, 0.0]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Text 0 ties videos 0, 2 and 4 (score 1): earlier first, and the third tie is cut at k = 2.
    assert top_of(texts, videos, 2, (1, 2, 1))[0] == [[0, 2], [1, 3]]
    assert top_of(texts, videos, 4, (1, 2, 1))[0] == [[0, 2, 4, 3], [1, 3, 0, 2]]


def nudged_up(text: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    """`video` with one entry moved one float32 step the way that raises its score with `text`: about 1e-10 higher,
    far below what a float32 product resolves."""
    nudged = video.clone()
    column = int(torch.argmax(text[0].abs() * (video[0].abs() > 0.01)))
    direction = torch.sign(text[0, column]) * 2 * nudged[0, column].abs() + nudged[0, column]
    nudged[0, column] = torch.nextafter(nudged[0, column], direction)
    return nudged


def test_a_tie_closer_than_float32_can_resolve_is_ordered_exactly():
    # The nudged copy comes second: float32 ties the two (or swaps them), the exact order puts it first.
    generator = torch.Generator().manual_seed(3)
    text = unit(torch.randn(1, 512, generator=generator))
    video = unit(text + 0.01 * torch.randn(1, 512, generator=generator))
    videos = torch.cat([video, nudged_up(text, video), unit(torch.randn(30, 512, generator=generator))])
    expected = exact_top(text, videos, 10)
    float32 = (text @ videos.T)[0]
    assert expected[0][:2] == [1, 0] and float32[1] <= float32[0]
    assert top_of(text, videos, 10, (1, 1, 1))[0] == expected
    assert top_of(text, videos, 10)[0] == expected


def test_a_near_tie_at_the_edge_of_the_top_k_is_settled_exactly():
    # Nine clearly best videos, then two whose scores differ by about 1e-10 for 10th place, the better one later in
    # the gallery: only an exact look at the 10th and 11th decides which one is in.
    generator = torch.Generator().manual_seed(5)
    text = unit(torch.randn(1, 512, generator=generator))
    best = unit(text + 0.05 * torch.randn(9, 512, generator=generator))
    edge = unit(text + 0.15 * torch.randn(1, 512, generator=generator))
    rest = unit(torch.randn(20, 512, generator=generator))
    videos = torch.cat([edge, best, nudged_up(text, edge), rest])
    expected = exact_top(text, videos, 10)
    assert 10 in expected[0] and 0 not in expected[0]
    assert top_of(text, videos, 10)[0] == expected
    assert top_of(text, videos, 10, (1, 4, 1))[0] == expected


def test_a_crowded_top_is_ranked_against_every_item():
    # 40 copies of one video among 60: a text's kept items all tie, so they prove nothing about the others.
    generator = torch.Generator().manual_seed(1)
    copies = unit(torch.randn(1, 8, generator=generator)).expand(40, -1)
    order = torch.randperm(60, generator=generator)
    videos = torch.cat([unit(torch.randn(20, 8, generator=generator)), copies])[order]
    texts = unit(copies[:3] + 0.01 * torch.randn(3, 8, generator=generator))
    text_top, _ = top_of(texts, videos, 10, (2, 7, 1))
    assert text_top == exact_top(texts, videos, 10)
    assert 40 > 10 + TOP_MARGIN


def test_fewer_items_than_k():
    texts, videos = unit(torch.randn(5, 4)), unit(torch.randn(3, 4))
    text_top, video_top = top_of(texts, videos, 10, (2, 2, 1))
    assert text_top == exact_top(texts, videos, 10) and all(len(row) == 3 for row in text_top)
    assert video_top == exact_top(videos, texts, 10) and all(len(row) == 5 for row in video_top)


def test_float64_embeddings():
    generator = torch.Generator().manual_seed(2)
    videos = unit(torch.randn(40, 16, dtype=torch.float64, generator=generator))
    texts = unit(videos[:30] + 0.3 * torch.randn(30, 16, dtype=torch.float64, generator=generator))
    text_top, video_top = top_of(texts, videos, 10, (8, 16, 4))
    assert text_top == exact_top(texts, videos, 10)
    assert video_top == exact_top(videos, texts, 10)


def test_without_top_the_pass_keeps_nothing():
    texts = unit(torch.randn(6, 4))
    ranked = rank_pass(texts, texts, torch.arange(6), torch.arange(6), 4)
    assert ranked.text_top is None and ranked.video_top is None
    assert np.array_equal(ranked.text_ranks.numpy(), np.ones(6))


@pytest.mark.parametrize("tiling", TILINGS)
def test_several_runs_of_near_ties_in_one_top_are_each_ordered_exactly(tiling, monkeypatch):
    # One text's top holds a run of three near-tied videos (each about 1e-10 above the last, the better ones later in
    # the gallery), clearly better and clearly worse videos around it, and a near-tied pair at the edge of its top 10:
    # only those five are scored again, each run sorted apart, and the items between them keep their places.
    generator = torch.Generator().manual_seed(8)
    text = unit(torch.randn(1, 512, generator=generator))
    first = unit(text + 0.1 * torch.randn(1, 512, generator=generator))
    run = [first, nudged_up(text, first)]
    run.append(nudged_up(text, run[1]))
    edge = unit(text + 0.15 * torch.randn(1, 512, generator=generator))
    best = unit(text + 0.05 * torch.randn(4, 512, generator=generator))
    middle = unit(text + 0.12 * torch.randn(2, 512, generator=generator))
    rest = unit(torch.randn(15, 512, generator=generator))
    videos = torch.cat([*run, edge, best, middle, nudged_up(text, edge), rest])
    expected = exact_top(text, videos, 10)
    assert expected[0][expected[0].index(2) : expected[0].index(2) + 3] == [2, 1, 0]
    assert 10 in expected[0] and 3 not in expected[0]
    scored = []
    exact_scores = _tiled_top.exact_scores
    monkeypatch.setattr(_tiled_top, "exact_scores", lambda q, i: scored.append(i.shape[:2]) or exact_scores(q, i))
    assert top_of(text, videos, 10, tiling)[0] == expected
    assert scored == [(5, 1)]  # the three of the run and the two at the edge, each pair on its own
