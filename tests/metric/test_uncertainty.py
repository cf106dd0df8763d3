"""Bootstrap intervals and paired comparisons: against values derived by hand and a naive resampling loop."""

import numpy as np
import pytest

from lovr_metric.evaluation import uncertainty
from lovr_metric.evaluation.uncertainty import (
    _BATCH,
    bootstrap_intervals,
    bootstrap_intervals_of,
    paired_comparison,
    statistic,
)


def naive_interval(values, stat, num_resamples, seed, confidence=0.95):
    """The textbook loop: draw each resampled query set in turn, recompute the statistic, take percentiles."""
    rng = np.random.default_rng(seed)
    stats = [stat(values[rng.integers(0, len(values), size=len(values))]) for _ in range(num_resamples)]
    tail = (1 - confidence) / 2
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def test_statistic_is_the_median_for_median_ranks_only():
    assert statistic("text_to_video_median_rank") is np.median
    assert statistic("median_rank") is np.median
    assert statistic("text_to_video_mean_rank") is np.mean and statistic("video_to_text_pass@1") is np.mean


# Around the batch of resampled sets drawn at once, and over several batches: the batching never changes the draws.
@pytest.mark.parametrize("num_resamples", [1, _BATCH - 1, _BATCH, _BATCH + 1, 9 * _BATCH + 1])
def test_intervals_equal_the_naive_loop(num_resamples):
    rng = np.random.default_rng(3)
    first = rng.integers(1, 50, size=37).astype(float)
    values = {"x_pass@5": (first <= 5).astype(float), "x_mrr": 1 / first, "x_median_rank": first}
    got = bootstrap_intervals(values, num_resamples=num_resamples, seed=7)
    for name, array in values.items():
        assert got[name] == pytest.approx(naive_interval(array, statistic(name), num_resamples, seed=7), abs=1e-12)


@pytest.mark.parametrize("high", [3, 40, 10_000])  # few distinct ranks (many ties) to all distinct
@pytest.mark.parametrize("sigmas", [8.0, 0.0])  # a window of distinct values no set's median leaves, or most do
def test_median_intervals_equal_the_naive_loop_exactly(high, sigmas, monkeypatch):
    # A median is read from the draws at or below the distinct values of a window around the sample's median, or,
    # in a batch where some set's median lies outside it (most, with no room: `sigmas` 0) or where the window is too
    # wide (every rank distinct), from draw counts per distinct value: the same middle values as np.median, so the
    # same floats.
    monkeypatch.setattr(uncertainty, "_MEDIAN_SIGMAS", sigmas)
    counted = []
    weighted_medians = uncertainty._weighted_medians
    monkeypatch.setattr(uncertainty, "_weighted_medians", lambda *args: counted.append(1) or weighted_medians(*args))
    ranks = np.random.default_rng(high).integers(1, high, size=301).astype(float)
    window = uncertainty._Median(ranks)
    assert (window.columns is None) == (high == 10_000 and sigmas > 0)
    got = bootstrap_intervals({"x_median_rank": ranks}, num_resamples=450, seed=2)["x_median_rank"]
    assert got == naive_interval(ranks, np.median, 450, seed=2)
    batches = -(-450 // _BATCH)
    assert len(counted) == (0 if window.columns is not None and sigmas > 0 else batches)  # the path each batch took


def test_several_directions_at_once_give_each_its_own_intervals_bit_for_bit():
    # A task's two directions over as many queries share one draw of query sets (the same seed draws the same
    # sets anyway); another number of queries draws its own. Each set's intervals are those it has alone.
    rng = np.random.default_rng(4)

    def direction(num_queries, high):
        first = rng.integers(1, high, size=num_queries).astype(float)
        return {"x_pass@5": (first <= 5).astype(float), "x_mrr": 1 / first, "x_median_rank": first}

    sets = [direction(301, 40), direction(57, 9), direction(301, 1000), {"x_median_rank": direction(301, 7)["x_mrr"]}]
    alone = [bootstrap_intervals(values, num_resamples=450, seed=3) for values in sets]
    assert bootstrap_intervals_of(sets, num_resamples=450, seed=3) == alone


def test_interval_of_two_queries_by_hand():
    # Resampled means of [0, 1] are 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5% points are 0, 1.
    (low, high) = bootstrap_intervals({"m": np.array([0.0, 1.0])}, num_resamples=4000, seed=0)["m"]
    assert (low, high) == (0.0, 1.0)
    # With a 40% interval the 30% and 70% points both fall in the middle value's half.
    assert bootstrap_intervals({"m": np.array([0.0, 1.0])}, num_resamples=4000, confidence=0.4)["m"] == (0.5, 0.5)


def test_constant_values_have_a_point_interval_and_the_seed_is_the_only_randomness():
    assert bootstrap_intervals({"m": np.full(10, 0.3)})["m"] == pytest.approx((0.3, 0.3))
    values = {"m": np.random.default_rng(0).random(100)}
    assert bootstrap_intervals(values, seed=5) == bootstrap_intervals(values, seed=5)
    assert bootstrap_intervals(values, seed=5) != bootstrap_intervals(values, seed=6)


def test_paired_permutation_p_value_by_hand():
    # a = 0, b = 1 on 4 queries: delta 1. A random swap of each pair gives delta = mean of 4 random signs, which
    # reaches |1| only when all four signs agree: probability 2/16.
    result = paired_comparison({"m": np.zeros(4)}, {"m": np.ones(4)}, num_resamples=20000, seed=1)["m"]
    assert (result["a"], result["b"], result["delta"]) == (0.0, 1.0, 1.0)
    assert result["p_value"] == pytest.approx(1 / 8, abs=0.01)
    assert (result["low"], result["high"]) == (1.0, 1.0)  # every resample of the pairs has delta 1


def test_identical_runs_are_not_different():
    values = {"m": np.random.default_rng(0).random(50), "q_median_rank": np.arange(50.0)}
    result = paired_comparison(values, values, num_resamples=300)
    for name in values:
        assert result[name]["delta"] == 0 and result[name]["p_value"] == 1.0
        assert (result[name]["low"], result[name]["high"]) == (0.0, 0.0)


def test_a_clear_difference_is_significant_and_its_interval_excludes_zero():
    rng = np.random.default_rng(0)
    a = rng.random(400)
    b = a + 0.1 + 0.01 * rng.standard_normal(400)
    result = paired_comparison({"m": a}, {"m": b}, num_resamples=500)["m"]
    assert result["p_value"] == pytest.approx(1 / 501)
    assert result["low"] > 0 and result["low"] < result["delta"] < result["high"]
    # The paired interval is far narrower than the unpaired ones of the two runs.
    (a_low, a_high), (b_low, b_high) = (bootstrap_intervals({"m": x})["m"] for x in (a, b))
    assert result["high"] - result["low"] < (a_high - a_low) / 5


@pytest.mark.parametrize(
    "values, message",
    [
        ({"m": np.zeros(0)}, "no queries"),
        ({"m": np.zeros(3), "n": np.zeros(4)}, "all of one length"),
        ({"m": np.zeros((2, 2))}, "1-D"),
    ],
)
def test_bad_values_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_intervals(values)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="num_resamples=0"):
        bootstrap_intervals({"m": np.zeros(3)}, num_resamples=0)
    with pytest.raises(ValueError, match="confidence=1"):
        bootstrap_intervals({"m": np.zeros(3)}, confidence=1)
    with pytest.raises(ValueError, match="different metrics"):
        paired_comparison({"m": np.zeros(3)}, {"n": np.zeros(3)})
