"""Confidence intervals over videos: a percentile bootstrap, the same resamples for every statistic.

A benchmark score is a mean over a few dozen sampled videos, so two methods' means differ by chance as well as
by skill. The bootstrap redraws the videos with replacement many times and recomputes the statistic each time;
the middle 95% of those recomputed values is the 95% confidence interval.

    mean_ci(values)                  -> Interval per column of a (videos,) or (videos, k) array; nan = undefined
                                        for that video (e.g. no move judged in a window): left out of that column
    standardized_ci(values, strata, weights) -> Interval of the per-stratum means weighted by `weights` (e.g. the
                                        data's mix of object counts), and each stratum's Interval
    pooled_ci(counts, statistic)     -> Interval of statistic(counts summed over the videos), e.g. a distance
                                        between the pooled histogram of the samples and the data's
    total_variation(p, q)            -> half the L1 distance between two histograms, each normalised to sum 1

Try it:
    python -c "import numpy as np; from mebt.stats import mean_ci; print(mean_ci(np.r_[np.ones(30), np.zeros(70)]))"
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import numpy as np

RESAMPLES = 2000      # bootstrap redraws: the interval's ends move by well under 1% between seeds
LEVEL = 0.95          # the reported interval holds the middle 95% of the redrawn statistics
SEED = 0              # the same redraws on every run: a re-run reproduces every interval exactly


class Interval(NamedTuple):
    mean: float | None    # the statistic on the videos as drawn; None where no video defines it
    low: float | None
    high: float | None


def resample_indices(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) video indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # an all-nan column is nan: "undefined", not an error
        return np.nanmean(values, axis)


def _interval(point: float, redrawn: np.ndarray, level: float) -> Interval:
    """The point value and the percentile interval of its redrawn values (nan-aware; None for JSON)."""
    redrawn = redrawn[np.isfinite(redrawn)]
    if not np.isfinite(point) or len(redrawn) == 0:
        return Interval(None, None, None)
    low, high = np.quantile(redrawn, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(point), float(low), float(high))


def mean_ci(values, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> Interval | list[Interval]:
    """Mean over videos with its bootstrap interval. values: (n,) -> one Interval; (n, k) -> a list of k.

    nan marks a video for which that column is undefined: it is left out of the mean (and of each redraw)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim not in (1, 2) or len(values) == 0:
        raise ValueError(f"mean_ci: expected a non-empty (videos,) or (videos, k) array, got shape {values.shape}")
    columns = values.reshape(len(values), -1)                                    # (n, k)
    redrawn = nanmean(columns[resample_indices(len(values), resamples, seed)], axis=1)   # (R, k)
    point = nanmean(columns, axis=0)                                            # (k,)
    intervals = [_interval(point[j], redrawn[:, j], level) for j in range(columns.shape[1])]
    return intervals[0] if values.ndim == 1 else intervals


def standardized_ci(values, strata, weights, level: float = LEVEL, resamples: int = RESAMPLES,
                    seed: int = SEED) -> tuple[Interval, list[Interval]]:
    """The mean of `values` with the strata re-weighted to another mix (direct standardisation), and its interval.

    A model that draws simpler scenes than the data (say one object where the data has one or two) scores higher
    on per-video means that are easier for simple scenes; weighting each stratum's mean by the data's share of
    that stratum compares models at the data's mix. values: (n,) per video, finite; strata: (n,) ints in
    0..len(weights)-1; weights: (S,) the target mix (normalised here). Strata of weight 0 (e.g. videos that start
    empty, which the data never does) keep their observed share and mean; only the strata of positive weight are
    re-mixed among themselves:  sum_{w_s = 0} share_s * mean_s + (sum_{w_s > 0} share_s) * sum_{w_s > 0} w_s * mean_s.
    Returns (standardised Interval, one Interval per stratum's own mean). A stratum of positive weight with no
    video (in the sample, or in a redraw) leaves the standardised mean undefined there: None, or that redraw dropped."""
    values, strata = np.asarray(values, dtype=np.float64), np.asarray(strata)
    weights = np.asarray(weights, dtype=np.float64)
    if values.ndim != 1 or values.shape != strata.shape or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"standardized_ci: expected equal non-empty (videos,) arrays of finite values, got "
                         f"{values.shape} and {strata.shape}")
    if weights.ndim != 1 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"standardized_ci: expected non-negative (strata,) weights with a positive sum, got {weights}")
    if strata.min() < 0 or strata.max() >= len(weights):
        raise ValueError(f"standardized_ci: strata must lie in 0..{len(weights) - 1}, got {strata.min()}..{strata.max()}")
    weights, used = weights / weights.sum(), weights > 0
    member = np.eye(len(weights), dtype=bool)[strata]                           # (n, S) one-hot stratum per video
    columns = np.where(member, values[:, None], np.nan)                        # (n, S) a video's value in its stratum

    def standardize(members: np.ndarray, cols: np.ndarray) -> np.ndarray:     # (..., n, S) -> (...)
        share, mean = members.mean(-2), nanmean(cols, axis=-2)                 # (..., S) each
        kept = (share * np.nan_to_num(mean))[..., ~used].sum(-1)               # weight-0 strata: as observed
        # an empty stratum of positive weight has mean nan: the nan propagates, leaving this value undefined
        return kept + share[..., used].sum(-1) * (mean[..., used] @ weights[used])

    redraws = resample_indices(len(values), resamples, seed)                   # (R, n)
    standardized = _interval(float(standardize(member, columns)), standardize(member[redraws], columns[redraws]),
                             level)
    point, redrawn = nanmean(columns, axis=0), nanmean(columns[redraws], axis=1)   # (S,), (R, S)
    per_stratum = [_interval(point[j], redrawn[:, j], level) for j in range(len(weights))]
    return standardized, per_stratum


def pooled_ci(counts, statistic: Callable[[np.ndarray], np.ndarray], level: float = LEVEL,
              resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """statistic(counts pooled over the videos) with its bootstrap interval.

    counts: (n, bins) one histogram per video; statistic maps (..., bins) pooled histograms to (...) values."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or len(counts) == 0:
        raise ValueError(f"pooled_ci: expected a non-empty (videos, bins) array, got shape {counts.shape}")
    redrawn = statistic(counts[resample_indices(len(counts), resamples, seed)].sum(1))   # (R,)
    return _interval(float(statistic(counts.sum(0))), np.asarray(redrawn, dtype=np.float64), level)


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """TV(p, q) = 1/2 sum |p/sum(p) - q/sum(q)| over the last axis: 0 = the same distribution, 1 = disjoint.

    An empty histogram (nothing counted) is at distance 1 from any other: it shares no mass with it."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.nan_to_num(p / p.sum(-1, keepdims=True))                          # 0/0 -> all zeros
        q = np.nan_to_num(q / q.sum(-1, keepdims=True))
    return np.where((p.sum(-1) == 0) != (q.sum(-1) == 0), 1.0, 0.5 * np.abs(p - q).sum(-1))
