"""Accounting: hand-computed log losses, regret, CTR and recovery; the truth is unbeatable."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.evaluation import log_loss
from services.simulator import (
    Accounting,
    CtrTracker,
    RecoveryTracker,
    SimulatorError,
    State,
    build,
    expected_log_loss,
    recovery_labels,
    within_tolerance_share,
)
from services.simulator.accounting import RollingMean, oracle_top_k


def test_log_loss_by_hand() -> None:
    assert log_loss(1, 0.25) == pytest.approx(math.log(4))
    assert log_loss(0, 0.25) == pytest.approx(math.log(4 / 3))
    assert log_loss(1, 0.0) == pytest.approx(-math.log(1e-7))  # clipped, finite
    assert log_loss(0, 1.0) == pytest.approx(-math.log(1e-7))
    assert log_loss(1, math.nan) == pytest.approx(-math.log(1e-7))


def test_a_model_that_outputs_the_truth_has_zero_regret() -> None:
    acc = Accounting(window=3)
    rng = np.random.default_rng(0)
    for p in rng.uniform(0.01, 0.5, size=100):
        acc.update(int(rng.random() < p), served=float(p), frozen=0.05, optimal=float(p))
    assert acc.overall().regret == 0.0
    assert acc.rolling().regret == 0.0
    assert acc.overall().frozen_regret != 0.0


def test_a_constant_model_has_the_regret_computed_by_hand() -> None:
    acc = Accounting(window=100)
    for label, p in [(1, 0.8), (0, 0.2), (0, 0.2), (0, 0.2)]:
        acc.update(label, served=0.25, frozen=0.5, optimal=p)
    f = acc.overall()
    # system: (ln 4 + 3 ln 4/3) / 4; optimal: -ln 0.8 on every label; frozen: ln 2.
    assert f.n == 4
    assert f.system == pytest.approx(0.5623351446188083)
    assert f.optimal == pytest.approx(0.2231435513142097)
    assert f.regret == pytest.approx(0.3391915933045986)
    assert f.frozen == pytest.approx(math.log(2))
    assert acc.rolling() == f


def test_rolling_figures_forget_older_labels() -> None:
    acc = Accounting(window=2)
    for served in (0.9, 0.5, 0.25):
        acc.update(1, served=served, frozen=0.5, optimal=0.5)
    r = acc.rolling()
    assert r.n == 2
    assert r.system == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert acc.overall().n == 3


def test_rolling_mean_stays_exact_over_long_runs() -> None:
    m = RollingMean(7)
    values = np.random.default_rng(1).lognormal(size=10_000) * 1e6
    for v in values:
        m.update(float(v))
    assert m.mean == pytest.approx(values[-7:].mean(), rel=1e-12)
    with pytest.raises(SimulatorError):
        RollingMean(0)


def test_ctr_of_served_and_oracle_rankings() -> None:
    t = CtrTracker(window=2)
    t.update(shown_true_p=[0.9], clicks=1, oracle_true_p=[0.9])  # dropped by the window
    t.update(shown_true_p=[0.1, 0.3], clicks=0, oracle_true_p=oracle_top_k([0.1, 0.3, 0.5], 2))
    t.update(shown_true_p=[0.2, 0.2], clicks=2, oracle_true_p=[0.4, 0.4])
    f = t.figures()
    assert f.impressions == 4
    assert f.served == 0.5
    assert f.served_expected == pytest.approx(0.2)
    assert f.oracle_expected == pytest.approx(0.4)
    assert f.ratio == pytest.approx(0.5)
    assert math.isnan(CtrTracker().figures().served)


def test_recovery_counts_post_drift_labels_until_within_tolerance() -> None:
    #          pre-drift | after the drift at label 3
    system = [1.0, 1.0, 1.0, 3.0, 2.0, 1.5, 1.06, 1.04, 1.0]
    optimal = [1.0] * len(system)
    # windows of 2 after the drift: (3,2)=2.5, (2,1.5)=1.75, (1.5,1.06)=1.28,
    # (1.06,1.04)=1.05 <= 1.05 * 1.0 at the 5th post-drift label.
    assert recovery_labels(system, optimal, drift_index=3, window=2) == 5
    # (1.04, 1.0) = 1.02 is the first window within 3 %.
    assert recovery_labels(system, optimal, drift_index=3, window=2, tolerance=0.03) == 6
    assert recovery_labels(system, optimal, drift_index=3, window=2, tolerance=0.0) is None
    # Exactly on the bound counts as recovered (binary-exact figures: 1.25 <= 1.25 * 1.0).
    assert recovery_labels([1.5, 1.0], [1.0, 1.0], drift_index=0, window=2,
                           tolerance=0.25) == 2


def test_recovery_never_counts_before_a_drift_nor_earlier_than_a_window() -> None:
    t = RecoveryTracker(window=3)
    assert [t.update(1.0, 1.0) for _ in range(5)] == [None] * 5
    t.drift()
    assert [t.update(1.0, 1.0) for _ in range(4)] == [None, None, 3, 3]
    t.drift()  # a second drift measures again
    assert t.recovered is None
    with pytest.raises(SimulatorError):
        recovery_labels([1.0], [], drift_index=0)


def test_the_truth_beats_every_other_scorer_on_a_large_sample() -> None:
    scenario = build("sudden", seed=8, drift_at=0)
    world = scenario.world()
    stale = State()  # the truth before the drift: what a frozen model would have learnt
    rng = np.random.default_rng(8)
    losses: dict[str, list[float]] = {"optimal": [], "constant": [], "noisy": [], "stale": []}
    expected: dict[str, list[float]] = {k: [] for k in losses}
    for n in range(3_000):
        req = scenario.request(world, n)
        user = int(req.user_id[1:])
        items = np.array([int(c["item_id"][1:]) for c in req.candidates])
        p = np.array(req.true_p)
        scores = {
            "optimal": p,
            "constant": np.full(len(p), 0.05),
            "noisy": 1 / (1 + np.exp(-(np.log(p / (1 - p)) + rng.normal(0, 0.5, len(p))))),
            "stale": world.true_p(user, items, req.context["device"], req.context["hour"], stale),
        }
        labels = rng.random(len(p)) < p
        for name, q in scores.items():
            losses[name] += [log_loss(int(y), float(s)) for y, s in zip(labels, q, strict=True)]
            expected[name] += [expected_log_loss(float(s), float(t)) for s, t in zip(q, p,
                                                                                    strict=True)]
    mean = {k: float(np.mean(v)) for k, v in losses.items()}
    for name in ("constant", "noisy", "stale"):
        assert mean["optimal"] < mean[name], (name, mean)
        # Without label noise the truth is never beaten, prediction by prediction.
        assert all(o <= e + 1e-12 for o, e in zip(expected["optimal"], expected[name],
                                                   strict=True))


def test_within_tolerance_share_counts_every_full_window_by_hand() -> None:
    system = [1.0, 1.0, 1.0, 1.2, 1.2, 1.0, 1.0, 1.0]
    optimal = [1.0] * 8
    # Windows of 3 end at labels 3..8; their means: 1, 1.0667, 1.1333, 1.1333, 1.0667, 1.
    assert within_tolerance_share(system, optimal, window=3, tolerance=0.1) == pytest.approx(
        4 / 6)
    assert within_tolerance_share(system, optimal, window=3, tolerance=0.05) == pytest.approx(
        2 / 6)
    assert within_tolerance_share(system, optimal, window=1, tolerance=0.0) == pytest.approx(
        6 / 8)
    # Exactly on the bound counts (binary-exact figures: 1.25 <= 1.25 * 1.0), as in recovery.
    assert within_tolerance_share([1.5, 1.0], [1.0, 1.0], window=2, tolerance=0.25) == 1.0


def test_within_tolerance_share_agrees_with_recovery_on_the_first_window() -> None:
    rng = np.random.default_rng(3)
    optimal = rng.uniform(0.2, 0.4, size=400)
    system = optimal * np.linspace(1.5, 1.0, 400)  # converging towards the truth
    share = within_tolerance_share(system.tolist(), optimal.tolist(), window=50)
    recovered = recovery_labels(system.tolist(), optimal.tolist(), drift_index=0, window=50)
    # Monotone convergence: every window from the recovery on is within, none before.
    assert recovered is not None
    assert share == pytest.approx((400 - recovered + 1) / (400 - 50 + 1))


def test_within_tolerance_share_needs_a_full_window_and_matching_lengths() -> None:
    assert within_tolerance_share([1.0] * 3, [1.0] * 3, window=4) is None
    with pytest.raises(SimulatorError):
        within_tolerance_share([1.0], [], window=1)
    with pytest.raises(SimulatorError):
        within_tolerance_share([1.0], [1.0], window=1, tolerance=-0.1)
