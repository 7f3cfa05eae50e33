"""The gate's statistics against references: scipy's t distribution, brute-force AUC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats  # a dependency of river; used here only as a reference

from models.metrics import EPS, WORST_LOSS, auc, log_losses, t_sf


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
