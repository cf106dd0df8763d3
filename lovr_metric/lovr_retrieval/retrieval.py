"""Text <-> video retrieval metrics for LoVR, in plain torch (no `evaluate` import, nothing of the toolkit: this file
is part of the metric Space), re-exported as `lovr_metric.retrieval_metrics`:

    scores = retrieval_metrics(text_embeddings, text_ids, video_embeddings, video_ids, k_values=(1, 5, 10))

`retrieval_ranks` gives what the metrics are computed from: the exact stable rank of every relevant (text, video)
pair in both directions, from one tiled pass over the score matrix (`_tiled_ranks.pair_ranks`; a tie goes to the
item earlier in the gallery). `per_query_values` turns a direction's pair ranks into each query's value of every
metric; a metric is their mean over the queries (`median_rank`: their median, `metric_statistic`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._retrieval_inputs import RetrievalInputs, check_inputs, check_k_values
from ._tiled_ranks import CPU_TILES, GPU_TILES, TileShape, pair_ranks, rank_pass, tile_shape

__all__ = [
    "CPU_TILES",
    "GPU_TILES",
    "NDCG_CUTOFF",
    "RankedPairs",
    "TileShape",
    "metric_statistic",
    "pair_ranks",
    "per_query_values",
    "retrieval_metrics",
    "retrieval_ranks",
    "tile_shape",
]

NDCG_CUTOFF = 10


@dataclass
class RankedPairs:
    """The checked inputs (normalised embeddings, relevant pairs; see `RetrievalInputs`) and each pair's 1-based
    rank: of its video among all videos for its text (`text_ranks`), of its text among all texts for its video
    (`video_ranks`); with `retrieval_ranks(top=k)`, the k best video rows of every text (`text_top`) and text rows
    of every video (`video_top`), best first, ties to the earlier row (`_tiled_top`)."""

    inputs: RetrievalInputs
    text_ranks: torch.Tensor
    video_ranks: torch.Tensor
    text_top: torch.Tensor | None = None
    video_top: torch.Tensor | None = None

    def direction(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(query row of each pair, its rank) of direction `name`: text rows for `text_to_video`, video rows for
        `video_to_text`."""
        if name == "text_to_video":
            return self.inputs.pair_text.cpu().numpy(), self.text_ranks.cpu().numpy()
        if name == "video_to_text":
            return self.inputs.pair_video.cpu().numpy(), self.video_ranks.cpu().numpy()
        raise ValueError(f"direction={name!r}: expected 'text_to_video' or 'video_to_text'")


def retrieval_ranks(
    text_embeddings,
    text_ids,
    video_embeddings,
    video_ids,
    *,
    chunk_size: int | None = None,
    max_block_bytes: int | None = None,
    skip_missing: bool = False,
    device: str | torch.device | None = None,
    top: int = 0,
) -> RankedPairs:
    """The ranks of every relevant pair in both directions, arguments as `retrieval_metrics`; with `top > 0`, also
    the `top` best items of every text and of every video, kept by the same pass."""
    inputs = check_inputs(text_embeddings, text_ids, video_embeddings, video_ids, skip_missing, device)
    chunk_size = _chunk_size(chunk_size, max_block_bytes, inputs.videos)
    ranked = rank_pass(inputs.texts, inputs.videos, inputs.pair_text, inputs.pair_video, chunk_size, top=top)
    return RankedPairs(inputs, ranked.text_ranks, ranked.video_ranks, ranked.text_top, ranked.video_top)


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
        text_embeddings (`np.ndarray` or `torch.Tensor` of shape `(T, d)`): finite values of any float dtype, no
            row all zero (it would tie with everything); L2-normalised here, without overflow or underflow at any
            magnitude.
        text_ids (`list`): for each text the id of its relevant video, or a list of ids when several are relevant.
        video_embeddings (`np.ndarray` or `torch.Tensor` of shape `(V, d)`): the gallery, under the same rules.
        video_ids (`list[str]`): V unique ids, one per row of `video_embeddings`.
        k_values (`tuple[int]`, defaults to `(1, 5, 10)`): cut-offs for pass@k and recall@k.
        chunk_size (`int`, *optional*): texts per score block; by default derived from `max_block_bytes`.
        max_block_bytes (`int`, *optional*): memory budget of one score block (defaults to 8 MiB on CPU, 512 MiB
            on GPU: `CPU_TILES`, `GPU_TILES`); peak memory is a small multiple of it on top of the inputs.
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
    k_values = check_k_values(k_values, inputs.videos.shape[0], inputs.texts.shape[0])
    chunk_size = _chunk_size(chunk_size, max_block_bytes, inputs.videos)
    text_ranks, video_ranks = pair_ranks(inputs.texts, inputs.videos, inputs.pair_text, inputs.pair_video, chunk_size)
    return metrics_from_ranks(RankedPairs(inputs, text_ranks, video_ranks), k_values)


