"""Uncertainty of retrieval metrics over the queries: seeded bootstrap intervals and paired comparisons.

Every LoVR metric is a statistic over queries of a per-query value (`retrieval.per_query_values`, aggregated by `retrieval.metric_statistic`): the mean of
pass@k indicators, recall fractions, reciprocal ranks, nDCG gains, first-relevant ranks, or their median. The
uncertainty here is that of the query sample: resample the queries with replacement, recompute the statistic.

- `bootstrap_intervals`: percentile intervals of each metric (one resample set shared by all metrics of a
  direction, so the intervals are those of the same resampled query sets); `bootstrap_intervals_of` several
  directions at once, those of as many queries sharing the draws.
- `paired_comparison`: two runs on the same queries. The delta's interval resamples the queries of both runs
  together (paired bootstrap); its p-value is that of a paired permutation test: under "no difference" each
  query's two values are exchangeable, so they are swapped at random and the delta recomputed
  (two-sided, `(1 + #{|delta*| >= |delta|}) / (1 + resamples)`).

Both work on per-query values (ranks, not scores): their cost does not depend on the gallery size.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lovr_metric.lovr_retrieval.retrieval import metric_statistic as statistic

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
# Resampled query sets drawn (and held) at a time: bounds memory to `_BATCH x queries` values per metric. Small, so
# that each batch's arrays (16 MB at LoVR's 40,804 queries) mostly reuse pages the previous batch freed: the first
# 65 MB arrays of batches of 200 each cost 0.12 s of page faults after a ranking, and a full-scale evaluation's
# bootstrap took 0.97 s where this takes 0.55 s. The draws are the same whatever the batch (`resample_indices`); a
# mean's sums over a batch round with its shape, so an interval can move in its last bit (1e-16) with `_BATCH`.
_BATCH = 50
# The percentiles hold every resample's statistic of every metric, 8 bytes each: at this bound, 20 metrics of a
# direction take 16 MB.
MAX_RESAMPLES = 100_000


def _check(values: Mapping[str, np.ndarray], what: str) -> int:
    lengths = {name: np.shape(v) for name, v in values.items()}
    shapes = set(lengths.values())
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"{what}: expected one 1-D array per metric, all of one length, got shapes {lengths}")
    (num_queries,) = shapes.pop()
    if num_queries == 0:
        raise ValueError(f"{what}: no queries to resample")
    return num_queries


def _check_settings(num_resamples: int, confidence: float) -> None:
    if (
        isinstance(num_resamples, bool)
        or not isinstance(num_resamples, int)
        or not 1 <= num_resamples <= MAX_RESAMPLES
    ):
        raise ValueError(f"num_resamples={num_resamples!r}: expected an int from 1 to {MAX_RESAMPLES}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r}: expected a number strictly between 0 and 1")


def resample_indices(num_queries: int, num_resamples: int, seed: int):
    """Batches of resampled query indices, `(batch, num_queries)` each, `num_resamples` rows in all, drawn from
    one seeded generator in order (so the batching does not change the draws)."""
    rng = np.random.default_rng(seed)
    for start in range(0, num_resamples, _BATCH):
        yield rng.integers(0, num_queries, size=(min(_BATCH, num_resamples - start), num_queries))


def _counts(indices: np.ndarray, num_groups: int, groups: np.ndarray | None = None) -> np.ndarray:
    """How often each query (or each group of queries, `groups[query]`) is drawn in each resampled set:
    `(batch, num_groups)`, as floats (exact: the products with the values take them so). Counted set by set: one
    set's counts stay in the CPU's cache, where one count over the whole batch (sets offset) scattered over all of
    it, 3-8x slower at 40,804 queries."""
    counts = np.empty((indices.shape[0], num_groups), dtype=np.float64)
    for row, drawn in enumerate(indices):
        counts[row] = np.bincount(drawn if groups is None else groups[drawn], minlength=num_groups)
    return counts


# Where a median is looked for first: among the distinct values whose share of the queries at or below them lies
# within this many standard errors of a half (a resampled set's share has a standard error of at most 0.5 / sqrt(n)),
# when they are at most `_MEDIAN_WINDOW` values. Each batch checks that every set's median lies there, or counts.
_MEDIAN_SIGMAS = 8.0
_MEDIAN_WINDOW = 32


class _Median:
    """The median of one metric's values over each resampled query set, as `np.median` takes it: the `(n + 1) // 2`-th
    and `n // 2 + 1`-th smallest drawn values, averaged. Those lie in a narrow window of the distinct values around
    the sample's median (ranks repeat: at LoVR's scale a handful of values): the draws at or below each value of the
    window are one product of the query counts with indicator columns (exact: sums of whole numbers), where counting
    the draws of every distinct value took 4.5 ms a batch of 50 sets at 40,804 queries. A batch where some set's
    median lies outside the window (never seen at 8 standard errors) is counted value by value."""

    def __init__(self, values: np.ndarray):
        self.distinct, self.groups = np.unique(values, return_inverse=True)
        share = np.cumsum(np.bincount(self.groups, minlength=len(self.distinct))) / len(values)
        spread = _MEDIAN_SIGMAS * 0.5 / np.sqrt(len(values))
        self.first = int(np.searchsorted(share, 0.5 - spread, side="left"))  # the first at or above a half - spread
        last = min(int(np.searchsorted(share, 0.5 + spread, side="right")), len(share) - 1)  # the first above
        self.columns = None
        if last - self.first < _MEDIAN_WINDOW:
            # Draws at or below the value before the window (none before the first value), then each in it.
            bounds = self.distinct[max(self.first - 1, 0) : last + 1]
            self.columns = (values[:, None] <= bounds[None, :]).astype(np.float64)

    def of(self, indices: np.ndarray, query_counts: np.ndarray | None) -> np.ndarray:
        """The median of each resampled set of `indices` (`query_counts`: each query's draws in each set)."""
        size = indices.shape[1]
        low_rank, high_rank = (size + 1) // 2, size // 2 + 1
        if self.columns is not None and query_counts is not None:
            below = query_counts @ self.columns
            before = below[:, 0] if self.first > 0 else np.zeros(len(below))
            window = below[:, 1:] if self.first > 0 else below
            if (before < low_rank).all() and (window[:, -1] >= high_rank).all():
                low = self.distinct[self.first + (window >= low_rank).argmax(axis=1)]
                high = self.distinct[self.first + (window >= high_rank).argmax(axis=1)]
                return (low + high) / 2
        return _weighted_medians(self.distinct, _counts(indices, len(self.distinct), self.groups))


def _weighted_medians(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row of draw counts of `values` (distinct, ascending), the median of the drawn values, as `np.median`
    takes it: the middle value, or the mean of the two middle ones."""
    total = int(counts[0].sum())
    cumulative = np.cumsum(counts, axis=1)
    # The k-th smallest drawn value (1-based) is the first value whose cumulative count reaches k.
    low = values[(cumulative >= (total + 1) // 2).argmax(axis=1)]
    high = values[(cumulative >= total // 2 + 1).argmax(axis=1)]
    return (low + high) / 2


def _resampled_statistics(
    value_sets: list[Mapping[str, np.ndarray]], num_queries: int, num_resamples: int, seed: int
) -> list[dict]:
    """Each metric's statistic on every resampled query set, for each of `value_sets` (metrics of `num_queries`
    queries each: one draw of query sets serves them all). The draws become counts per query, so that every mean
    is one product of the counts with the values, and a median one product with a few indicator columns
    (`_Median`), whatever the number of metrics."""
    plans = [_StatisticsPlan(values) for values in value_sets]
    query_counts = None
    for indices in resample_indices(num_queries, num_resamples, seed):
        if any(plan.uses_query_counts for plan in plans):
            query_counts = _counts(indices, indices.shape[1])
        for plan in plans:
            plan.add(indices, query_counts)
    return [plan.result() for plan in plans]


class _StatisticsPlan:
    """The statistics of one set of metrics over the resampled query sets, gathered batch by batch."""

    def __init__(self, values: Mapping[str, np.ndarray]):
        self.names = list(values)
        self.means = [name for name in self.names if statistic(name) is np.mean]
        self.table = (
            np.stack([np.asarray(values[name], dtype=np.float64) for name in self.means], axis=1)
            if self.means
            else None
        )
        self.medians = {
            name: _Median(np.asarray(values[name], dtype=np.float64)) for name in self.names if name not in self.means
        }
        self.uses_query_counts = self.table is not None or any(m.columns is not None for m in self.medians.values())
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in self.names}

    def add(self, indices: np.ndarray, query_counts: np.ndarray | None) -> None:
        """The statistics of one batch of resampled sets (`query_counts`: how often each query is drawn in each)."""
        for name, median in self.medians.items():
            self.parts[name].append(median.of(indices, query_counts))
        if self.table is not None:
            for name, column in zip(self.means, (query_counts @ self.table / indices.shape[1]).T, strict=True):
                self.parts[name].append(column)

    def result(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.parts.items()}


def bootstrap_intervals(
    values: Mapping[str, np.ndarray],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap interval of each metric, from its per-query values (`{metric: (num_queries,)}`)."""
    return bootstrap_intervals_of([values], num_resamples=num_resamples, confidence=confidence, seed=seed)[0]


def bootstrap_intervals_of(
    value_sets: list[Mapping[str, np.ndarray]],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> list[dict[str, tuple[float, float]]]:
    """`bootstrap_intervals` of each of `value_sets`, each the same as alone. Sets of as many queries share the
    draws (the same seed draws the same query sets for them anyway), counted once: a task's two directions over
    LoVR's 40,804 clips and captions."""
    _check_settings(num_resamples, confidence)
    tail = (1 - confidence) / 2
    out: list[dict] = [{} for _ in value_sets]
    by_size: dict[int, list[int]] = {}
    for position, values in enumerate(value_sets):
        by_size.setdefault(_check(values, "bootstrap"), []).append(position)
    for num_queries, positions in by_size.items():
        found = _resampled_statistics([value_sets[p] for p in positions], num_queries, num_resamples, seed)
        for position, statistics in zip(positions, found, strict=True):
            out[position] = {
                name: (float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail)))
                for name, stats in statistics.items()
            }
    return out


