"""Factories for joiner tests: predictions, events and a small policy."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from streams.joiner import JoinPolicy
from streams.schemas import Event, Prediction

T0 = 1_763_800_000_000
WINDOW = 1_000
LATENESS = 100
LEAD = 2_000


@pytest.fixture
def policy() -> JoinPolicy:
    """A small policy: 1 s window, 100 ms lateness, 2 s lead, 500 ms idle timeout."""
    return JoinPolicy(
        attribution_window_ms=WINDOW,
        allowed_lateness_ms=LATENESS,
        max_event_lead_ms=LEAD,
        idle_timeout_ms=500,
        max_pending=1_000,
    )


@pytest.fixture
def make_prediction() -> Callable[..., Prediction]:
    """``make_prediction("p1", ts=T0 + 5, score=0.3)``: a valid Prediction."""

    def make(prediction_id: str = "p1", ts: int = T0, **fields: Any) -> Prediction:
        values: dict[str, Any] = {
            "request_id": f"r-{prediction_id}",
            "user_id": "u1",
            "item_id": "i1",
            "features": {"device": "mobile", "price": 9.5},
            "model_version": "ctr-v1.0",
            "arm": "champion",
            "score": 0.1,
        }
        values.update(fields)
        return Prediction(prediction_id=prediction_id, ts=ts, **values)

    return make


@pytest.fixture
def make_event() -> Callable[..., Event]:
    """``make_event("click", "p1", ts)``: a valid Event with a fresh event_id by default."""
    ids = itertools.count(1)

    def make(
        type_: str = "impression",
        prediction_id: str = "p1",
        ts: int = T0,
        event_id: str | None | object = ...,
    ) -> Event:
        eid = f"e{next(ids)}" if event_id is ... else event_id
        return Event(eid, type_, prediction_id, ts)  # type: ignore[arg-type]

    return make