def metrics_from_ranks(ranked: RankedPairs, k_values) -> dict[str, float]:
    """The metrics of `retrieval_metrics` from `retrieval_ranks`'s pair ranks (`k_values` already checked)."""
    results = {}
    for direction in ("text_to_video", "video_to_text"):
        results.update(direction_metrics(direction, *ranked.direction(direction), k_values))
    results["num_skipped_texts"] = ranked.inputs.num_skipped
    return results


def _chunk_size(chunk_size, max_block_bytes, videos: torch.Tensor) -> int:
    if chunk_size is not None:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"`chunk_size` must be a positive int, but got {chunk_size!r}.")
        return chunk_size
    shape = tile_shape(videos.device)
    if max_block_bytes is None:
        max_block_bytes = shape.block_bytes
    if isinstance(max_block_bytes, bool) or not isinstance(max_block_bytes, int) or max_block_bytes < 1:
        raise ValueError(f"`max_block_bytes` must be a positive int, but got {max_block_bytes!r}.")
    tile_videos = min(videos.shape[0], shape.videos or videos.shape[0])
    return max(1, max_block_bytes // (tile_videos * videos.element_size()))


def per_query_values(query, ranks, k_values) -> dict[str, np.ndarray]:
    """Each query's value of every metric, from the ranks of its relevant pairs: `query[i]` (int) is pair i's query
    row, `ranks[i]` its 1-based rank. Queries come in ascending row order. Keys: `pass@k` and `recall@k` for each k,
    `mrr`, `ndcg@10`, `median_rank` and `mean_rank` (both the first relevant item's rank)."""
    query, ranks = np.asarray(query), np.asarray(ranks)
    _, query = np.unique(query, return_inverse=True)
    num_queries = int(query.max()) + 1
    num_relevant = np.bincount(query, minlength=num_queries)
    first = np.full(num_queries, np.iinfo(np.int64).max)
    np.minimum.at(first, query, ranks)

    values = {f"pass@{k}": (first <= k).astype(np.float64) for k in k_values}
    for k in k_values:
        values[f"recall@{k}"] = np.bincount(query, weights=ranks <= k, minlength=num_queries) / num_relevant
    values["mrr"] = 1.0 / first
    gains = np.where(ranks <= NDCG_CUTOFF, 1.0 / np.log2(ranks + 1.0), 0.0)
    ideal = np.cumsum([1.0 / math.log2(i + 1) for i in range(1, NDCG_CUTOFF + 1)])
    dcg = np.bincount(query, weights=gains, minlength=num_queries)
    values[f"ndcg@{NDCG_CUTOFF}"] = dcg / ideal[np.minimum(num_relevant, NDCG_CUTOFF) - 1]
    values["median_rank"] = first.astype(np.float64)
    values["mean_rank"] = first.astype(np.float64)
    return values


def metric_statistic(name: str):
    """How metric `name` (with or without its direction prefix) aggregates its per-query values: `np.median` for
    `median_rank`, `np.mean` for every other."""
    return np.median if name.endswith("median_rank") else np.mean


def direction_metrics(prefix: str, query, ranks, k_values) -> dict[str, float]:
    """One direction's metrics, `{prefix}_{metric}`, from its pair ranks (`per_query_values`), and its query count."""
    values = per_query_values(query, ranks, k_values)
    results = {f"{prefix}_{name}": float(metric_statistic(name)(v)) for name, v in values.items()}
    results[f"{prefix}_num_queries"] = len(values["mrr"])
    return results
