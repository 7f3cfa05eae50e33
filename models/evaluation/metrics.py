"""Evaluation helpers the gate is built from: per-example log loss, AUC and Student's t tail.

All pure functions of numpy arrays or floats. The t tail is computed here (regularised
incomplete beta by continued fraction) rather than imported from ``scipy.stats``, whose import
alone costs about a second in every process that merely wants to score a gate decision; the
unit tests check it against scipy.

Example:
    >>> losses = log_losses([1, 0], [0.5, 0.5])
    >>> [round(float(x), 4) for x in losses]
    [0.6931, 0.6931]
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> round(t_sf(1.96, 10_000), 4)
    0.025
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np

EPS: Final = 1e-7
# A non-finite score counts as the worst prediction a clipped model can make.
WORST_LOSS: Final = -math.log(EPS)
_CF_MAX_ITER: Final = 10_000
_CF_TINY: Final = 1e-300

ArrayLike = Sequence[float] | Sequence[int] | np.ndarray


def log_losses(labels: ArrayLike, scores: ArrayLike, eps: float = EPS) -> np.ndarray:
    """Per-example binary log loss, scores clipped to ``[eps, 1 - eps]``.

    A NaN or infinite score gets the worst clipped loss, ``-log(eps)``, so the losses of a
    misbehaving model stay finite and comparable (the gate rejects such a model separately).

    Args:
        labels: 0/1 per example.
        scores: Predicted click probabilities, same length.
        eps: Clipping bound.

    Returns:
        float64 array of losses, one per example.

    Example:
        >>> [round(float(x), 3) for x in log_losses([1, 1, 0], [0.9, float("nan"), 0.0])]
        [0.105, 16.118, 0.0]
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    finite = np.isfinite(p)
    q = np.clip(np.where(finite, p, 0.5), eps, 1.0 - eps)
    losses = -(y * np.log(q) + (1.0 - y) * np.log1p(-q))
    return np.where(finite, losses, -math.log(eps))


def log_loss(labels: ArrayLike | float, scores: ArrayLike | float, eps: float = EPS) -> float:
    """Mean binary log loss (``log_losses`` averaged; 0.0 for no examples). The one place the
    project computes it: the learners' reported loss, the gate, the simulator's accounting.

    Example:
        >>> round(log_loss([1, 0], [0.5, 0.5]), 4), round(log_loss(1, 0.25), 4)
        (0.6931, 1.3863)
    """
    losses = log_losses(np.atleast_1d(labels), np.atleast_1d(scores), eps)
    return float(losses.mean()) if losses.size else 0.0


def auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U); tied scores share their rank.

    Args:
        labels: 0/1 per example.
        scores: Finite scores, same length; only their order matters.

    Returns:
        The AUC in [0, 1], or NaN when the labels are all 0 or all 1 (undefined).

    Example:
        >>> auc([0, 1], [0.5, 0.5])
        0.5
        >>> auc([1, 0, 1], [0.9, 0.1, 0.8])
        1.0
        >>> auc([1, 1], [0.2, 0.3])
        nan
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    positive = y == 1.0
    n_pos = int(positive.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(average_ranks(s)[positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def auc_difference_z(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> float:
    """DeLong's z statistic of ``AUC(a) − AUC(b)`` on the same examples (paired).

    The two AUCs' variances and covariance come from each model's structural components
    (per positive: the share of negatives it outranks; per negative: the share of positives
    above it; ties count half), computed from ranks in O(n log n) (Sun and Xu, 2014).

    Returns:
        z (positive: ``a`` ranks better), 0.0 when the models rank identically, ±inf for a
        difference without variance, NaN with fewer than two positives or negatives.

    Example:
        >>> y = [0, 0, 1, 1, 0, 1, 0, 1]
        >>> round(auc_difference_z(y, [.1, .2, .8, .7, .3, .9, .4, .6],
        ...                           [.5, .2, .4, .7, .6, .3, .1, .8]), 2)
        1.22
    """
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    positive = y == 1.0
    m = int(positive.sum())
    n = y.size - m
    if m < 2 or n < 2:
        return math.nan
    v10, v01 = [], []
    for scores in (scores_a, scores_b):
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        ranks = average_ranks(s)
        v10.append((ranks[positive] - average_ranks(s[positive])) / n)
        v01.append(1.0 - (ranks[~positive] - average_ranks(s[~positive])) / m)
    diff = float(v10[0].mean() - v10[1].mean())
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    var = ((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m
           + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n)
    if var <= 1e-300:
        return 0.0 if abs(diff) < 1e-12 else math.copysign(math.inf, diff)
    return diff / math.sqrt(var)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span.

    Example:
        >>> average_ranks(np.array([10.0, 30.0, 20.0, 30.0])).tolist()
        [1.0, 3.5, 2.0, 3.5]
    """
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], ordered.size]
    mean_rank = (starts + 1 + ends) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks


def t_sf(t: float, df: float) -> float:
    """Upper tail ``P(T > t)`` of Student's t distribution with ``df`` degrees of freedom.

    Args:
        t: The statistic; ``±inf`` gives 0 or 1.
        df: Degrees of freedom, > 0.

    Returns:
        The one-sided p-value of ``t``.

    Example:
        >>> t_sf(0.0, 5)
        0.5
        >>> round(t_sf(2.015, 5), 3)
        0.05
        >>> t_sf(float("inf"), 5), t_sf(float("-inf"), 5)
        (0.0, 1.0)
    """
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    # P(|T| > |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2)
    two_sided = betainc(df / 2.0, 0.5, df / (df + t * t))
    return 0.5 * two_sided if t > 0 else 1.0 - 0.5 * two_sided


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function ``I_x(a, b)`` (Lentz's continued fraction).

    Example:
        >>> round(betainc(2.0, 3.0, 0.4), 6)  # 1 - (1-x)^4 - 4x(1-x)^3 = 0.5248
        0.5248
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The fraction converges fast on the side of the mean; use the symmetry on the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def _beta_fraction(a: float, b: float, x: float) -> float:
    def nonzero(v: float) -> float:
        return v if abs(v) >= _CF_TINY else _CF_TINY

    c = 1.0
    d = 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, _CF_MAX_ITER):
        even = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 / nonzero(1.0 + even * d)
        c = nonzero(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 / nonzero(1.0 + odd * d)
        c = nonzero(1.0 + odd / c)
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            return h
    return h  # not converged to 1e-15; still accurate far beyond what a gate needs
