"""The statistics of models.drift.stats beyond their doctests: KS with weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from models.drift import ks_2samp


def test_integer_weights_give_the_statistic_of_the_repeated_sample() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(0.0, 1.0, 400), rng.normal(0.2, 1.0, 600)
    weights = rng.integers(1, 4, a.size)
    d, _ = ks_2samp(a, b, weights=weights.astype(float))
    assert d == pytest.approx(stats.ks_2samp(np.repeat(a, weights), b).statistic)
    # Kish's effective size is under the repeated sample's: the p-value is more cautious.
    _, p = ks_2samp(a, b, weights=weights.astype(float))
    assert p >= stats.ks_2samp(np.repeat(a, weights), b, method="asymp").pvalue - 0.01


def test_zero_weights_leave_values_out_and_no_weight_at_all_is_no_evidence() -> None:
    a = np.array([1.0, 2.0, 3.0, 100.0])
    assert ks_2samp(a, np.array([1.0, 2.0, 3.0]), weights=np.array([1.0, 1.0, 1.0, 0.0]))[0] \
        == 0.0
    assert ks_2samp(a, a, weights=np.zeros(4)) == (0.0, 1.0)
