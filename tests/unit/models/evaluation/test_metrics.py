"""The gate's statistics against references: scipy's t distribution, brute-force AUC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats  # a dependency of river; used here only as a reference

from models.evaluation.metrics import EPS, WORST_LOSS, auc, auc_difference_z, log_losses, t_sf


@pytest.mark.parametrize("df", [1, 2, 5, 30, 499, 1023, 10_000, 1_000_000])
def test_t_tail_matches_scipy(df: int) -> None:
    for t in np.linspace(-12.0, 12.0, 97):
        assert t_sf(float(t), df) == pytest.approx(stats.t.sf(t, df), rel=1e-7, abs=1e-300)


def brute_auc(labels: list[int], scores: list[float]) -> float:
    pos = [s for y, s in zip(labels, scores, strict=True) if y]
    neg = [s for y, s in zip(labels, scores, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pair_counting_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 200).tolist()
    scores = (rng.integers(0, 12, 200) / 12).tolist()  # coarse scores: many ties
    assert auc(labels, scores) == pytest.approx(brute_auc(labels, scores), abs=1e-12)


def test_log_losses_clip_and_bound_bad_scores() -> None:
    losses = log_losses([1, 0, 1, 0], [1.0, 1.0, -np.inf, np.nan])
    assert losses.tolist() == pytest.approx([-np.log1p(-EPS), WORST_LOSS, WORST_LOSS, WORST_LOSS])


def brute_delong_z(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """DeLong's statistic from the full pair matrix psi (O(mn)), as in DeLong et al. 1988."""
    pos = labels == 1
    parts = []
    for s in (a, b):
        x, y = s[pos][:, None], s[~pos][None, :]
        psi = (x > y) + 0.5 * (x == y)
        parts.append((psi.mean(1), psi.mean(0), psi.mean()))
    s10 = np.cov(np.vstack([p[0] for p in parts]))
    s01 = np.cov(np.vstack([p[1] for p in parts]))
    var = ((s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / pos.sum()
           + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / (~pos).sum())
    return float((parts[0][2] - parts[1][2]) / np.sqrt(var))


@pytest.mark.parametrize("seed", range(5))
def test_auc_difference_z_matches_delong_from_pairs_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = (rng.random(400) < 0.15).astype(int)
    a = np.round(rng.random(400) + 0.3 * labels, 1)  # rounded: many ties
    b = np.round(0.5 * a + rng.random(400) * 0.5, 1)  # correlated with a, as paired models are
    assert auc_difference_z(labels, a, b) == pytest.approx(brute_delong_z(labels, a, b),
                                                           rel=1e-9)
    assert auc_difference_z(labels, b, a) == pytest.approx(-auc_difference_z(labels, a, b))


def test_auc_difference_z_edge_cases() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.2, 0.8, 0.3, 0.7])
    assert auc_difference_z(labels, s, s) == 0.0
    assert np.isnan(auc_difference_z([0, 0, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]))
