"""The driver's pure parts (label resolution, batching) and its loop against an in-process API."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from models import build_model
from services.simulator import Behaviour, WorldConfig, build
from services.simulator.driver import (
    MAX_EVENTS_PER_CALL,
    Driver,
    LabelBook,
    Pending,
    batches,
)


def make_pending(index: int = 0, served: float = 0.1) -> Pending:
    return Pending(index, served=served, frozen=0.2, optimal=0.3, genuine=True)


def test_a_click_inside_the_window_is_a_1_when_the_click_happens() -> None:
    book = LabelBook(window_ms=1_000)
    book.add(make_pending(), served_ts=1_000, click_ts=1_600)
    assert book.resolve(1_599) == []
    [label] = book.resolve(1_600)
    assert (label.label, label.at_ms) == (1, 1_600)
    assert len(book) == 0


def test_no_click_or_a_late_click_is_a_0_when_the_window_closes() -> None:
    book = LabelBook(window_ms=1_000)
    book.add(make_pending(0), served_ts=0, click_ts=None)
    book.add(make_pending(1), served_ts=0, click_ts=1_001)
    assert book.resolve(999) == []
    labels = book.resolve(1_000)
    assert [(x.pending.index, x.label) for x in labels] == [(0, 0), (1, 0)]


def test_labels_come_in_due_order_whatever_the_order_added() -> None:
    book = LabelBook(window_ms=100)
    book.add(make_pending(0), served_ts=50, click_ts=None)  # due 150
    book.add(make_pending(1), served_ts=0, click_ts=10)  # due 10
    book.add(make_pending(2), served_ts=0, click_ts=None)  # due 100
    assert [x.pending.index for x in book.resolve(10_000)] == [1, 2, 0]


def test_memory_bound_resolves_the_earliest_early_and_counts_them() -> None:
    book = LabelBook(window_ms=1_000, max_pending=2)
    for i in range(5):
        book.add(make_pending(i), served_ts=i, click_ts=None)
    forced = book.resolve(0)
    assert [x.pending.index for x in forced] == [0, 1, 2]
    assert book.forced == 3 and len(book) == 2
    assert [x.label for x in book.drain()] == [0, 0]


@pytest.mark.parametrize(("n", "sizes"), [(0, []), (1, [1]), (1_000, [1_000]),
                                          (2_001, [1_000, 1_000, 1])])
def test_events_go_in_batches_of_at_most_the_api_limit(n: int, sizes: list[int]) -> None:
    events = [{"event_id": str(i)} for i in range(n)]
    out = list(batches(events))
    assert [len(b) for b in out] == sizes
    assert [e for b in out for e in b] == events
    assert MAX_EVENTS_PER_CALL == 1_000


# -- the loop against an in-process API (httpx transport, no server) -----------------------


def fake_api(score: float, fail_every: int = 0) -> tuple[Callable[..., httpx.Response],
                                                        dict[str, Any]]:
    seen: dict[str, Any] = {"predicts": 0, "events": []}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"champion": "ctr-v1.0", "versions": []})
        body = json.loads(request.content)
        if request.url.path == "/v1/predict":
            seen["predicts"] += 1
            if fail_every and seen["predicts"] % fail_every == 0:
                return httpx.Response(503, text="overloaded")
            preds = [{"prediction_id": f"r{seen['predicts']}-{i}", "item_id": c["item_id"],
                      "score": score, "rank": i + 1} for i, c in enumerate(body["candidates"])]
            return httpx.Response(200, json={"request_id": "r", "model_version": "ctr-v1.0",
                                             "arm": "champion", "predictions": preds})
        assert len(body["events"]) <= MAX_EVENTS_PER_CALL
        seen["events"] += body["events"]
        return httpx.Response(202, json={"accepted": len(body["events"]), "rejected": []})

    return handler, seen


def make_driver(score: float = 0.05, fail_every: int = 0) -> tuple[Driver, dict[str, Any]]:
    handler, seen = fake_api(score, fail_every)
    http = httpx.Client(base_url="http://sim.test", transport=httpx.MockTransport(handler))
    scenario = build("stationary", seed=3)
    world = scenario.world(WorldConfig(n_users=50, n_items=40, candidates=10))
    behaviour = Behaviour(k=3, click_delay_median_ms=5.0, click_delay_cap_ms=50,
                          impression_delay_max_ms=5)
    frozen = build_model("logreg", hash_bits=8)
    return Driver(http, scenario, world, behaviour, frozen, window_ms=100, rate=0.0,
                  row_every=20), seen


def test_every_shown_prediction_gets_one_label_and_every_event_is_sent() -> None:
    driver, seen = make_driver()
    driver.run(requests=30, flush_s=0.01)
    c = driver.counts
    assert (c.requests, c.predictions, c.failed_calls) == (30, 300, 0)
    assert c.labels == 30 * 3  # top 3 shown of each response
    assert c.events_sent == c.events_accepted == len(seen["events"])
    impressions = [e for e in seen["events"] if e["type"] == "impression"]
    clicks = [e for e in seen["events"] if e["type"] == "click"]
    assert len(impressions) == c.labels and len(clicks) == c.clicks
    overall = driver.accounting.overall()
    assert overall.n == c.labels and overall.optimal <= overall.system
    assert driver.champion == "ctr-v1.0" and driver.promotions == 0
    assert driver.rows[-1]["labels"] == c.labels and len(driver.rows) >= 4


def test_failed_calls_are_counted_and_the_run_goes_on() -> None:
    driver, _ = make_driver(fail_every=3)
    driver.run(requests=30, flush_s=0.01)
    assert driver.counts.failed_calls == 10
    assert driver.counts.labels == 20 * 3
    assert "503" in driver.counts.last_error
    assert math.isfinite(driver.accounting.overall().system)
