"""/v1/events, admin auth, health, readiness and metrics on the real app."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from config.settings import ServingSettings
from models.learners.base import Model
from services.serving.context import ServingContext
from services.serving.metrics import ServingMetrics
from services.serving.sink import KafkaSink
from streams.schemas import Event, decode_event
from tests.unit.services.serving.conftest import TOKEN, ListSink, make_event, make_predict

MakeClient = Callable[..., tuple[TestClient, ServingContext]]


def test_events_accepts_the_valid_ones_of_a_batch(client: TestClient, sink: ListSink) -> None:
    now = int(time.time() * 1000)
    batch = [
        make_event("p1", "impression", event_id="e1", ts=now - 1000),
        make_event("p1", "like"),
        make_event("p2", "click", user_id="u42", item_id="i7"),
        "not an object",
        make_event("p3", "click", ts=1763800000),  # seconds, not milliseconds
        {"type": "conversion"},
    ]
    response = client.post("/v1/events", json={"events": batch})
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [1, 3, 4, 5]
    errors = {r["index"]: r["error"] for r in body["rejected"]}
    assert "field 'type'" in errors[1] and "field 'ts'" in errors[4]
    assert "field 'prediction_id'" in errors[5]
    logged = sink.on("events")
    assert [key for key, _ in logged] == ["p1", "p2"]
    first, second = (decode_event(value, key=key) for key, value in logged)
    assert isinstance(first, Event) and isinstance(second, Event)
    assert (first.event_id, first.type, first.ts) == ("e1", "impression", now - 1000)
    assert second.event_id and second.user_id == "u42" and second.item_id == "i7"
    assert now <= second.ts <= int(time.time() * 1000)  # server time when ts is absent


@pytest.mark.parametrize(("body", "field"), [
    ({"events": []}, "events"),
    ({"events": [make_event()] * 1001}, "events"),
    ({"events": make_event()}, "events"),
    ({}, "events"),
    ([make_event()], "body"),
])
def test_events_422_naming_the_field(client: TestClient, sink: ListSink, body: object,
                                     field: str) -> None:
    response = client.post("/v1/events", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == field
    assert sink.sent == []


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/v1/models/ctr-v1.0/promote"), ("post", "/v1/models/rollback"),
])
def test_admin_changes_need_the_bearer_token(client: TestClient, method: str, path: str) -> None:
    missing = client.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert client.request(method, path, headers={"Authorization": f"Basic {TOKEN}"}
                          ).status_code == 401
    wrong = client.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    # The right token gets past auth; this app has no registry, so 503, never a 500.
    ok = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 503 and "registry" in ok.json()["detail"]


def test_health_and_readiness(make_client: MakeClient, model: Model, sink: ListSink) -> None:
    empty, ctx = make_client(None)
    assert empty.get("/healthz").json() == {"status": "ok"}
    not_ready = empty.get("/readyz")
    assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
    client, _ = make_client(model, version="ctr-v2.0")
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True and ready.json()["model_version"] == "ctr-v2.0"
    sink.broken = True
    assert client.get("/readyz").status_code == 503


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_metrics_count_requests_predictions_and_scores(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v1/predict", json=make_predict(4))
    client.post("/v1/predict", json={"user_id": ""})
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "text/plain")
    s = _samples(response.text)
    req = "streamlearn_serving_requests_total"
    assert s[(req, frozenset({("route", "/v1/predict"), ("status", "200")}))] == 3
    assert s[(req, frozenset({("route", "/v1/predict"), ("status", "422")}))] == 1
    assert s[(req, frozenset({("route", "unmatched"), ("status", "404")}))] == 1
    assert s[("streamlearn_serving_predictions_total",
              frozenset({("model_version", "ctr-v1.0"), ("arm", "champion")}))] == 12
    assert s[("streamlearn_serving_score_count", frozenset())] == 12
    assert s[("streamlearn_serving_request_duration_seconds_count",
              frozenset({("route", "/v1/predict")}))] == 4
    assert s[("streamlearn_serving_model_info", frozenset({("model_version", "ctr-v1.0")}))] == 1
    # The score histogram takes a request's scores at once: count, sum and buckets agree.
    served = [p["score"] for _ in range(3)
              for p in client.post("/v1/predict", json=make_predict(4)).json()["predictions"]]
    s = _samples(client.get("/metrics").text)
    assert s[("streamlearn_serving_score_count", frozenset())] == 24
    assert s[("streamlearn_serving_score_sum", frozenset())] == pytest.approx(2 * sum(served))
    assert s[("streamlearn_serving_score_bucket", frozenset({("le", "+Inf")}))] == 24
    assert s[("streamlearn_serving_score_bucket", frozenset({("le", "0.001")}))] == sum(
        2 for v in served if v <= 0.001)


def test_request_metrics_off_leaves_only_the_rare_event_metrics(
        make_client: MakeClient, model: Model, sink: ListSink) -> None:
    client, _ = make_client(model, request_metrics=False)
    assert client.post("/v1/predict", json=make_predict(4)).status_code == 200
    assert client.post("/v1/events", json={"events": [make_event()]}).status_code == 202
    assert len(sink.on("predictions")) == 4  # logging does not depend on metrics
    s = _samples(client.get("/metrics").text)
    names = {name for name, _ in s}
    assert not names & {"streamlearn_serving_requests_total",
                        "streamlearn_serving_request_duration_seconds_count",
                        "streamlearn_serving_predictions_total"}
    assert s[("streamlearn_serving_events_total", frozenset({("outcome", "accepted")}))] == 0
    assert s[("streamlearn_serving_score_count", frozenset())] == 0
    assert s[("streamlearn_serving_model_info", frozenset({("model_version", "ctr-v1.0")}))] == 1
    assert ("streamlearn_serving_producer_buffer_fill_ratio", frozenset()) in s


def test_a_full_producer_queue_is_counted_and_never_raises() -> None:
    # Nothing listens on port 1: messages stay queued until the bounded queue is full.
    metrics = ServingMetrics()
    sink = KafkaSink("127.0.0.1:1", metrics, max_messages=100, message_timeout_ms=1000)
    try:
        for i in range(150):
            sink.send("predictions", f"p{i}", b"{}")
        assert metrics.produce_errors("predictions", "overflow") == 50
        assert sink.fill() == 1.0 and not sink.usable()
        # A request's batch: what does not fit is counted the same way, nothing raised.
        sink.send_many("predictions", [(f"q{i}", b"{}") for i in range(20)])
        assert metrics.produce_errors("predictions", "overflow") == 70
    finally:
        sink.close(0.0)
    assert ServingSettings().producer_queue_messages >= 100