def paired_comparison(
    values_a: Mapping[str, np.ndarray],
    values_b: Mapping[str, np.ndarray],
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> dict[str, dict[str, float]]:
    """Per metric: `a`, `b`, `delta` (b - a), the paired-bootstrap interval of the delta (`low`, `high`) and the
    paired permutation p-value. Both runs' arrays must list the same queries in the same order."""
    _check_settings(num_resamples, confidence)
    if set(values_a) != set(values_b):
        raise ValueError(
            f"paired comparison: the runs have different metrics: {sorted(set(values_a) ^ set(values_b))}"
        )
    num_queries = _check(
        {**{f"a:{k}": v for k, v in values_a.items()}, **{f"b:{k}": v for k, v in values_b.items()}},
        "paired comparison",
    )
    a = {name: np.asarray(v, dtype=np.float64) for name, v in values_a.items()}
    b = {name: np.asarray(values_b[name], dtype=np.float64) for name in a}
    observed = {name: float(statistic(name)(b[name]) - statistic(name)(a[name])) for name in a}

    deltas = {name: [] for name in a}
    for indices in resample_indices(num_queries, num_resamples, seed):
        for name in a:
            stat = statistic(name)
            deltas[name].append(stat(b[name][indices], axis=1) - stat(a[name][indices], axis=1))

    extreme = dict.fromkeys(a, 0)
    rng = np.random.default_rng(seed + 1)
    for start in range(0, num_resamples, _BATCH):
        swap = rng.random((min(_BATCH, num_resamples - start), num_queries)) < 0.5
        for name in a:
            stat = statistic(name)
            permuted = stat(np.where(swap, a[name], b[name]), axis=1) - stat(np.where(swap, b[name], a[name]), axis=1)
            # A tolerance, so that float noise on an exactly equal delta still counts it as extreme.
            extreme[name] += int(
                np.sum(np.abs(permuted) >= abs(observed[name]) - 1e-9 * max(1.0, abs(observed[name])))
            )

    tail = (1 - confidence) / 2
    out = {}
    for name in a:
        resampled = np.concatenate(deltas[name])
        out[name] = {
            "a": float(statistic(name)(a[name])),
            "b": float(statistic(name)(b[name])),
            "delta": observed[name],
            "low": float(np.quantile(resampled, tail)),
            "high": float(np.quantile(resampled, 1 - tail)),
            "p_value": (1 + extreme[name]) / (1 + num_resamples),
        }
    return out
