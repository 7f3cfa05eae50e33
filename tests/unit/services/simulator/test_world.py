"""The world: seeded, reproducible traffic whose truth is a probability and fits the API."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from services.simulator import (
    SimulatorError,
    State,
    World,
    WorldConfig,
    build,
    expected_log_loss,
    scenario_names,
)


def test_same_seed_gives_identical_traffic() -> None:
    a, b = World.create(seed=5), World.create(seed=5)
    state = State(hour=3, bot_share=0.3)
    for n in range(50):
        ra, rb = a.request(n, state), b.request(n, state)
        assert ra == rb
        assert ra.body() == rb.body()


def test_another_seed_gives_other_traffic() -> None:
    a, b = World.create(seed=5), World.create(seed=6)
    assert [a.request(n, State()).body() for n in range(10)] != \
        [b.request(n, State()).body() for n in range(10)]


def test_a_request_does_not_depend_on_what_was_drawn_before() -> None:
    world = World.create(seed=1)
    forward = [world.request(n, State()) for n in range(20)]
    backward = [world.request(n, State()) for n in reversed(range(20))]
    assert forward == list(reversed(backward))


@pytest.mark.parametrize("name", scenario_names())
def test_true_p_is_strictly_inside_0_1(name: str) -> None:
    scenario = build(name, seed=2)  # drift at request 5,000 where there is one
    world = scenario.world(WorldConfig(affinity=8.0, popularity=3.0))  # extreme logits
    ps = np.array([p for n in range(0, 10_000, 50) for p in scenario.request(world, n).true_p])
    assert ps.min() > 0.0 and ps.max() < 1.0


def test_body_is_a_valid_predict_request(small_world: World) -> None:
    body = small_world.request(0, State(hour=17)).body()
    assert 1 <= len(body["user_id"]) <= 128
    assert body["context"] == {"device": body["context"]["device"], "hour": 17}
    assert 1 <= len(body["candidates"]) <= 500
    ids = [c["item_id"] for c in body["candidates"]]
    assert len(set(ids)) == len(ids) == small_world.config.candidates
    flat = (str, int, float, bool)
    for c in body["candidates"]:
        assert all(isinstance(v, flat) for v in c["features"].values())
    assert all(isinstance(v, flat) for v in body["context"].values())


def test_request_truth_matches_the_world_model(small_world: World) -> None:
    state = State(hour=4, hour_amplitude=1.0, taste_phase=2.0)
    req = small_world.request(9, state)
    user = int(req.user_id[1:])
    items = np.array([int(c["item_id"][1:]) for c in req.candidates])
    expected = small_world.true_p(user, items, req.context["device"], 4, state)
    assert req.true_p == pytest.approx(expected.tolist())
    assert req.p(req.candidates[3]["item_id"]) == req.true_p[3]


def test_candidates_are_drawn_by_popularity(small_world: World) -> None:
    seen = Counter(c["item_id"] for n in range(2_000)
                   for c in small_world.request(n, State()).candidates)
    order = np.argsort(small_world.log_pop[:100])
    least = sum(seen[f"i{i}"] for i in order[:10])
    most = sum(seen[f"i{i}"] for i in order[-10:])
    assert most > 3 * least
    assert not any(int(i[1:]) >= 100 for i in seen)  # only live items


@pytest.mark.parametrize("fields", [{"candidates": 0}, {"n_items": 5}, {"categories": ("a",)},
                                    {"device_mix": (1.0,)}, {"bot_click_p": 1.0}])
def test_impossible_configs_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(SimulatorError):
        WorldConfig(**fields)  # type: ignore[arg-type]


def test_population_p_is_the_truth_averaged_over_the_active_users(small_world: World) -> None:
    # Cold start slides the users; the hour term is on: every term of the truth is in play.
    state = State(hour=7, hour_amplitude=1.0, taste_phase=3.0, user_offset=150)
    items = np.arange(small_world.config.n_items)
    users = range(150, 150 + small_world.config.n_users)
    one_by_one = np.mean([small_world.true_p(u, items, "desktop", 7, state) for u in users],
                         axis=0)
    assert small_world.population_p(items, "desktop", 7, state) == \
        pytest.approx(one_by_one, rel=1e-12, abs=0.0)
    assert small_world.active_users(state).tolist() == list(users)


def test_population_p_is_strictly_inside_0_1() -> None:
    """Logits far beyond what a float sigmoid resolves still give a probability in (0, 1)."""
    items = np.arange(60)
    extreme = {"low": -800.0, "high": 60.0}
    p = {}
    for side, base in extreme.items():
        world = World.create(WorldConfig(n_users=50, n_items=60, base_logit=base), seed=4)
        with np.errstate(over="ignore"):  # exp(800) is inf on purpose: sigmoid gives 0
            p[side] = world.population_p(items, "tablet", 12, State())
    assert p["low"].min() > 0.0 and p["high"].max() < 1.0


def test_population_p_is_the_truth_without_affinity_and_worse_with_it() -> None:
    """Without personal taste the population prediction is the optimal (regret 0); with it,
    its expected log loss on the users' own truth is above the optimal's."""
    regret = {}
    for affinity in (0.0, 1.0):
        world = World.create(WorldConfig(n_users=100, n_items=80, affinity=affinity), seed=9)
        state = State(hour=20)
        losses = []
        for n in range(200):
            req = world.request(n, state)
            items = np.array([world.item_index(c["item_id"]) for c in req.candidates])
            population = world.population_p(items, req.context["device"], 20, state)
            losses += [expected_log_loss(float(q), p) - expected_log_loss(p, p)
                       for q, p in zip(population, req.true_p, strict=True)]
        regret[affinity] = float(np.mean(losses))
    assert regret[0.0] == pytest.approx(0.0, abs=1e-12)
    assert regret[1.0] > 0.01


def test_the_hour_given_is_the_hour_scored(small_world: World) -> None:
    # Before, the hour argument was ignored in favour of state.hour.
    state, items = State(hour=3, hour_amplitude=1.5), np.arange(10)
    at_3, at_15 = (small_world.true_p(0, items, "mobile", h, state) for h in (3, 15))
    assert not np.allclose(at_3, at_15)
    assert np.array_equal(at_15, small_world.true_p(0, items, "mobile", 15,
                                                    State(hour=15, hour_amplitude=1.5)))
    assert not np.allclose(small_world.population_p(items, "mobile", 3, state),
                           small_world.population_p(items, "mobile", 15, state))
