"""Feature, score and slice monitors and the loss detectors of models.drift.monitors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models.drift import (
    FeatureDriftMonitor,
    LossDriftDetector,
    ScoreDriftMonitor,
    SliceMonitor,
    ks_2samp,
    psi,
)
from models.evaluation.metrics import log_losses


def test_psi_matches_its_definition_and_is_zero_for_equal_histograms() -> None:
    e, a = np.array([30, 50, 20]), np.array([20, 40, 40])
    by_hand = sum((x / 100 - y / 100) * math.log(x / y) for x, y in zip(a, e, strict=True))
    assert psi(e, a) == pytest.approx(by_hand)
    assert psi(e, e * 3) == 0.0
    assert psi(np.array([10, 0]), np.array([0, 10])) == pytest.approx(2 * math.log(1e4), rel=1e-3)


@pytest.mark.parametrize(("n", "m", "shift"), [(300, 500, 0.1), (2_000, 1_000, 0.05),
                                               (5_000, 5_000, 0.0), (200, 200, 0.4)])
def test_ks_agrees_with_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(0, 1, n), rng.normal(shift, 1, m)
    ours = ks_2samp(a, b)
    theirs = stats.ks_2samp(a, b, method="asymp")
    assert ours[0] == pytest.approx(theirs.statistic)
    assert ours[1] == pytest.approx(theirs.pvalue, abs=0.01)


def rows(n: int, seed: int, mobile: float = 0.5, price_mean: float = 40.0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"device": "mobile" if rng.random() < mobile else "desktop",
             "price": float(rng.gamma(4.0, price_mean / 4.0)), "hour": int(rng.integers(24))}
            for _ in range(n)]


def test_feature_drift_is_low_on_the_same_distribution_and_high_after_a_shift() -> None:
    kinds = {"device": "categorical", "price": "numeric"}
    same = FeatureDriftMonitor(kinds, reference_size=4_000, window=2_000)
    same.update(rows(4_000, seed=1))
    assert same.drift() == {}  # the reference is complete, the window still empty
    same.update(rows(2_000, seed=2))
    figures = same.drift()
    assert figures["device"].psi < 0.01 and figures["price"].psi < 0.02
    assert figures["device"].ks is None and figures["price"].ks < 0.05
    assert figures["price"].ks_pvalue > 0.01
    assert (figures["price"].n_reference, figures["price"].n_current) == (4_000, 2_000)

    moved = FeatureDriftMonitor(kinds, reference_size=4_000, window=2_000)
    moved.update(rows(4_000, seed=1))
    moved.update(rows(2_000, seed=3, mobile=0.9, price_mean=60.0))
    figures = moved.drift()
    assert figures["device"].psi > 0.25 and figures["price"].psi > 0.25
    assert figures["price"].ks > 0.2 and figures["price"].ks_pvalue < 1e-6


def test_the_current_window_slides_and_memory_stays_bounded() -> None:
    m = FeatureDriftMonitor({"device": "categorical", "price": "numeric"},
                            reference_size=1_000, window=500, max_categories=3)
    m.update([{"device": f"d{i % 50}", "price": 1.0} for i in range(1_000)])
    m.update([{"device": "new", "price": 2.0} for _ in range(5_000)])
    figures = m.drift()
    assert figures["device"].n_current == 500 == figures["price"].n_current
    # 3 categories of the reference and 'other': 'new' is pooled with the reference's rest.
    assert m._monitors["device"].binning.size == 4  # type: ignore[union-attr]
    assert figures["price"].ks == 1.0


def test_missing_and_non_numeric_values_are_handled() -> None:
    m = FeatureDriftMonitor({"device": "categorical", "price": "numeric"},
                            reference_size=10, window=10)
    m.update([{"price": "cheap"}, {"price": None}, {"price": True}] + [{}] * 7)
    m.update([{"device": "tv", "price": 3.0}] * 20)
    figures = m.drift()
    assert figures["device"].psi > 10  # all 'missing' in the reference, all 'tv' now
    # Non-numbers were skipped: the 20 prices of 3.0 made the reference and the window.
    price = figures["price"]
    assert (price.n_reference, price.n_current, price.psi, price.ks) == (10, 10, 0.0, 0.0)


def test_unknown_feature_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="categorical or numeric"):
        FeatureDriftMonitor({"device": "ordinal"})  # type: ignore[dict-item]


def test_score_drift_sees_a_model_that_scores_higher() -> None:
    rng = np.random.default_rng(4)
    m = ScoreDriftMonitor(reference_size=2_000, window=1_000)
    m.update(rng.beta(1, 19, 2_000))
    m.update(rng.beta(1, 19, 1_000))
    assert m.drift() is not None and m.drift().psi < 0.05  # type: ignore[union-attr]
    m.update(rng.beta(2, 18, 1_000))  # mean 0.05 → 0.10
    shifted = m.drift()
    assert shifted is not None and shifted.psi > 0.25 and shifted.feature == "score"


def test_slices_keep_rolling_loss_and_ctr_per_value_with_a_bounded_label_set() -> None:
    m = SliceMonitor("device", max_slices=3, window=4)
    feats = [{"device": "mobile"}, {"device": "desktop"}, {"device": "tv"}, {"device": "car"}]
    m.update(feats, np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.5, 0.2, 0.4, 0.1]),
             np.array([0.7, 0.2, 0.9, 0.1]))
    figures = m.figures()
    assert set(figures) == {"mobile", "desktop", "other"}  # tv and car share 'other'
    assert figures["other"].n == 2
    assert figures["other"].log_loss == pytest.approx(0.5)
    assert figures["other"].ctr == pytest.approx(0.5)
    assert figures["other"].predicted_ctr == pytest.approx(0.25)
    for _ in range(3):  # the window keeps the last 4 of a slice
        m.update([{"device": "mobile"}] * 2, np.zeros(2), np.full(2, 0.1), np.full(2, 0.1))
    assert m.figures()["mobile"].n == 4 and m.figures()["mobile"].ctr == 0.0


def test_page_hinkley_alarms_on_a_rise_only() -> None:
    rng = np.random.default_rng(5)
    up = LossDriftDetector("page_hinkley")
    alarms = [up.update(rng.exponential(0.2, 512)) for _ in range(16)]
    assert alarms == [None] * 16
    alarm = up.update(rng.exponential(0.5, 512))
    assert alarm is not None and alarm.detector == "page_hinkley" and alarm.after > alarm.before
    down = LossDriftDetector("page_hinkley")
    for _ in range(8):
        down.update(rng.exponential(0.5, 512))
    assert [down.update(rng.exponential(0.1, 512)) for _ in range(8)] == [None] * 8
    assert up.alarms == 1 and down.alarms == 0


def scored(n: int, rng: np.random.Generator, click_scale: float = 1.0,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Losses and residuals of a champion calibrated at ~8 % CTR, clicks scaled."""
    p = rng.beta(1.0, 12.0, n)
    y = (rng.random(n) < np.minimum(1.0, p * click_scale)).astype(np.float64)
    return log_losses(y, p), y - p


