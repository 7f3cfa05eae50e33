"""Serving unit fixtures: the real app around a real model, a sink that keeps what it is sent.

No server and no broker: the app runs in-process under FastAPI's TestClient, and the sink is
the in-memory side of the ``MessageSink`` port (the Kafka adapter is tested on the real stack).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config.settings import KafkaSettings, ServingSettings
from models import build_model
from models.learners.base import Model
from services.serving.app import create_app
from services.serving.champion import ChampionHolder
from services.serving.context import ServingContext
from services.serving.metrics import ServingMetrics
from services.serving.scoring import Champion
from streams.schemas import TimeBounds

TOKEN = "unit-test-admin-token"
BOUNDS = TimeBounds(max_past_ms=3_600_000, max_future_ms=60_000)


class ListSink:
    """Keeps every message; ``broken`` makes it report itself unusable."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes]] = []
        self.broken = False
        self.closed = False

    def send(self, topic: str, key: str, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def send_many(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        self.sent.extend((topic, key, value) for key, value in messages)

    def usable(self) -> bool:
        return not self.broken

    def status(self) -> dict[str, Any]:
        return {"usable": self.usable(), "buffer_fill": 0.0}

    def close(self, timeout_s: float) -> None:
        self.closed = True

    def on(self, topic: str) -> list[tuple[str, bytes]]:
        return [(key, value) for t, key, value in self.sent if t == topic]


def trained_model() -> Model:
    """A logistic regression that has learnt item "good" gets clicks and "bad" does not."""
    model = build_model("logreg", hash_bits=12, seed=3)
    batch = [{"item_id": "good", "device": "tv"}, {"item_id": "bad", "device": "tv"}] * 50
    for _ in range(5):
        model.learn_many(batch, [1, 0] * 50)
    return model


@pytest.fixture
def model() -> Model:
    return trained_model()


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def make_client(sink: ListSink) -> Iterator[Callable[..., tuple[TestClient, ServingContext]]]:
    """Factory: a TestClient on a fresh app; ``model=None`` starts with no champion."""
    clients: list[TestClient] = []

    def make(model: Model | None = None, version: str = "ctr-v1.0",
             **settings: Any) -> tuple[TestClient, ServingContext]:
        metrics = ServingMetrics()
        holder = ChampionHolder(metrics, Champion(model, version) if model else None)
        ctx = ServingContext(
            ServingSettings(admin_token=TOKEN, **settings), KafkaSettings(), BOUNDS, holder,
            sink, metrics,
        )
        client = TestClient(create_app(ctx), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client, ctx

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., tuple[TestClient, ServingContext]],
           model: Model) -> TestClient:
    return make_client(model)[0]


def make_predict(n: int = 3, user_id: str = "u42", **overrides: Any) -> dict[str, Any]:
    """A valid predict body with ``n`` candidates (i0 … and the items "good"/"bad")."""
    items = ["bad", "good", *[f"i{i}" for i in range(n)]][:n] if n >= 2 else ["good"]
    body: dict[str, Any] = {
        "user_id": user_id,
        "context": {"device": "tv", "hour": 13},
        "candidates": [
            {"item_id": item, "features": {"category": "shoes", "price": 10.0 + i}}
            for i, item in enumerate(items)
        ],
    }
    body.update(overrides)
    return body


def make_event(prediction_id: str = "p1", type_: str = "click", **fields: Any) -> dict[str, Any]:
    """A valid event (no ts: the server's clock)."""
    return {"type": type_, "prediction_id": prediction_id, **fields}
