"""The best-scoring items of every query, kept by the tiled pass of the retrieval core as it goes (part of the
metric Space: plain torch, nothing of the toolkit).

A query's top items are the `k` of highest score, best first, ties to the item earlier in the gallery, the
scores being dot products of the normalised embeddings computed in float64, every pair summed the same way
(`exact_scores`): identical embeddings tie exactly wherever they lie, which no blocked float32 product promises
(two copies of a text in different tiles can round apart). Two scores closer than float64's rounding (about 1e-13
for d = 512) order as that rounding makes them.

During the pass each query keeps its `keep = k + TOP_MARGIN` best tile scores (`RunningTop`): a tile offers only
the scores above a query's current `keep`-th best, so after the first tiles a query takes a handful of candidates
per tile. At the end (`exact_top`) the kept items are put in the order of the rule above: kept scores further
apart than twice the error bound of a tile's score order alike whichever way they are computed, so only runs of
kept items closer than that are scored again in float64 and sorted. This gives the top `k` of that rule whenever
the tile's `k`-th best and its `keep`-th best lie further apart than twice the error bound of a tile's score
(`score_error`, which assumes full float32 products: `_tiled_ranks` turns TF32 and reduced-precision matmul off
for the pass): an item left out then scores below every one of the first `k` whatever the rounding. A query where
they do not (near-duplicates crowding its top) is scored against every item in one product, and the items that can
be in its top k by that product are scored in float64; the result is the same either way.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

# Items a query keeps beyond the `k` it returns: the room that lets `exact_top` prove the kept ones hold its top k.
TOP_MARGIN = 6
# Rows of queries scored in float64 at a time where crowded (against every item), and pairs where near ties are.
_EXACT_ROWS = 64
_EXACT_PAIRS = 1024
# A query's first tile is bounded by the maxima of at least this many blocks of items per item it keeps (`offer`).
BLOCKS_PER_KEPT = 4
_buffers = threading.local()


class RunningTop:
    """Per query, the `keep` highest scores offered so far and their items (`-inf` and `-1` until filled), held on
    the host as numpy arrays whatever device the tiles are on: merging a tile's few candidates is many small
    operations, each a few microseconds in numpy against tens in torch.

    Invariant: an item offered to a query and not kept scored at most the query's final `keep`-th best score
    (`exact_top` relies on it)."""

    def __init__(self, num_queries: int, keep: int, dtype: torch.dtype):
        self.values = np.full((num_queries, keep), -np.inf, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
        self.items = np.full((num_queries, keep), -1, dtype=np.int64)

    @property
    def keep(self) -> int:
        return self.values.shape[1]

    def filled(self, first_query: int, num_queries: int) -> bool:
        """Whether queries `first_query`, ... have `keep` scores each (candidates can then be sought sparsely)."""
        return not np.isinf(self.values[first_query : first_query + num_queries, -1]).any()

    def offer(self, scores: torch.Tensor, first_query: int, first_item: int, transposed: bool = False) -> None:
        """Take every score of `scores` where it beats its query's `keep`-th best: queries `first_query`, ... in its
        rows and items `first_item`, ... in its columns, or the other way round when `transposed`. For queries that
        may keep nothing yet (their first tile).

        A block of many items per query is bounded first: cut into at least `BLOCKS_PER_KEPT * keep` blocks, the
        `keep`-th highest of the blocks' maxima is a score no higher than the query's `keep`-th best in the block
        (those maxima are `keep` scores of distinct items), so only the scores from it up are offered: a few more
        than `keep` per query, found as `candidates` finds them (a quarter of the time of a `topk` over the block).
        A smaller block is reduced with `topk`."""
        offered = scores.T if transposed else scores
        size = offered.shape[1] // (BLOCKS_PER_KEPT * self.keep)  # items per block
        if size < 2:
            best, where = torch.topk(offered.contiguous(), min(self.keep, offered.shape[1]), dim=1)
            query = np.repeat(np.arange(first_query, first_query + offered.shape[0]), best.shape[1])
            self.take([(query, where.reshape(-1).cpu().numpy() + first_item, best.reshape(-1).cpu().numpy())])
            return
        blocks = offered.shape[1] // size
        if transposed:  # the items are the rows of `scores`: blocks of rows
            maxima = scores[: blocks * size].reshape(blocks, size, scores.shape[1]).amax(dim=1).T
        else:
            maxima = scores[:, : blocks * size].reshape(scores.shape[0], blocks, size).amax(dim=2)
        bound = torch.topk(maxima, self.keep, dim=1).values[:, -1].cpu().numpy()
        kept = self.values[first_query : first_query + offered.shape[0], -1]
        self.take([self.candidates(scores, first_query, first_item, transposed, at_least=np.maximum(bound, kept))])

    def candidates(
        self, scores: torch.Tensor, first_query: int, first_item: int, transposed: bool = False, at_least=None
    ):
        """(query, item, score) of the scores of `scores` (laid out as for `offer`) above their query's current
        `keep`-th best (or at or above `at_least`, one per query, where given), as numpy arrays for `take`. On CPU,
        numpy's compare and `flatnonzero` find them in a quarter of the time of torch's `nonzero`."""
        num_queries = scores.shape[1] if transposed else scores.shape[0]
        floor = self.values[first_query : first_query + num_queries, -1] if at_least is None else at_least
        # A contiguous copy: numpy compares against a strided row of floors several times slower.
        floor = np.ascontiguousarray(floor, dtype=self.values.dtype)
        floor = floor[None, :] if transposed else floor[:, None]
        if scores.device.type == "cpu" and scores.is_contiguous():
            values = scores.numpy()
            compare = np.greater if at_least is None else np.greater_equal
            flat = np.flatnonzero(compare(values, floor, out=_mask(values.shape)))
            row, column = np.divmod(flat, values.shape[1])
            score = values.reshape(-1)[flat]
        else:
            compare = torch.gt if at_least is None else torch.ge
            row, column = torch.nonzero(compare(scores, torch.from_numpy(floor).to(scores.device))).unbind(1)
            row, column, score = (part.cpu().numpy() for part in (row, column, scores[row, column]))
        if transposed:
            return column + first_query, row + first_item, score
        return row + first_query, column + first_item, score

    def take(self, found: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Merge the (query, item, score) candidates `found` into what the queries keep."""
        if not found:
            return
        query, item, score = (np.concatenate(parts) for parts in zip(*found, strict=True))
        if query.shape[0] == 0:
            return
        low, high = int(query.min()), int(query.max()) + 1
        query = query - low
        # Grouped by query, in the order offered. A tile's queries span a few thousand: as 16-bit keys numpy's stable
        # sort is a radix sort, a tenth of the time of its merge sort on 64-bit ones (the merges' largest part).
        order = np.argsort(query.astype(np.uint16) if high - low <= 2**16 else query, kind="stable")
        query, item, score = query[order], item[order], score[order]
        # Each query's candidates go to the columns after its kept ones.
        counts = np.bincount(query, minlength=high - low)
        slot = self.keep + np.arange(query.shape[0]) - (np.cumsum(counts) - counts)[query]
        merged = np.full((high - low, self.keep + int(counts.max())), -np.inf, dtype=self.values.dtype)
        merged_items = np.full(merged.shape, -1, dtype=np.int64)
        merged[:, : self.keep], merged_items[:, : self.keep] = self.values[low:high], self.items[low:high]
        merged[query, slot], merged_items[query, slot] = score, item
        self.values[low:high], self.items[low:high] = _top_columns(merged, merged_items, self.keep)

    @classmethod
    def merge(cls, tops: list[RunningTop]) -> RunningTop:
        """One `RunningTop` of the same queries from several (each worker's share of the items)."""
        if len(tops) == 1:
            return tops[0]
        merged = cls.__new__(cls)
        values = np.concatenate([top.values for top in tops], axis=1)
        items = np.concatenate([top.items for top in tops], axis=1)
        merged.values, merged.items = _top_columns(values, items, tops[0].keep)
        return merged


