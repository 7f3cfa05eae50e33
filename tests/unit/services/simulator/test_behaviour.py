"""Behaviour: what is shown, what is clicked, when the events happen and what they reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from services.simulator import Behaviour, EventQueue, SimulatorError, State, World, respond
from services.simulator.behaviour import click_delays
from tests.unit.services.simulator.conftest import T0

Respond = Callable[..., list[dict[str, Any]]]


def test_shows_the_top_k_of_the_ranking_as_served(small_world: World,
                                                  make_response: Respond) -> None:
    req = small_world.request(0, State())
    preds = make_response(req, lambda r, item: 0.5)  # order is the server's, not by truth
    out = respond(req, preds, T0, Behaviour(k=3), seed=0)
    shown = [t.prediction_id for t in out.truths if t.shown]
    assert shown == [p["prediction_id"] for p in preds[:3]]
    assert sorted(e["prediction_id"] for e in out.events if e["type"] == "impression") == \
        sorted(shown)


def test_exploration_shows_k_items_from_anywhere(small_world: World,
                                                 make_response: Respond) -> None:
    ranks = set()
    for n in range(50):
        req = small_world.request(n, State())
        out = respond(req, make_response(req), T0, Behaviour(k=3, epsilon=1.0), seed=0)
        assert len(out.shown) == 3
        ranks |= {t.rank for t in out.shown}
    assert max(ranks) > 3


def test_events_reference_served_predictions_and_follow_them(small_world: World,
                                                             make_response: Respond) -> None:
    behaviour = Behaviour(k=5, click_delay_cap_ms=10_000)
    for n in range(300):
        req = small_world.request(n, State())
        preds = make_response(req)
        out = respond(req, preds, T0, behaviour, seed=3)
        served = {p["prediction_id"] for p in preds}
        impressions = {e["prediction_id"]: e["ts"] for e in out.events
                       if e["type"] == "impression"}
        assert {e["prediction_id"] for e in out.events} <= served
        assert len({e["event_id"] for e in out.events}) == len(out.events)
        assert [e["ts"] for e in out.events] == sorted(e["ts"] for e in out.events)
        assert all(T0 < ts <= T0 + 1 + behaviour.impression_delay_max_ms
                   for ts in impressions.values())
        for click in (e for e in out.events if e["type"] == "click"):
            delay = click["ts"] - impressions[click["prediction_id"]]
            assert 1 <= delay <= behaviour.click_delay_cap_ms
        assert {t.prediction_id for t in out.truths if t.clicked} == \
            {e["prediction_id"] for e in out.events if e["type"] == "click"}


def test_truth_is_reported_for_every_served_prediction(small_world: World,
                                                       make_response: Respond) -> None:
    req = small_world.request(4, State())
    preds = make_response(req, lambda r, item: 0.01)
    out = respond(req, preds, T0, Behaviour(), seed=0)
    assert [t.prediction_id for t in out.truths] == [p["prediction_id"] for p in preds]
    assert all(t.true_p == req.p(t.item_id) and t.score == 0.01 and t.genuine
               for t in out.truths)


def test_click_delays_are_log_normal_and_capped() -> None:
    b = Behaviour(click_delay_median_ms=2_000, click_delay_sigma=0.8, click_delay_cap_ms=6_000)
    delays = click_delays(20_000, b, np.random.default_rng(0))
    assert delays.min() >= 1 and delays.max() == b.click_delay_cap_ms
    assert np.median(delays) == pytest.approx(2_000, rel=0.05)
    # P(lognormal > 3 median) for sigma 0.8 is about 8.5 %: those sit at the cap.
    assert (delays == b.click_delay_cap_ms).mean() == pytest.approx(0.085, abs=0.01)


def test_clicks_follow_the_true_probability(small_world: World, make_response: Respond) -> None:
    expected = clicks = 0.0
    for n in range(2_000):
        req = small_world.request(n, State())
        out = respond(req, make_response(req), T0, Behaviour(k=5), seed=9)
        expected += sum(t.true_p for t in out.shown)
        clicks += sum(t.clicked for t in out.shown)
    assert abs(clicks - expected) < 4 * np.sqrt(expected)


def test_same_seed_same_events(small_world: World, make_response: Respond) -> None:
    req = small_world.request(7, State())
    preds = make_response(req)
    b = Behaviour(k=10, epsilon=0.5)
    assert respond(req, preds, T0, b, seed=1) == respond(req, preds, T0, b, seed=1)
    runs = {tuple(e["ts"] for e in respond(req, preds, T0, b, seed=s).events) for s in range(5)}
    assert len(runs) > 1


@pytest.mark.parametrize("fields", [{"k": 0}, {"epsilon": 1.5}, {"click_delay_cap_ms": 0},
                                    {"click_delay_median_ms": 0}])
def test_impossible_behaviour_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(SimulatorError):
        Behaviour(**fields)


def test_event_queue_releases_events_when_due() -> None:
    q = EventQueue()
    q.push([{"ts": 30, "event_id": "c"}, {"ts": 10, "event_id": "a"}])
    q.push([{"ts": 10, "event_id": "b"}])
    assert [e["event_id"] for e in q.due(9)] == []
    assert [e["event_id"] for e in q.due(10)] == ["a", "b"]
    assert [e["event_id"] for e in q.due(100)] == ["c"]
    assert len(q) == 0
