"""Text <-> video retrieval metrics for LoVR, in plain torch (no `evaluate` import).

```python
from lovr_metric import retrieval_metrics
scores = retrieval_metrics(text_embeddings, text_ids, video_embeddings, video_ids, k_values=(1, 5, 10))
```

Both directions come from one chunked pass over the score matrix, which is never materialised: each block holds
the cosine similarities of a few texts against every video. A relevant item's rank is that of a stable sort by
descending score (a tie goes to the item earlier in the gallery), counted exactly as
`1 + #(scores > own score) + #(earlier items with score == own score)`.

Exactness: a score is the value the block's matrix product computes. The text -> video threshold (the relevant
video's score) is read from the block that is being counted, so it is always the same number. The video -> text
threshold of a pair is needed in every block before the pair's own block is reached; it is first taken from a
small product of the same text rows against the relevant videos only (bitwise equal on the BLAS libraries we
tried), then checked against the block's value; any pair where they differ is recounted in a second pass with the
exact value. The result therefore equals a stable argsort of the block-computed matrix, and a naive full-matrix
argsort wherever the BLAS gives the same numbers for a row whichever block computes it (tests/metric checks both).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from ._retrieval_inputs import check_inputs, check_k_values

# CPU: 16 MiB blocks (about 100 texts x 40,804 videos) ran faster than 4 MiB ones here: larger products and fewer
# per-block vector ops outweigh the L2 cache misses of the counting passes. GPUs want large blocks.
DEFAULT_BLOCK_BYTES = {"cpu": 16 * 2**20, "cuda": 512 * 2**20}
NDCG_CUTOFF = 10
# Rows per block of the pair-score product that precedes the pass: few, cheap products.
GUESS_ROWS = 256


def retrieval_metrics(
    text_embeddings,
    text_ids,
    video_embeddings,
    video_ids,
    k_values=(1, 5, 10),
    *,
    chunk_size: int | None = None,
    max_block_bytes: int | None = None,
    skip_missing: bool = False,
    device: str | torch.device | None = None,
) -> dict[str, float]:
    """Rank all videos for every text and all texts for every video that has a relevant text.

    Args:
        text_embeddings (`np.ndarray` or `torch.Tensor` of shape `(T, d)`): any float dtype; L2-normalised here.
        text_ids (`list`): for each text the id of its relevant video, or a list of ids when several are relevant.
        video_embeddings (`np.ndarray` or `torch.Tensor` of shape `(V, d)`): the gallery.
        video_ids (`list[str]`): V unique ids, one per row of `video_embeddings`.
        k_values (`tuple[int]`, defaults to `(1, 5, 10)`): cut-offs for pass@k and recall@k.
        chunk_size (`int`, *optional*): texts per score block; by default derived from `max_block_bytes`.
        max_block_bytes (`int`, *optional*): memory budget of one score block (defaults to 16 MiB on CPU, 512 MiB
            on GPU); peak memory is a small multiple of it on top of the inputs.
        skip_missing (`bool`, defaults to `False`): skip texts naming ids absent from `video_ids` instead of raising;
            the count is returned as `num_skipped_texts`.
        device (`str` or `torch.device`, *optional*): where to rank; by default where `text_embeddings` lives.

    Returns:
        `dict`: for `d` in `text_to_video`, `video_to_text`: `{d}_pass@{k}` (at least one relevant item in the top
        k), `{d}_recall@{k}` (share of the relevant items in the top k), `{d}_mrr`, `{d}_ndcg@10`,
        `{d}_median_rank`, `{d}_mean_rank` (1-based rank of the first relevant item), `{d}_num_queries`; and
        `num_skipped_texts`.
    """
    inputs = check_inputs(text_embeddings, text_ids, video_embeddings, video_ids, skip_missing, device)
    num_texts, num_videos = inputs.texts.shape[0], inputs.videos.shape[0]
    k_values = check_k_values(k_values, num_videos, num_texts)
    chunk_size = _chunk_size(chunk_size, max_block_bytes, inputs.videos)

    text_ranks, video_ranks = pair_ranks(inputs.texts, inputs.videos, inputs.pair_text, inputs.pair_video, chunk_size)
    results = _direction_metrics("text_to_video", inputs.pair_text, text_ranks, k_values)
    results.update(_direction_metrics("video_to_text", inputs.pair_video, video_ranks, k_values))
    results["num_skipped_texts"] = inputs.num_skipped
    return results


def _chunk_size(chunk_size, max_block_bytes, videos: torch.Tensor) -> int:
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"`chunk_size` must be a positive int, but got {chunk_size!r}.")
        return chunk_size
    if max_block_bytes is None:
        max_block_bytes = DEFAULT_BLOCK_BYTES["cpu" if videos.device.type == "cpu" else "cuda"]
    if isinstance(max_block_bytes, bool) or not isinstance(max_block_bytes, int) or max_block_bytes < 1:
        raise ValueError(f"`max_block_bytes` must be a positive int, but got {max_block_bytes!r}.")
    return max(1, max_block_bytes // (videos.shape[0] * videos.element_size()))


def pair_ranks(texts, videos, pair_text, pair_video, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """1-based stable ranks of every relevant (text, video) pair: of the video among all videos for the text,
    and of the text among all texts for the video. `texts`, `videos` are normalised; pairs are sorted by text."""
    # On CPU, threads scan whole blocks with single-threaded ops: the small counting ops that follow each product
    # then never wait on a thread-pool barrier, which costs more than the ops themselves on a busy machine.
    workers = torch.get_num_threads() if texts.device.type == "cpu" else 1
    with _single_threaded_ops() if workers > 1 else nullcontext():
        guess = _pair_scores(texts, videos, pair_text, pair_video, chunk_size)
        text_ranks, exact, video_ahead = _scan(texts, videos, pair_text, pair_video, guess, chunk_size, workers)
        stale = torch.nonzero(exact != guess).flatten()
        if stale.numel():
            recount = _scan(texts, videos, pair_text[stale], pair_video[stale], exact[stale], chunk_size, workers)
            video_ahead[stale] = recount[2]
    return text_ranks, video_ahead + 1


def _pair_scores(texts, videos, pair_text, pair_video, chunk_size: int) -> torch.Tensor:
    """Each pair's score from a product of its text rows against the relevant videos only: the value the main
    pass will compute, as far as the BLAS gives the same number whichever block holds a row (`pair_ranks` checks)."""
    chunk_size = max(chunk_size, GUESS_ROWS)
    scores = torch.empty(pair_text.shape[0], dtype=texts.dtype, device=texts.device)
    for start, lo, hi in _chunks(pair_text, texts.shape[0], chunk_size):
        columns, position = torch.unique(pair_video[lo:hi], return_inverse=True)
        block = texts[start : start + chunk_size] @ videos[columns].T
        scores[lo:hi] = block[pair_text[lo:hi] - start, position]
    return scores


def _chunks(pair_text, num_texts: int, chunk_size: int):
    """Yield (first text, first pair, end pair) per text chunk; pairs are sorted by text."""
    starts = torch.arange(0, num_texts + chunk_size, chunk_size, device=pair_text.device).clamp_(max=num_texts)
    bounds = torch.searchsorted(pair_text, starts).tolist()
    for i, start in enumerate(starts[:-1].tolist()):
        if start < num_texts:
            yield start, bounds[i], bounds[i + 1]


def _scan(texts, videos, pair_text, pair_video, thresholds, chunk_size: int, workers: int):
    """One pass over the score blocks, split over `workers` threads. Returns text -> video ranks and exact pair
    scores, and for every pair the number of texts ranked ahead of its text for its video, counted against
    `thresholds`. Pairs must be sorted by text; a recount (pairs a subset) runs with the same blocks."""
    num_texts, num_videos = texts.shape[0], videos.shape[0]
    device = texts.device
    video_index = torch.arange(num_videos, device=device)
    text_index = torch.arange(num_texts, device=device)
    # One pair per text (per video) in order: blocks are counted in place, without gathering rows (columns).
    identity_rows = pair_text.shape[0] == num_texts and torch.equal(pair_text, text_index)
    identity_columns = pair_video.shape[0] == num_videos and torch.equal(pair_video, video_index)
    count_dtype = texts.dtype if max(num_videos, chunk_size) < 2**24 else torch.float64
    text_ranks = torch.empty(pair_text.shape[0], dtype=torch.long, device=device)
    exact = torch.empty_like(thresholds)

    def scan_chunks(chunks) -> torch.Tensor:
        block = torch.empty(min(chunk_size, num_texts), num_videos, dtype=texts.dtype, device=device)
        scratch = _Scratch(count_dtype, device)
        video_ahead = torch.zeros(pair_text.shape[0], dtype=torch.long, device=device)
        for start, lo, hi in chunks:
            chunk = texts[start : start + chunk_size]
            scores = torch.mm(chunk, videos.T, out=block[: chunk.shape[0]])
            own_rows = scores if identity_rows else scores[pair_text[lo:hi] - start]
            own = own_rows.gather(1, pair_video[lo:hi, None])
            text_ranks[lo:hi] = _count_ahead(own_rows, own, pair_video[lo:hi], video_index, scratch) + 1
            exact[lo:hi] = own[:, 0]
            columns = (scores if identity_columns else scores[:, pair_video]).T
            chunk_texts = text_index[start : start + chunk.shape[0]]
            video_ahead += _count_ahead(columns, thresholds[:, None], pair_text, chunk_texts, scratch)
        return video_ahead

    chunks = list(_chunks(pair_text, num_texts, chunk_size))
    if workers == 1 or len(chunks) == 1:
        return text_ranks, exact, scan_chunks(chunks)
    with ThreadPoolExecutor(workers) as pool:
        partials = list(pool.map(scan_chunks, [chunks[i::workers] for i in range(workers)]))
    return text_ranks, exact, sum(partials)


@contextmanager
def _single_threaded_ops():
    """Run torch ops on the calling thread only, restoring the thread count afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class _Scratch:
    """A reused float buffer the comparisons are written to: summing 0.0/1.0 floats is several times faster than
    summing bools in torch, and exact while counts stay below 2**24 (float64 beyond that)."""

    def __init__(self, dtype, device):
        self.buffer = torch.empty(0, dtype=dtype, device=device)

    def like(self, block: torch.Tensor) -> torch.Tensor:
        if self.buffer.numel() < block.numel():
            self.buffer = torch.empty(block.numel(), dtype=self.buffer.dtype, device=self.buffer.device)
        # Same layout as `block` (a transposed view for the column counts), so the sums run along memory.
        if block.stride(0) == 1 and block.shape[0] > 1:
            return self.buffer[: block.numel()].view(block.shape[1], block.shape[0]).T
        return self.buffer[: block.numel()].view(block.shape)


