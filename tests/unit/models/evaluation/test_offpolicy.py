"""Off-policy estimates on constructed logs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.errors import OffPolicyError
from models.evaluation.offpolicy import (
    compare_ranking,
    ips,
    snips,
    top_share,
    top_share_ctr,
    weights,
)


def test_ips_and_snips_by_hand() -> None:
    r = np.array([1.0, 0.0, 1.0])
    p = np.array([0.5, 0.25, 1.0])  # weights 2, 4, 1
    assert ips(r, p).value == pytest.approx((2 + 0 + 1) / 3)
    assert snips(r, p).value == pytest.approx(3 / 7)
    # The target takes only the first logged action: w = (2, 0, 0).
    assert ips(r, p, target=[1, 0, 0]).value == pytest.approx(2 / 3)
    assert snips(r, p, target=[1, 0, 0]).value == pytest.approx(1.0)
    assert snips(r, p, target=[1, 0, 0]).n == 1
    assert weights(p, clip=3.0).tolist() == [2.0, 3.0, 1.0]


def test_effective_sample_size() -> None:
    assert snips(np.ones(4), np.ones(4)).ess == pytest.approx(4.0)
    assert snips(np.ones(2), [1.0, 0.01]).ess == pytest.approx(101**2 / 10001)


def _bandit_log(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Three actions with true click rates 0.1, 0.3, 0.6; the logger favours the worst."""
    true_ctr = np.array([0.1, 0.3, 0.6])
    logging = np.array([0.7, 0.2, 0.1])
    action = rng.choice(3, size=n, p=logging)
    reward = (rng.random(n) < true_ctr[action]).astype(float)
    return action, reward, logging[action], true_ctr


def test_ips_recovers_another_policys_value() -> None:
    action, reward, propensity, true_ctr = _bandit_log(np.random.default_rng(0), 50_000)
    target = np.array([0.0, 0.5, 0.5])  # a policy that never takes the worst action
    truth = float(target @ true_ctr)
    for estimate in (ips(reward, propensity, target[action]),
                     snips(reward, propensity, target[action])):
        assert abs(estimate.value - truth) < 3 * estimate.se, (estimate, truth)
    naive = reward[target[action] > 0].mean()  # ignores how the log was drawn
    assert abs(naive - truth) > 0.03  # 0.40 against 0.45


def test_snips_interval_covers_the_truth_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    runs = 300
    for _ in range(runs):
        action, reward, propensity, true_ctr = _bandit_log(rng, 2_000)
        target = (action == 2).astype(float)  # always the best action
        low, high = snips(reward, propensity, target).interval(0.05)
        covered += low <= true_ctr[2] <= high
    assert 0.91 <= covered / runs <= 0.99


def test_top_share_takes_the_weighted_top_and_its_ties() -> None:
    s = np.array([0.9, 0.1, 0.5, 0.5, 0.2])
    assert top_share(s, np.ones(5), 0.2).tolist() == [True, False, False, False, False]
    assert top_share(s, np.ones(5), 0.4).tolist() == [True, False, True, True, False]
    # A heavy example fills the share alone.
    assert top_share(s, [10, 1, 1, 1, 1], 0.5).tolist() == [True, False, False, False, False]
    assert top_share(s, np.ones(5), 1.0).all()


def _explored(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Explored slots of a ranking that shows low-quality items more often than good ones.

    Each candidate has a quality q in [0, 1] and a true click rate 0.02 + 0.3 q; the explored
    slot takes it with probability proportional to 1.5 - q (logged)."""
    q = rng.random(n)
    ctr = 0.02 + 0.3 * q
    keep_p = (1.5 - q) / 1.5  # thinning: candidates enter the log with this probability
    logged = rng.random(n) < keep_p
    q, ctr, p = q[logged], ctr[logged], keep_p[logged] * 0.05
    y = (rng.random(q.size) < ctr).astype(float)
    return q, y, p


def test_top_share_ctr_is_the_ctr_of_the_models_top_share() -> None:
    q, y, p = _explored(np.random.default_rng(2), 400_000)
    truth = 0.02 + 0.3 * 0.875  # a perfect ranker's top quarter: q uniform on [0.75, 1]
    estimate = top_share_ctr(y, q, p, share=0.25)
    assert abs(estimate.value - truth) < 3 * estimate.se + 0.005, (estimate, truth)
    # Unweighted, the log's excess of poor items drags the quantile down and the CTR with it.
    naive = top_share_ctr(y, q, np.ones_like(p), share=0.25)
    assert truth - naive.value > 0.005
    # A ranker that knows nothing gets the population's CTR (0.02 + 0.3 / 2).
    blind = top_share_ctr(y, np.random.default_rng(3).random(q.size), p, share=0.25)
    assert abs(blind.value - 0.17) < 3 * blind.se + 0.005


def test_compare_ranking_sees_the_better_ranker() -> None:
    q, y, p = _explored(np.random.default_rng(4), 20_000)
    noisy = q + np.random.default_rng(5).normal(0.0, 0.5, q.size)
    better = compare_ranking(y, noisy, q, p, share=0.25)
    assert better.diff > 0 and better.z > 3
    assert better.n == q.size and better.clicks == int(y.sum())
    worse = compare_ranking(y, q, noisy, p, share=0.25)
    assert worse.z == pytest.approx(-better.z)
    same = compare_ranking(y, q, q, p, share=0.25)
    assert same.diff == 0.0 and same.z == 0.0


def test_compare_ranking_false_alarms_stay_near_alpha() -> None:
    """Two equally good rankers that disagree: |z| > 1.96 in about 5 % of logs."""
    rng = np.random.default_rng(6)
    runs, alarms = 300, 0
    for _ in range(runs):
        q, y, p = _explored(rng, 3_000)
        a = q + rng.normal(0.0, 0.3, q.size)
        b = q + rng.normal(0.0, 0.3, q.size)
        alarms += abs(compare_ranking(y, a, b, p, share=0.25).z) > 1.96
    assert alarms / runs < 0.09


def test_no_weight_gives_nan_not_an_error() -> None:
    estimate = snips([1.0], [0.5], target=[0.0])
    assert math.isnan(estimate.value) and estimate.n == 0
    c = compare_ranking(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), share=0.25)
    assert c.n == 0 and c.z == 0.0


@pytest.mark.parametrize("bad", [
    lambda: ips([1.0], [0.0]),
    lambda: ips([1.0], [1.5]),
    lambda: ips([1.0], [float("nan")]),
    lambda: ips([1.0, 0.0], [0.5]),
    lambda: ips([1.0], [0.5], target=[2.0]),
    lambda: weights([0.5], clip=0.0),
    lambda: top_share([0.1], [1.0], 0.0),
    lambda: top_share_ctr([1.0], [0.1, 0.2], [0.5], 0.5),
])
def test_bad_inputs_name_the_problem(bad: object) -> None:
    with pytest.raises(OffPolicyError):
        bad()  # type: ignore[operator]
