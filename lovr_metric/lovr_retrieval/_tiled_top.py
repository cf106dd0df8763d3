"""The best-scoring items of every query, kept by the tiled pass of the retrieval core as it goes (part of the
metric Space: plain torch, nothing of the toolkit).

A query's top items are the `k` of highest score, best first, ties to the item earlier in the gallery, the
scores being dot products of the normalised embeddings computed in float64, one query and one item at a time
(`exact_scores`): identical embeddings tie exactly wherever they lie, which no blocked float32 product promises
(two copies of a text in different tiles can round apart).

During the pass each query keeps its `keep = k + TOP_MARGIN` best tile scores (`RunningTop`): a tile offers only
the scores above a query's current `keep`-th best, so after the first tiles a query takes a handful of candidates
per tile. At the end (`exact_top`) the kept items are scored again exactly and sorted by the rule above. This
gives the exact top `k` whenever the tile's `k`-th best and its `keep`-th best lie further apart than twice the
error bound of a tile's score (`score_error`): an item left out then scores below every one of the first `k`
whatever the rounding. A query where they do not (near-duplicates crowding its top) is scored exactly against
every item instead; the result is the same either way.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

# Items a query keeps beyond the `k` it returns: the room that lets `exact_top` prove the kept ones hold its top k.
TOP_MARGIN = 6
# Rows of queries scored exactly at a time (a block of `keep` items each), and items per block in a full rescore.
_EXACT_ROWS = 64
_EXACT_ITEMS = 4096
_buffers = threading.local()


class RunningTop:
    """Per query, the `keep` highest scores offered so far and their items (`-inf` and `-1` until filled).

    Invariant: an item offered to a query and not kept scored at most the query's final `keep`-th best score
    (`exact_top` relies on it)."""

    def __init__(self, num_queries: int, keep: int, dtype: torch.dtype, device: torch.device):
        self.values = torch.full((num_queries, keep), float("-inf"), dtype=dtype, device=device)
        self.items = torch.full((num_queries, keep), -1, dtype=torch.long, device=device)

    @property
    def keep(self) -> int:
        return self.values.shape[1]

    def filled(self, first_query: int, num_queries: int) -> bool:
        """Whether queries `first_query`, ... have `keep` scores each (candidates can then be sought sparsely)."""
        return not torch.isinf(self.values[first_query : first_query + num_queries, -1]).any()

    def offer(self, scores: torch.Tensor, first_query: int, first_item: int, transposed: bool = False) -> None:
        """Take every score of `scores` where it beats its query's `keep`-th best: queries `first_query`, ... in its
        rows and items `first_item`, ... in its columns, or the other way round when `transposed`."""
        offered = scores.T if transposed else scores
        rows = slice(first_query, first_query + offered.shape[0])
        values, items = self.values[rows], self.items[rows]
        best, where = torch.topk(torch.cat([values, offered], dim=1), self.keep, dim=1)
        kept = items.gather(1, where.clamp(max=self.keep - 1))
        self.values[rows] = best
        self.items[rows] = torch.where(where < self.keep, kept, where - self.keep + first_item)

    def candidates(self, scores: torch.Tensor, first_query: int, first_item: int, transposed: bool = False):
        """(query, item, score) of the scores of `scores` (laid out as for `offer`) above their query's current
        `keep`-th best, to be taken by `take`. On CPU, numpy's compare and `flatnonzero` find them in a quarter of
        the time of torch's `nonzero`."""
        num_queries = scores.shape[1] if transposed else scores.shape[0]
        # Contiguous: numpy compares against a strided row of floors several times slower.
        floor = self.values[first_query : first_query + num_queries, -1].contiguous()
        floor = floor[None, :] if transposed else floor[:, None]
        if scores.device.type == "cpu" and scores.is_contiguous():
            values = scores.numpy()
            flat = np.flatnonzero(np.greater(values, floor.numpy(), out=_mask(values.shape)))
            row, column = (torch.from_numpy(part) for part in np.divmod(flat, values.shape[1]))
            score = torch.from_numpy(values.reshape(-1)[flat])
        else:
            row, column = torch.nonzero(scores > floor).unbind(1)
            score = scores[row, column]
        if transposed:
            return column + first_query, row + first_item, score
        return row + first_query, column + first_item, score

    def take(self, found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        """Merge the `candidates` found (each query's own) into what the queries keep."""
        if not found:
            return
        query, item, score = (torch.cat(parts) for parts in zip(*found, strict=True))
        if query.shape[0] == 0:
            return
        order = torch.argsort(query, stable=True)
        query, item, score = query[order], item[order], score[order]
        low, high = int(query[0]), int(query[-1]) + 1
        query = query - low
        # Each query's candidates go to the columns after its kept ones.
        counts = torch.bincount(query, minlength=high - low)
        first = torch.cumsum(counts, 0) - counts
        slot = self.keep + torch.arange(query.shape[0], device=query.device) - first[query]
        merged = self.values.new_full((high - low, self.keep + int(counts.max())), float("-inf"))
        merged_items = self.items.new_full(merged.shape, -1)
        merged[:, : self.keep], merged_items[:, : self.keep] = self.values[low:high], self.items[low:high]
        merged[query, slot], merged_items[query, slot] = score, item
        best, where = torch.topk(merged, self.keep, dim=1)
        self.values[low:high], self.items[low:high] = best, merged_items.gather(1, where)

    @classmethod
    def merge(cls, tops: list[RunningTop]) -> RunningTop:
        """One `RunningTop` of the same queries from several (each worker's share of the items)."""
        if len(tops) == 1:
            return tops[0]
        merged = cls.__new__(cls)
        values = torch.cat([top.values for top in tops], dim=1)
        best, where = torch.topk(values, tops[0].keep, dim=1)
        merged.values, merged.items = best, torch.cat([top.items for top in tops], dim=1).gather(1, where)
        return merged


def _mask(shape: tuple[int, int]) -> np.ndarray:
    """This thread's reused boolean buffer of `shape` (a fresh one per call costs page faults)."""
    size = shape[0] * shape[1]
    if getattr(_buffers, "mask", np.empty(0, dtype=bool)).size < size:
        _buffers.mask = np.empty(size, dtype=bool)
    return _buffers.mask[:size].reshape(shape)


def score_error(dim: int, dtype: torch.dtype) -> float:
    """A bound on how far a dot product of two unit vectors of `dim` entries, computed in `dtype` in any order,
    lies from its exact value: `dim * u / (1 - dim * u)` (u the unit roundoff), with room for norms a few
    roundings off 1."""
    unit = torch.finfo(dtype).eps / 2
    return 1.01 * dim * unit / max(1 - dim * unit, 1e-3)


def exact_scores(queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """Dot products of each query row with its own rows of items (`(Q, d)` with `(Q, n, d)` -> `(Q, n)`), in float64,
    each one summed the same way wherever it lies, so identical embeddings score exactly alike."""
    return (items.to(torch.float64) * queries.to(torch.float64)[:, None, :]).sum(dim=-1)


def exact_top(top: RunningTop, queries: torch.Tensor, items: torch.Tensor, k: int) -> torch.Tensor:
    """The top `k` items (rows of `items`) of every query (row of `queries`), best first, from what `top` kept in a
    pass over every item (see the module docstring); `(Q, min(k, len(items)))` item rows."""
    k = min(k, items.shape[0])
    bound = 2 * score_error(queries.shape[1], queries.dtype)
    values = top.values
    # Scores further apart than `bound` order alike whichever way they are computed: where the first k + 1 kept
    # are, the tile's order is the exact one.
    out = top.items[:, :k].clone()
    settled = (values[:, :-1] - values[:, 1:])[:, :k].gt(bound).all(dim=1)
    if top.keep >= items.shape[0]:  # every item was kept
        whole = torch.zeros_like(settled)
    else:
        whole = values[:, k - 1] - values[:, -1] <= bound
    rows = torch.nonzero(~settled & ~whole).flatten()
    for start in range(0, rows.shape[0], _EXACT_ROWS):
        block = rows[start : start + _EXACT_ROWS]
        kept = top.items[block].sort(dim=1).values  # by gallery position, so a stable sort breaks ties by it
        scores = exact_scores(queries[block], items[kept])
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
        out[block] = kept.gather(1, order)
    for row in torch.nonzero(whole).flatten().tolist():
        scores = torch.cat(
            [
                exact_scores(queries[row : row + 1], items[None, first : first + _EXACT_ITEMS])[0]
                for first in range(0, items.shape[0], _EXACT_ITEMS)
            ]
        )
        out[row] = torch.sort(scores, descending=True, stable=True).indices[:k]
    return out
