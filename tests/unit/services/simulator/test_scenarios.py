"""Scenarios: the truth responds to each preset the way its name says."""

from __future__ import annotations

import numpy as np
import pytest

from services.simulator import (
    Behaviour,
    SimulatorError,
    State,
    World,
    build,
    respond,
    scenario_names,
)
from tests.unit.services.simulator.conftest import T0, serve


def category_means(world: World, state: State) -> np.ndarray:
    """Mean true p per category over every (user, item) pair of the live population."""
    items = np.arange(state.item_offset, state.item_offset + world.config.n_items)
    users = range(state.user_offset, state.user_offset + world.config.n_users)
    ps = np.array([world.true_p(u, items, "mobile", state.hour, state) for u in users])
    cats = world.category[items]
    return np.array([ps[:, cats == c].mean() for c in range(len(world.config.categories))])


def test_names() -> None:
    assert scenario_names() == ["bot-attack", "cold-start", "cyclic", "gradual", "rare-event",
                                "stationary", "sudden"]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(SimulatorError, match="unknown scenario 'sudden-ish'; known: bot-attack"):
        build("sudden+sudden-ish")


def test_unknown_knob_lists_the_knobs() -> None:
    with pytest.raises(SimulatorError, match="no knob 'drift'; knobs: drift_at, requests_per"):
        build("sudden", drift=3)


def test_bad_knob_value_is_refused() -> None:
    with pytest.raises(SimulatorError, match="bot_share"):
        build("bot-attack", bot_share=1.5)


def test_knobs_given_as_text_take_the_field_type() -> None:
    s = build("gradual", drift_at="10", shift="2.5")
    assert s.drift_points == (10,)
    assert s.state(100_000).taste_phase == 2.5
    with pytest.raises(SimulatorError, match="knob 'drift_at': 'soon' is not a int"):
        build("sudden", drift_at="soon")


def test_stationary_never_changes() -> None:
    s = build("stationary", requests_per_hour=10**9)
    assert {s.state(n) for n in (0, 10, 10**6)} == {s.state(0)}
    assert s.drift_points == ()


def test_sudden_flips_which_category_is_preferred(small_world: World) -> None:
    s = build("sudden", drift_at=1_000)
    before = category_means(small_world, s.state(999))
    after = category_means(small_world, s.state(1_000))
    assert before.argmax() != after.argmax()
    assert before.argmax() in np.argsort(after)[:2]  # the old favourite is now among the least
    assert s.drift_points == (1_000,)


def test_gradual_rotates_step_by_step() -> None:
    s = build("gradual", drift_at=100, duration=400, shift=4.0)
    phases = [s.state(n).taste_phase for n in (0, 100, 200, 300, 500, 10_000)]
    assert phases == [0.0, 0.0, 1.0, 2.0, 4.0, 4.0]


def test_cyclic_each_category_peaks_at_its_hour(small_world: World) -> None:
    s = build("cyclic", requests_per_hour=1)
    means = np.array([category_means(small_world, s.state(h)) for h in range(24)])
    hours = [s.state(h).hour for h in range(24)]
    peak_hours = [hours[i] for i in means.argmax(axis=0)]
    assert peak_hours == [0, 3, 6, 9, 12, 15, 18, 21]


def test_rare_event_is_a_burst_of_traffic_and_other_tastes() -> None:
    s = build("rare-event", drift_at=100, duration=50, rate=4.0, shift=2.0)
    assert [s.state(n).rate for n in (99, 100, 149, 150)] == [1.0, 4.0, 4.0, 1.0]
    assert [s.state(n).taste_phase for n in (99, 100, 150)] == [0.0, 2.0, 0.0]


def test_cold_start_brings_new_users_and_items(small_world: World) -> None:
    s = build("cold-start", new_users_per_1000=500, new_items_per_1000=100)
    early = [s.request(small_world, n) for n in range(300)]
    late = [s.request(small_world, n) for n in range(3_000, 3_300)]
    early_users = {r.user_id for r in early}
    early_items = {c["item_id"] for r in early for c in r.candidates}
    assert sum(r.user_id not in early_users for r in late) > 0.9 * len(late)
    assert sum(c["item_id"] not in early_items for r in late for c in r.candidates) > 0


def test_bots_arrive_at_the_drift_and_click_nearly_everything(small_world: World) -> None:
    s = build("bot-attack", drift_at=500, bot_share=0.3)
    before = [s.request(small_world, n) for n in range(500)]
    after = [s.request(small_world, n) for n in range(500, 1_500)]
    assert not any(r.is_bot for r in before)
    bots = [r for r in after if r.is_bot]
    assert 0.25 < len(bots) / len(after) < 0.35
    assert all(r.user_id.startswith("bot") for r in bots)
    shown = clicks = 0
    for r in bots:
        out = respond(r, serve(r, lambda req, item: 0.5), T0, Behaviour(k=5), seed=1)
        shown += len(out.shown)
        clicks += sum(t.clicked for t in out.truths)
        assert not any(t.genuine for t in out.truths)
    assert clicks / shown > 0.9


def test_presets_compose_and_share_knobs() -> None:
    s = build("sudden+bot-attack", drift_at=200)
    assert s.name == "sudden+bot-attack"
    assert s.drift_points == (200,)
    state = s.state(200)
    assert (state.taste_phase, state.bot_share) == (4.0, 0.2)
    assert s.state(199) == build("stationary").state(199)


def test_same_seed_same_scenario_same_requests() -> None:
    a, b = build("gradual", seed=4, drift_at=10), build("gradual", seed=4, drift_at=10)
    wa, wb = a.world(), b.world()
    assert [a.request(wa, n) for n in range(30)] == [b.request(wb, n) for n in range(30)]
