"""Exploration in serving: the logged propensity is the probability the slot was taken with."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from services.serving.exploration import Exploration, ExplorationError, rank

SCORES = np.array([0.05, 0.30, 0.10, 0.20])
DRAWS = 20_000


def first_slots(cfg: Exploration, seed: int = 0) -> tuple[Counter[int], dict[int, float]]:
    """How often each candidate took slot 1, and the propensity logged for it."""
    rng = np.random.default_rng(seed)
    seen: Counter[int] = Counter()
    logged: dict[int, float] = {}
    for _ in range(DRAWS):
        r = rank(SCORES, cfg, rng)
        seen[r.order[0]] += 1
        logged.setdefault(r.order[0], r.propensity[0])
        assert logged[r.order[0]] == pytest.approx(r.propensity[0])  # one value per choice
    return seen, logged


@pytest.mark.parametrize("cfg", [Exploration("epsilon", epsilon=0.2),
                                 Exploration("softmax", temperature=0.5)])
def test_the_logged_propensity_is_the_frequency_of_the_choice(cfg: Exploration) -> None:
    seen, logged = first_slots(cfg)
    assert sum(logged.values()) == pytest.approx(1.0)  # a distribution over the candidates
    for candidate, n in seen.items():
        assert n / DRAWS == pytest.approx(logged[candidate], abs=0.012)


def test_epsilon_propensities_by_hand() -> None:
    _, logged = first_slots(Exploration("epsilon", epsilon=0.2))
    assert logged[1] == pytest.approx(0.8 + 0.2 / 4)  # the greedy one
    assert logged[0] == logged[2] == logged[3] == pytest.approx(0.2 / 4)


def test_later_slots_are_conditional_on_the_earlier_ones_and_past_slots_certain() -> None:
    r = rank(SCORES, Exploration("epsilon", epsilon=0.2, slots=2), np.random.default_rng(3))
    assert sorted(r.order) == [0, 1, 2, 3] and r.ranked == 2
    second = r.propensity[1]
    assert second in (pytest.approx(0.8 + 0.2 / 3), pytest.approx(0.2 / 3))
    assert r.propensity[2:] == [1.0, 1.0] and r.explored[2:] == [False, False]
    rest = r.order[2:]
    assert list(SCORES[rest]) == sorted(SCORES[rest], reverse=True)  # by score after the slots


def test_none_is_the_greedy_ranking_with_certain_slots() -> None:
    r = rank(SCORES, Exploration(), np.random.default_rng(0))
    assert r.order == [1, 3, 2, 0] and r.propensity == [1.0] * 4
    assert (r.cost, r.ranked, any(r.explored)) == (0.0, 0, False)


def test_cost_is_the_score_given_up_on_explored_slots() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        r = rank(SCORES, Exploration("epsilon", epsilon=0.5), rng)
        greedy_left = sorted(range(4), key=lambda i: -SCORES[i])
        expected = 0.0
        for slot, chosen in enumerate(r.order[: r.ranked]):
            best = greedy_left[0]
            expected += SCORES[best] - SCORES[chosen]
            assert r.explored[slot] == (chosen != best)
            greedy_left.remove(chosen)
        assert r.cost == pytest.approx(expected)


def test_ips_on_a_constructed_log_recovers_the_greedy_policys_ctr() -> None:
    """Logged with epsilon-greedy, the clipped-free IPS estimate of the greedy policy's
    first-slot CTR matches its true value (the clicks' true probabilities are the scores)."""
    rng = np.random.default_rng(7)
    cfg = Exploration("epsilon", epsilon=0.3, slots=1)
    greedy = int(np.argmax(SCORES))
    total = 0.0
    for _ in range(DRAWS):
        r = rank(SCORES, cfg, rng)
        clicked = rng.random() < SCORES[r.order[0]]
        if r.order[0] == greedy:
            total += clicked / r.propensity[0]
    assert total / DRAWS == pytest.approx(SCORES[greedy], abs=0.015)


@pytest.mark.parametrize("kwargs", [{"policy": "bandit"}, {"epsilon": 1.5},
                                    {"temperature": 0.0}, {"slots": 0}])
def test_bad_settings_are_refused_with_the_reason(kwargs: dict) -> None:
    with pytest.raises(ExplorationError):
        Exploration(**kwargs)


def test_thompson_propensity_estimates_the_frequency_of_the_choice() -> None:
    from statistics import NormalDist

    scores = np.array([0.30, 0.20])
    std = np.array([0.2, 1.5])  # the worse-scored candidate is the uncertain one
    cfg = Exploration("thompson", temperature=1.0, slots=1)
    logit = np.log(scores / (1 - scores))
    exact = NormalDist().cdf((logit[1] - logit[0]) / float(np.hypot(*std)))  # P(1 first)
    rng = np.random.default_rng(3)
    runs = [rank(scores, cfg, rng, std=std) for _ in range(4_000)]
    firsts = np.array([r.order[0] for r in runs])
    assert np.mean(firsts == 1) == pytest.approx(exact, abs=0.03)
    logged = np.array([r.propensity[0] for r in runs])
    assert np.mean(logged[firsts == 1]) == pytest.approx(exact, abs=0.03)
    assert np.mean(logged[firsts == 0]) == pytest.approx(1 - exact, abs=0.03)
    assert logged.min() > 0 and all(r.propensity[1] == 1.0 for r in runs)


def test_thompson_tries_the_uncertain_candidate_more_than_the_known_one() -> None:
    scores = np.array([0.30, 0.20, 0.20])
    std = np.array([0.1, 2.0, 0.1])  # candidates 1 and 2 score alike; 1 is new
    rng = np.random.default_rng(4)
    firsts = Counter(rank(scores, Exploration("thompson", temperature=1.0, slots=1), rng,
                          std=std).order[0] for _ in range(2_000))
    assert firsts[1] > 10 * max(firsts[2], 1)