def _count_ahead(block, own_score, own_index, index, scratch: _Scratch) -> torch.Tensor:
    """Per row of `block`: entries above `own_score`, plus entries equal to it at an `index` before `own_index`."""
    at_least = torch.ge(block, own_score, out=scratch.like(block)).sum(1)
    # The relevant item itself reaches its own score wherever this block holds it. Rows where nothing else does
    # (every query ranked first) are done; only the others need the strict count and the tie rule.
    holds_own = (own_index >= index[0]) & (own_index <= index[-1])
    ahead = torch.zeros(block.shape[0], dtype=torch.long, device=block.device)
    crowded = torch.nonzero(at_least > holds_own).flatten()
    if crowded.numel():
        if 4 * crowded.numel() > block.shape[0]:
            # Many rows: one strict pass over the whole block costs less than gathering them first.
            above = torch.gt(block, own_score, out=scratch.like(block)).sum(1)[crowded]
        else:
            rows = _select_rows(block, crowded)
            above = torch.gt(rows, own_score[crowded], out=scratch.like(rows)).sum(1)
        ahead[crowded] = above.long()
        tied = crowded[at_least[crowded] - above > holds_own[crowded]]
        if tied.numel():
            earlier = index[None, :] < own_index[tied, None]
            ahead[tied] += ((_select_rows(block, tied) == own_score[tied]) & earlier).sum(1)
    return ahead