def test_fewer_clicks_lower_the_loss_but_the_calibration_detector_alarms() -> None:
    rng = np.random.default_rng(6)
    detector = LossDriftDetector("adwin")
    steady = [detector.update(*scored(512, rng)) for _ in range(40)]
    assert steady == [None] * 40  # calibrated: no alarm in 20,000 examples
    before = np.mean([scored(512, rng)[0].mean() for _ in range(5)])
    losses, residuals = scored(512, rng, click_scale=0.3)  # 70 % of the clicks are gone
    assert losses.mean() < before  # the loss alone says "better"
    assert LossDriftDetector("adwin").update(losses) is None
    alarms = [detector.update(losses, residuals), detector.update(*scored(512, rng, 0.3))]
    alarm = next(a for a in alarms if a is not None)  # within two batches
    assert alarm.signal == "calibration" and alarm.after < 0 < abs(alarm.after) - abs(
        alarm.before)
    assert "champion calibration moved, mean (label - score) from" in alarm.reason


def test_a_calibration_move_across_zero_alarms() -> None:
    """A slightly under-predicting champion (+0.02) whose clicks fall (-0.11): ADWIN first sees
    the change when the window's mean is near 0, which looked like "back to calibrated"."""
    rng = np.random.default_rng(8)
    detector = LossDriftDetector("adwin")
    for _ in range(20):
        y = (rng.random(512) < 0.2).astype(float)
        assert detector.update(log_losses(y, np.full(512, 0.18)), y - 0.18) is None
    alarms = []
    for _ in range(2):
        y = (rng.random(512) < 0.04).astype(float)
        alarms.append(detector.update(log_losses(y, np.full(512, 0.15)), y - 0.15))
    alarm = next(a for a in alarms if a is not None)  # within two batches
    assert alarm.signal == "calibration"
    assert alarm.before > 0 > alarm.after and abs(alarm.after) > abs(alarm.before)


def test_calibration_can_be_left_out() -> None:
    rng = np.random.default_rng(7)
    detector = LossDriftDetector("adwin", calibration=False)
    for _ in range(20):
        detector.update(*scored(512, rng))
    assert [detector.update(*scored(512, rng, 0.3)) for _ in range(4)] == [None] * 4
