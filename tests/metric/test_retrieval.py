"""Tests of `lovr_metric.retrieval_metrics` against a naive full-matrix stable argsort and sentence-transformers.

    python -m pytest tests/metric/test_retrieval.py -q

Exactness: the naive reference ranks a full `texts @ videos.T` product, the core ranks products of row blocks.
The property tests use vectors with four entries of +-1 (norm 2, so normalised entries are exactly +-0.5) whose
scores are exact in any summation order: the two agree by construction, ties included.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lovr_metric import retrieval_metrics
from lovr_metric.lovr_retrieval.retrieval import pair_ranks
from lovr_standins.captions import SAMPLE_CAPTION_PAIRS


def assert_ranks_like_full_argsort(texts, videos, pair_text, pair_video, text_ranks, video_ranks):
    """The naive reference for `pair_ranks`: 1-based positions in a stable descending argsort of the full matrix."""
    scores = texts @ videos.T
    by_text = torch.argsort(torch.argsort(-scores, dim=1, stable=True), dim=1) + 1
    by_video = torch.argsort(torch.argsort(-scores.T, dim=1, stable=True), dim=1) + 1
    assert torch.equal(text_ranks, by_text[pair_text, pair_video])
    assert torch.equal(video_ranks, by_video[pair_video, pair_text])


def naive_metrics(texts, text_ids, videos, video_ids, k_values):
    """Full score matrix, stable argsort per query, metrics from plain Python loops."""
    texts = torch.nn.functional.normalize(torch.as_tensor(texts, dtype=torch.float32), dim=1)
    videos = torch.nn.functional.normalize(torch.as_tensor(videos, dtype=torch.float32), dim=1)
    scores = texts @ videos.T
    row = {video_id: i for i, video_id in enumerate(video_ids)}
    text_relevant = [{row[v] for v in ([ids] if isinstance(ids, str) else ids)} for ids in text_ids]
    video_relevant = [{t for t, rel in enumerate(text_relevant) if v in rel} for v in range(len(video_ids))]
    results = _naive_direction("text_to_video", scores, text_relevant, k_values)
    results.update(_naive_direction("video_to_text", scores.T, video_relevant, k_values))
    return results


def _naive_direction(prefix, scores, relevant, k_values):
    ranks = []
    for query, rel in enumerate(relevant):
        if rel:
            order = torch.argsort(-scores[query], stable=True).tolist()
            ranks.append(sorted(order.index(item) + 1 for item in rel))
    first = [r[0] for r in ranks]
    out = {f"{prefix}_pass@{k}": sum(f <= k for f in first) / len(first) for k in k_values}
    out.update(
        {f"{prefix}_recall@{k}": sum(sum(x <= k for x in r) / len(r) for r in ranks) / len(ranks) for k in k_values}
    )
    out[f"{prefix}_mrr"] = sum(1 / f for f in first) / len(first)
    dcg = [sum(1 / math.log2(x + 1) for x in r if x <= 10) for r in ranks]
    ideal = [sum(1 / math.log2(i + 2) for i in range(min(len(r), 10))) for r in ranks]
    out[f"{prefix}_ndcg@10"] = sum(d / i for d, i in zip(dcg, ideal, strict=True)) / len(ranks)
    out[f"{prefix}_median_rank"] = float(np.median(first))
    out[f"{prefix}_mean_rank"] = sum(first) / len(first)
    out[f"{prefix}_num_queries"] = len(first)
    return out


def assert_same(results, expected):
    assert set(results) == set(expected) | {"num_skipped_texts"}
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def exact_vectors(rng, n, dim=6):
    """Rows with four entries of +-1: every score is a multiple of 1/4, exact in float32."""
    x = np.zeros((n, dim), dtype=np.float32)
    for row in x:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-1.0, 1.0], 4)
    return x


def test_hand_example_with_a_tie():
    # Videos a and b are the same vector; c is orthogonal to them.
    # text 0 (relevant b): scores a=1, b=1, c=0; the tie goes to a (earlier), so b has rank 2.
    # text 1 (relevant c): c first, rank 1.
    # text_to_video: pass@1 = 1/2, MRR = (1/2 + 1) / 2 = 0.75, mean rank 1.5,
    # nDCG@10 = (1/log2(3) + 1) / 2 = 0.8155. video_to_text: video b ranks text 0 first, c ranks text 1 first.
    videos = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    texts = np.array([[2.0, 0.0], [0.0, 3.0]])
    results = retrieval_metrics(texts, ["b", "c"], videos, ["a", "b", "c"], k_values=(1, 2))
    assert results["text_to_video_pass@1"] == 0.5
    assert results["text_to_video_pass@2"] == 1.0
    assert results["text_to_video_mrr"] == 0.75
    assert results["text_to_video_mean_rank"] == 1.5
    assert results["text_to_video_ndcg@10"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert results["video_to_text_pass@1"] == 1.0
    assert results["video_to_text_num_queries"] == 2
    assert results["num_skipped_texts"] == 0


@settings(max_examples=60, deadline=None)
@given(
    num_texts=st.integers(1, 12),
    num_videos=st.integers(1, 12),
    pool=st.integers(1, 6),
    chunk_size=st.integers(1, 13),
    max_relevant=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_naive_reference(num_texts, num_videos, pool, chunk_size, max_relevant, seed):
    # Rows drawn from a small pool of exact vectors: many duplicated rows, hence many exact ties.
    rng = np.random.default_rng(seed)
    vectors = exact_vectors(rng, pool)
    texts = vectors[rng.integers(pool, size=num_texts)]
    videos = vectors[rng.integers(pool, size=num_videos)]
    video_ids = [f"v{i}" for i in rng.permutation(num_videos)]
    text_ids = []
    for _ in range(num_texts):
        chosen = rng.choice(video_ids, size=min(rng.integers(1, max_relevant + 1), num_videos), replace=False)
        text_ids.append(str(chosen[0]) if len(chosen) == 1 else [str(v) for v in chosen])
    k_values = (1, min(num_texts, num_videos))
    results = retrieval_metrics(texts, text_ids, videos, video_ids, k_values=k_values, chunk_size=chunk_size)
    assert_same(results, naive_metrics(texts, text_ids, videos, video_ids, k_values))


def _random_floats_with_duplicated_rows():
    generator = torch.Generator().manual_seed(0)
    texts = torch.nn.functional.normalize(torch.randn(53, 32, generator=generator), dim=1)
    videos = torch.nn.functional.normalize(torch.randn(41, 32, generator=generator), dim=1)
    texts[7], videos[30], videos[31] = texts[2], videos[4], videos[4]
    pair_text = torch.arange(53)
    pair_video = torch.randint(0, 41, (53,), generator=generator)
    pair_video[0], pair_video[2], pair_video[7] = 31, 4, 4
    return texts, videos, pair_text, pair_video


def test_random_floats_with_duplicated_rows_rank_like_full_argsort():
    texts, videos, pair_text, pair_video = _random_floats_with_duplicated_rows()
    text_ranks, video_ranks = pair_ranks(texts, videos, pair_text, pair_video, chunk_size=7)
    assert_ranks_like_full_argsort(texts, videos, pair_text, pair_video, text_ranks, video_ranks)


def test_worker_threads_give_the_same_ranks_every_call():
    # Two worker threads, each of which must run its products single-threaded: a worker left at the default thread
    # count let the BLAS split some products differently from call to call, and near-tied scores (texts 11 and 13
    # here) moved by one rank in about one call of six.
    texts, videos, pair_text, pair_video = _random_floats_with_duplicated_rows()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ranks = {
            tuple(torch.cat(pair_ranks(texts, videos, pair_text, pair_video, chunk_size=7)).tolist())
            for _ in range(60)
        }
    finally:
        torch.set_num_threads(threads)
    assert len(ranks) == 1


@settings(max_examples=40, deadline=None)
@given(
    num_texts=st.integers(1, 30),
    num_videos=st.integers(1, 30),
    chunk_size=st.integers(1, 9),
    tile_videos=st.integers(1, 9),
    count_rows=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_tiles_of_texts_and_videos_rank_like_full_argsort(
    num_texts, num_videos, chunk_size, tile_videos, count_rows, seed
):
    # Tiles narrower than the gallery, counted in slices of fewer texts: counts add up across video tiles, text
    # chunks and slices, ties included.
    rng = np.random.default_rng(seed)
    vectors = torch.tensor(exact_vectors(rng, 5)) / 2
    texts, videos = vectors[rng.integers(5, size=num_texts)], vectors[rng.integers(5, size=num_videos)]
    pair_text = torch.tensor(np.sort(rng.integers(num_texts, size=num_texts + 3)))
    pair_video = torch.tensor(rng.integers(num_videos, size=num_texts + 3))
    text_ranks, video_ranks = pair_ranks(texts, videos, pair_text, pair_video, chunk_size, tile_videos, count_rows)
    assert_ranks_like_full_argsort(texts, videos, pair_text, pair_video, text_ranks, video_ranks)


@settings(max_examples=40, deadline=None)
@given(
    num_items=st.integers(1, 20),
    chunk_size=st.integers(1, 7),
    tile_videos=st.integers(1, 7),
    count_rows=st.integers(1, 3),
    zero_sign=st.sampled_from([1.0, -1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_own_items_at_every_tile_position_with_ties_on_both_sides(
    num_items, chunk_size, tile_videos, count_rows, zero_sign, seed
):
    # Two vectors and their negation: every row ties with many others at its own score, before and after its own
    # index, and scores of 0 are common. Each text's own video is its index (plus a shifted copy), so own items
    # fall at every position of the tiles, edges included. Zero pair scores get the sign `zero_sign` (-0.0 ==
    # 0.0, so no recount follows): "> -0.0" must count like "> 0.0".
    import lovr_metric.lovr_retrieval._tiled_ranks as retrieval

    def signed_zero_pair_scores(*args):
        scores = exact_pair_scores(*args)
        return torch.where(scores == 0, zero_sign * scores.abs(), scores)

    exact_pair_scores = retrieval._pair_scores
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(retrieval, "_pair_scores", signed_zero_pair_scores)
        _check_own_items_everywhere(seed, num_items, chunk_size, tile_videos, count_rows)


def _check_own_items_everywhere(seed, num_items, chunk_size, tile_videos, count_rows):
    rng = np.random.default_rng(seed)
    pool = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, -0.5, 0.5, -0.5], [-0.5, -0.5, -0.5, -0.5]])
    texts, videos = pool[rng.integers(3, size=num_items)], pool[rng.integers(3, size=num_items)]
    own = torch.arange(num_items)
    pair_text = torch.cat([own, own]).sort(stable=True).values
    pair_video = torch.stack([own, (own + 1 + rng.integers(num_items)) % num_items], dim=1).flatten()
    text_ranks, video_ranks = pair_ranks(texts, videos, pair_text, pair_video, chunk_size, tile_videos, count_rows)
    assert_ranks_like_full_argsort(texts, videos, pair_text, pair_video, text_ranks, video_ranks)


def test_one_pair_per_text_and_video_in_narrow_tiles():
    # Identity pairs are counted in place (no gathered rows or columns); duplicated rows tie at the own score.
    rng = np.random.default_rng(11)
    vectors = torch.tensor(exact_vectors(rng, 3)) / 2
    texts, videos = vectors[rng.integers(3, size=23)], vectors[rng.integers(3, size=23)]
    own = torch.arange(23)
    text_ranks, video_ranks = pair_ranks(texts, videos, own, own, chunk_size=5, tile_videos=4, count_rows=2)
    assert_ranks_like_full_argsort(texts, videos, own, own, text_ranks, video_ranks)


def test_single_query_and_float_dtypes():
    rng = np.random.default_rng(1)
    videos = rng.normal(size=(9, 8))
    texts = videos[[4]] + 0.01 * rng.normal(size=(1, 8))
    ids = [f"clip-{i}" for i in range(9)]
    reference = retrieval_metrics(texts, ["clip-4"], videos, ids, k_values=(1,))
    assert reference["text_to_video_pass@1"] == 1.0 and reference["text_to_video_num_queries"] == 1
    assert reference["video_to_text_num_queries"] == 1  # only clip-4 has a relevant text
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        lowered = retrieval_metrics(
            torch.tensor(texts, dtype=dtype), ["clip-4"], torch.tensor(videos), ids, k_values=(1,)
        )
        assert lowered["text_to_video_pass@1"] == 1.0


def test_skip_missing_reports_the_skipped_texts():
    videos = np.eye(3)
    texts = np.eye(3)
    results = retrieval_metrics(
        texts, ["a", "gone", ["c", "lost"]], videos, ["a", "b", "c"], k_values=(1,), skip_missing=True
    )
    assert results["num_skipped_texts"] == 2
    assert results["text_to_video_num_queries"] == 1 and results["text_to_video_pass@1"] == 1.0


def test_agrees_with_sentence_transformers_information_retrieval(minilm):
    # Real captions embedded by the real all-MiniLM-L6-v2: scores are tie-free, so both libraries rank alike.
    # The gallery holds 8 paraphrases, so MRR@8 is the untruncated MRR.
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim

    pairs = SAMPLE_CAPTION_PAIRS[:8]
    queries = {f"q{i}": caption for i, (caption, _) in enumerate(pairs)}
    corpus = {f"c{i}": paraphrase for i, (_, paraphrase) in enumerate(pairs)}
    relevant = {f"q{i}": {f"c{i}"} for i in range(8)}
    relevant["q0"] = {"c0", "c4"}  # a multi-positive query
    evaluator = InformationRetrievalEvaluator(
        queries,
        corpus,
        relevant,
        accuracy_at_k=[1, 3],
        precision_recall_at_k=[1, 3],
        mrr_at_k=[8],
        ndcg_at_k=[10],
        map_at_k=[8],
        write_csv=False,
        score_functions={"cosine": cos_sim},
    )
    theirs = evaluator.compute_all_metrics(minilm)
    theirs = theirs["cosine"]
    text_emb = minilm.encode(list(queries.values()), convert_to_numpy=True)
    video_emb = minilm.encode(list(corpus.values()), convert_to_numpy=True)
    text_ids = [sorted(relevant[q]) for q in queries]
    ours = retrieval_metrics(text_emb, text_ids, video_emb, list(corpus), k_values=(1, 3))
    for k in (1, 3):
        assert ours[f"text_to_video_pass@{k}"] == pytest.approx(theirs["accuracy@k"][k])
        assert ours[f"text_to_video_recall@{k}"] == pytest.approx(theirs["recall@k"][k])
    assert ours["text_to_video_mrr"] == pytest.approx(theirs["mrr@k"][8])
    assert ours["text_to_video_ndcg@10"] == pytest.approx(theirs["ndcg@k"][10])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_tensors_rank_on_gpu_like_cpu():
    rng = np.random.default_rng(3)
    texts, videos = exact_vectors(rng, 40), exact_vectors(rng, 30)
    text_ids = [f"v{i}" for i in rng.integers(30, size=40)]
    video_ids = [f"v{i}" for i in range(30)]
    cpu = retrieval_metrics(texts, text_ids, videos, video_ids, chunk_size=7)
    gpu = retrieval_metrics(torch.tensor(texts).cuda(), text_ids, torch.tensor(videos).cuda(), video_ids, chunk_size=7)
    assert gpu == cpu


def test_recount_when_pair_scores_differ_from_the_blocks(monkeypatch):
    # Force every pre-computed pair score one float step off, as a BLAS that computes a row differently in
    # another block would: the second pass must recount video -> text with the block values and still be exact.
    import lovr_metric.lovr_retrieval._tiled_ranks as retrieval

    exact_pair_scores = retrieval._pair_scores
    monkeypatch.setattr(
        retrieval,
        "_pair_scores",
        lambda *args: torch.nextafter(exact_pair_scores(*args), torch.tensor(float("inf"))),
    )
    rng = np.random.default_rng(5)
    vectors = exact_vectors(rng, 4)
    texts, videos = vectors[rng.integers(4, size=17)], vectors[rng.integers(4, size=13)]
    video_ids = [f"v{i}" for i in range(13)]
    text_ids = [[f"v{i}", f"v{(i + 5) % 13}"] for i in rng.integers(13, size=17)]
    results = retrieval_metrics(texts, text_ids, videos, video_ids, k_values=(1, 5), chunk_size=4)
    assert_same(results, naive_metrics(texts, text_ids, videos, video_ids, (1, 5)))


def test_few_queries_off_first_place_match_reference():
    # Texts equal their videos, so nearly every query ranks first and only a few rows need the strict count
    # (the gathered path); duplicated vectors still make exact ties among them.
    rng = np.random.default_rng(7)
    videos = exact_vectors(rng, 40)
    videos[11] = videos[3]
    video_ids = [f"v{i}" for i in range(40)]
    text_ids = list(video_ids)
    text_ids[5], text_ids[17], text_ids[11] = "v9", ["v2", "v30"], "v3"
    results = retrieval_metrics(videos.copy(), text_ids, videos, video_ids, k_values=(1, 5), chunk_size=20)
    assert_same(results, naive_metrics(videos, text_ids, videos, video_ids, (1, 5)))


def test_pair_scores_split_over_threads_are_those_of_one_thread():
    # The pair scores that precede the pass are computed block by block on several threads at once (as the pass
    # splits its chunks): every block must write its own pairs, whichever thread runs it, with the same numbers.
    import lovr_metric.lovr_retrieval._tiled_ranks as retrieval

    rng = np.random.default_rng(11)
    texts = torch.nn.functional.normalize(torch.tensor(rng.standard_normal((1500, 64)), dtype=torch.float32), dim=1)
    videos = torch.nn.functional.normalize(torch.tensor(rng.standard_normal((700, 64)), dtype=torch.float32), dim=1)
    pair_text = torch.sort(torch.tensor(rng.integers(1500, size=2000))).values
    pair_video = torch.tensor(rng.integers(700, size=2000))
    with retrieval._single_threaded_ops():  # as the pass runs it: one thread's products, against the workers'
        alone = retrieval._pair_scores(texts, videos, pair_text, pair_video, 256, workers=1)
    split = retrieval._pair_scores(texts, videos, pair_text, pair_video, 256, workers=3)
    assert torch.equal(split, alone)
    assert torch.allclose(alone, (texts[pair_text] * videos[pair_video]).sum(1), atol=1e-5)
