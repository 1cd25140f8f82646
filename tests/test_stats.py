"""mebt/stats.py: bootstrap intervals on samples whose answer is known, and the total variation distance.

    python -m pytest -q tests/test_stats.py
"""
import math

import numpy as np
import pytest

from mebt.stats import Interval, mean_ci, pooled_ci, total_variation


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