def _top_columns(values: np.ndarray, items: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the `keep` highest of `values`, best first, and the `items` beside them (torch's `topk`: numpy has
    no partial sort that keeps the order)."""
    best, where = torch.topk(torch.from_numpy(values), keep, dim=1)
    return best.numpy(), np.take_along_axis(items, where.numpy(), axis=1)


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
    each one summed the same way wherever it lies, so identical embeddings score exactly alike (float32 entries'
    products are exact in float64; their sum rounds, by at most about 1e-13 for d = 512)."""
    return (items.to(torch.float64) * queries.to(torch.float64)[:, None, :]).sum(dim=-1)


def exact_top(top: RunningTop, queries: torch.Tensor, items: torch.Tensor, k: int) -> torch.Tensor:
    """The top `k` items (rows of `items`) of every query (row of `queries`), best first, from what `top` kept in a
    pass over every item (see the module docstring); `(Q, min(k, len(items)))` item rows."""
    k = min(k, items.shape[0])
    bound = 2 * score_error(queries.shape[1], queries.dtype)
    values, kept_items = torch.from_numpy(top.values), torch.from_numpy(top.items).to(queries.device)
    # Scores further apart than `bound` order alike whichever way they are computed: where the first k + 1 kept
    # are, the tile's order is the exact one.
    out = kept_items[:, :k].clone()
    settled = (values[:, :-1] - values[:, 1:])[:, :k].gt(bound).all(dim=1)
    if top.keep >= items.shape[0]:  # every item was kept
        whole = torch.zeros_like(settled)
    else:
        whole = values[:, k - 1] - values[:, -1] <= bound
    rows = torch.nonzero(~settled & ~whole).flatten()
    if rows.numel():
        near = rows.to(queries.device)
        out[near] = _near_ties_exact(values[rows], kept_items[near], queries[near], items, k, bound)
    whole = whole.to(queries.device)
    whole_rows = torch.nonzero(whole).flatten()
    for start in range(0, whole_rows.shape[0], _EXACT_ROWS):
        block = whole_rows[start : start + _EXACT_ROWS]
        out[block] = _crowded_top(queries[block], items, k, bound)
    return out


def _near_ties_exact(values, kept, queries, items, k: int, bound: float) -> torch.Tensor:
    """The exact top `k` of queries whose `k` first kept items are not all further apart than `bound`, their kept
    `values` (tile scores, best first, on the host) proving that no item left out can enter it. Kept items form
    runs of neighbours at most `bound` apart: two items of different runs order alike whichever way they are
    scored, so only the items of a run that reaches into the first `k` are scored in float64 (`exact_scores`,
    one by one) and sorted within their run, ties to the item earlier in the gallery; the others stay where the
    tiles put them. At LoVR's scale about one row in four has such a run, most of them two items long: scoring
    every kept item of those rows took four times longer."""
    close = (values[:, :-1] - values[:, 1:]) <= bound
    # Runs numbered along each row; a run reaches into the first k when it starts before position k.
    run = torch.cumsum(torch.cat([torch.ones_like(close[:, :1]), ~close], dim=1), dim=1)
    paired = torch.zeros_like(run, dtype=torch.bool)
    paired[:, 1:] |= close
    paired[:, :-1] |= close
    row, position = torch.nonzero(paired & (run <= run[:, k - 1 : k])).unbind(1)
    device = queries.device
    row, position, run = row.to(device), position.to(device), run.to(device)
    item = kept[row, position]
    scores = torch.empty(row.shape[0], dtype=torch.float64, device=device)
    for start in range(0, row.shape[0], _EXACT_PAIRS):
        part = slice(start, start + _EXACT_PAIRS)
        scores[part] = exact_scores(queries[row[part]], items[item[part], None])[:, 0]
    # Within each run, best first, ties to the earlier item; the runs' positions, in order, take them.
    order = torch.sort(item, stable=True).indices
    order = order[torch.sort(scores[order], descending=True, stable=True).indices]
    order = order[torch.sort(run[row, position][order], stable=True).indices]
    order = order[torch.sort(row[order], stable=True).indices]
    out = kept.clone()
    out[row, position] = item[order]
    return out[:, :k]


def _crowded_top(queries: torch.Tensor, items: torch.Tensor, k: int, bound: float) -> torch.Tensor:
    """The exact top `k` of queries whose kept items prove nothing (near-duplicates crowding their top): each is
    scored against every item in one product, and the items within `bound` of its `k`-th best there (which hold
    its top k, both scores being within half of `bound` of the exact ones) are scored in float64."""
    scores = queries @ items.T
    floors = torch.topk(scores, k, dim=1).values[:, -1] - bound
    out = torch.empty((queries.shape[0], k), dtype=torch.long, device=queries.device)
    for row in range(queries.shape[0]):
        near = torch.nonzero(scores[row] >= floors[row]).flatten()  # ascending: a stable sort keeps ties in order
        exact = exact_scores(queries[row : row + 1], items[near][None])[0]
        out[row] = near[torch.sort(exact, descending=True, stable=True).indices[:k]]
    return out