def _select_rows(block: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`block[rows]`, gathered in memory order: the rows of a transposed view are columns of its base, and picking
    them one strided element at a time would touch a cache line per score."""
    if block.stride(0) == 1 and block.shape[0] > 1:
        return block.T.index_select(1, rows).T
    return block.index_select(0, rows)


def _direction_metrics(prefix: str, query, ranks, k_values) -> dict[str, float]:
    """Aggregate pair ranks into per-query metrics; `query` names each pair's query row."""
    query, ranks = query.cpu().numpy(), ranks.cpu().numpy()
    _, query = np.unique(query, return_inverse=True)
    num_queries = int(query.max()) + 1
    num_relevant = np.bincount(query, minlength=num_queries)
    first = np.full(num_queries, np.iinfo(np.int64).max)
    np.minimum.at(first, query, ranks)

    results = {}
    for k in k_values:
        results[f"{prefix}_pass@{k}"] = float(np.mean(first <= k))
    for k in k_values:
        found = np.bincount(query, weights=ranks <= k, minlength=num_queries)
        results[f"{prefix}_recall@{k}"] = float(np.mean(found / num_relevant))
    results[f"{prefix}_mrr"] = float(np.mean(1.0 / first))
    gains = np.where(ranks <= NDCG_CUTOFF, 1.0 / np.log2(ranks + 1.0), 0.0)
    ideal = np.cumsum([1.0 / math.log2(i + 1) for i in range(1, NDCG_CUTOFF + 1)])
    dcg = np.bincount(query, weights=gains, minlength=num_queries)
    results[f"{prefix}_ndcg@{NDCG_CUTOFF}"] = float(np.mean(dcg / ideal[np.minimum(num_relevant, NDCG_CUTOFF) - 1]))
    results[f"{prefix}_median_rank"] = float(np.median(first))
    results[f"{prefix}_mean_rank"] = float(np.mean(first))
    results[f"{prefix}_num_queries"] = num_queries
    return results
