"""mebt/stats.py: bootstrap intervals on samples whose answer is known, and the total variation distance.

    python -m pytest -q tests/test_stats.py
"""
import math

import numpy as np
import pytest

from mebt.stats import Interval, mean_ci, pooled_ci, standardized_ci, total_variation


def test_constant_data_has_a_zero_width_interval():
    assert mean_ci(np.full(40, 0.7)) == Interval(0.7, 0.7, 0.7)


def test_two_valued_sample_matches_the_binomial_interval():
    values = np.r_[np.ones(30), np.zeros(70)]                       # p = 0.3, n = 100
    interval = mean_ci(values, resamples=20000)
    half = 1.96 * math.sqrt(0.3 * 0.7 / 100)                        # the normal approximation: 0.0898
    assert interval.mean == pytest.approx(0.3)
    assert interval.low == pytest.approx(0.3 - half, abs=0.015)
    assert interval.high == pytest.approx(0.3 + half, abs=0.015)
    assert mean_ci(values, resamples=20000) == interval              # the same redraws every time


def test_interval_narrows_as_one_over_root_n():
    rng = np.random.default_rng(0)
    small, large = (mean_ci(rng.normal(size=n)) for n in (100, 400))
    assert (small.high - small.low) / (large.high - large.low) == pytest.approx(2, rel=0.15)


def test_columns_and_undefined_values():
    values = np.array([[1.0, np.nan, np.nan], [0.0, 4.0, np.nan], [1.0, 2.0, np.nan]])   # (videos, columns)
    first, second, third = mean_ci(values)
    assert first.mean == pytest.approx(2 / 3) and 0 <= first.low <= first.mean <= first.high <= 1
    assert second.mean == 3.0 and 2.0 <= second.low <= second.high <= 4.0                 # nan videos left out
    assert third == Interval(None, None, None)                                              # defined nowhere
    with pytest.raises(ValueError, match="non-empty"):
        mean_ci(np.zeros((0, 2)))


def test_total_variation_on_known_histograms():
    assert total_variation([1, 0], [0, 3]) == 1.0                   # disjoint
    assert total_variation([1, 1], [5, 5]) == 0.0                   # only the shape of a histogram counts
    assert total_variation([3, 1], [1, 1]) == pytest.approx(0.25)
    assert total_variation([0, 0], [1, 1]) == 1.0                   # nothing counted shares nothing
    np.testing.assert_allclose(total_variation([[1, 0], [1, 1]], [1, 1]), [0.5, 0.0])   # batched over rows


def test_pooled_interval_of_a_distance():
    data = np.array([1.0, 1.0, 1.0])
    same = np.tile([1, 1, 1], (20, 1))                             # every video matches the data exactly
    assert pooled_ci(same, lambda pooled: total_variation(pooled, data)) == Interval(0.0, 0.0, 0.0)
    always_first = np.tile([1, 0, 0], (20, 1))                     # a model that always draws the same thing
    assert pooled_ci(always_first, lambda pooled: total_variation(pooled, data)).mean == pytest.approx(2 / 3)
    mixed = np.eye(3)[np.arange(30) % 3]                            # a third each: pooled exactly uniform
    interval = pooled_ci(mixed, lambda pooled: total_variation(pooled, data))
    assert interval.mean == pytest.approx(0) and 0 < interval.high < 0.35   # redraws wobble around it


def test_standardizing_removes_the_advantage_of_simpler_scenes():
    # Two models with the same skill per scene (1 object: 0.9, 2 objects: 0.5), one drawing mostly 1-object scenes:
    # the raw means differ, the means at the data's 50/50 mix are both 0.7
    simple = np.r_[np.full(45, 0.9), np.full(5, 0.5)], np.r_[np.ones(45, int), np.full(5, 2)]
    mixed = np.r_[np.full(25, 0.9), np.full(25, 0.5)], np.r_[np.ones(25, int), np.full(25, 2)]
    data_mix = np.array([0, 254, 258])                              # counts 0, 1, 2 as in the synthetic data
    assert mean_ci(simple[0]).mean == pytest.approx(0.86) and mean_ci(mixed[0]).mean == pytest.approx(0.7)
    for values, strata in (simple, mixed):
        standardized, per_count = standardized_ci(values, strata, data_mix)
        assert standardized.mean == pytest.approx(0.9 * 254 / 512 + 0.5 * 258 / 512)
        assert per_count[0] == Interval(None, None, None)          # no 0-object video: undefined, weight 0
        assert np.allclose(per_count[1], 0.9) and np.allclose(per_count[2], 0.5)   # a constant: zero width


def test_standardized_mean_is_undefined_when_a_weighted_stratum_is_empty():
    standardized, per_count = standardized_ci(np.full(10, 0.8), np.ones(10, int), [0, 1, 1])
    assert standardized == Interval(None, None, None) and per_count[1].mean == pytest.approx(0.8)
    # a stratum of weight 0 may be empty; where it holds videos, they keep their share and their mean: an empty
    # frame 1 (persistence 0) still costs what it costs the raw mean
    assert standardized_ci(np.full(10, 0.8), np.ones(10, int), [0, 1])[0].mean == pytest.approx(0.8)
    values, strata = np.r_[np.full(8, 0.8), np.full(2, 0.4), 0.0, 0.0], np.r_[np.ones(8, int), 2, 2, 0, 0]
    standardized, _ = standardized_ci(values, strata, [0, 1, 1])
    assert standardized.mean == pytest.approx(2 / 12 * 0 + 10 / 12 * (0.5 * 0.8 + 0.5 * 0.4))


def test_standardized_interval_covers_the_sampling_noise():
    rng = np.random.default_rng(0)
    strata = rng.integers(1, 3, size=200)
    values = rng.random(200) < np.where(strata == 1, 0.9, 0.5)     # 0/1 per video, 0.7 expected at a 50/50 mix
    standardized, _ = standardized_ci(values, strata, [0, 1, 1])
    assert standardized.low < 0.7 < standardized.high and standardized.high - standardized.low < 0.2


@pytest.mark.parametrize("values, strata, weights, message", [
    (np.ones(3), np.ones(2, int), [1, 1], "equal non-empty"),
    (np.r_[1.0, np.nan], np.ones(2, int), [1, 1], "finite"),
    (np.ones(2), np.ones(2, int), [1, -1], "non-negative"),
    (np.ones(2), np.full(2, 5), [1, 1], "strata must lie in 0..1"),
])
def test_standardized_bad_input_is_one_line(values, strata, weights, message):
    with pytest.raises(ValueError, match=message):
        standardized_ci(values, strata, weights)
