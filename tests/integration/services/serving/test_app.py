"""The serving API on the real stack: uvicorn, Kafka topics and the Redis registry.

Each test gets fresh topics (``make_topics``) and a fresh registry key prefix, and runs the
production app (``services.serving.cli.build_app``) under a real uvicorn server on a free port
(in a thread; the broker-down test runs ``streamlearn serve`` as a subprocess).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis
import torch
import uvicorn
from confluent_kafka import Consumer, TopicPartition
from fastapi import FastAPI

from config.settings import (
    KafkaSettings,
    RegistrySettings,
    SchemaSettings,
    ServingSettings,
    TrainerSettings,
)
from models import build_model
from models.gate.decision import GateDecision
from models.learners.base import Model
from models.registry import ChampionChange, Lineage, ModelRecord, OffsetRange
from services.local.stack.manager import Stack
from services.local.wait import stop_process, wait_for
from services.registry.base import ensure_champion
from services.registry.redis import RedisRegistry
from services.serving.champion import COLD_START_REASON
from services.serving.cli import build_app
from services.serving.context import ServingContext
from streams.joiner.partitioning import murmur2_partition
from streams.schemas import Event, Prediction, decode_event, decode_prediction

TOKEN = "integration-admin-token"
SIGNING_KEY = "integration-serving-key"
TRAINER = TrainerSettings(model="logreg", hash_bits=10, seed=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def predict_body(n: int = 5, user_id: str = "u42") -> dict[str, Any]:
    return {
        "user_id": user_id,
        "context": {"device": "mobile", "hour": 13},
        "candidates": [{"item_id": f"i{i}", "features": {"item_category": f"c{i % 2}",
                                                           "price": 5.0 + i}}
                       for i in range(n)],
    }


def trained(seed: int) -> Model:
    model = build_model("logreg", hash_bits=10, seed=seed)
    batch = [{"item_id": f"i{i}", "item_category": f"c{i % 2}"} for i in range(6)] * 20
    model.learn_many(batch, [int(i % 3 == seed % 3) for i in range(6)] * 20)
    return model


def register(registry: RedisRegistry, parent: str, seed: int) -> ModelRecord:
    model = trained(seed)
    blob = model.save()
    record = ModelRecord.for_model(
        model, blob, version=registry.next_version(parent, "stateful"), parent=parent,
        mode="stateful", created_at=int(time.time() * 1000),
        lineage=Lineage((OffsetRange("examples", 0, 100, 219),), 120),
    )
    return registry.put(record, blob)


@pytest.fixture
def rclient(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_settings.url, socket_timeout=30.0)
    yield client
    client.close()


@pytest.fixture
def registry_settings(rclient: redis.Redis) -> Iterator[RegistrySettings]:
    """A fresh registry key prefix, deleted afterwards."""
    cfg = RegistrySettings(prefix=f"test-serving-{uuid.uuid4().hex[:8]}:",
                           signing_key=SIGNING_KEY)
    yield cfg
    keys = list(rclient.scan_iter(match=f"{cfg.prefix}*", count=1000))
    if keys:
        rclient.delete(*keys)


@pytest.fixture
def registry(rclient: redis.Redis, registry_settings: RegistrySettings) -> RedisRegistry:
    return RedisRegistry(rclient, registry_settings)


@dataclass
class Served:
    """A running server: its URL, app context and an HTTP client."""

    url: str
    ctx: ServingContext
    http: httpx.Client

    def predict(self, n: int = 5) -> httpx.Response:
        return self.http.post("/v1/predict", json=predict_body(n))


class ServerThread:
    """uvicorn in a thread of the test process (stopped through ``should_exit``)."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, 15, "uvicorn to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def serve(stack: Stack, registry_settings: RegistrySettings,
          make_topics: Callable[..., KafkaSettings]) -> Iterator[Callable[..., Served]]:
    """Factory: start the production app on fresh topics; stopped after the test."""
    running: list[tuple[ServerThread, httpx.Client]] = []
    threads = torch.get_num_threads()

    def start(kafka: KafkaSettings | None = None, **serving: Any) -> Served:
        kafka = kafka or make_topics()
        settings = ServingSettings(admin_token=TOKEN, poll_interval_s=1.0, **serving)
        app = build_app(settings, kafka, stack.redis_settings, registry_settings,
                        SchemaSettings(), TRAINER)
        port = free_port()
        server = ServerThread(app, port).__enter__()
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
        running.append((server, http))
        wait_for(lambda: http.get("/readyz").status_code == 200, 30, "/readyz")
        return Served(f"http://127.0.0.1:{port}", app.state.ctx, http)

    yield start
    for server, http in running:
        http.close()
        server.__exit__(None, None, None)
    torch.set_num_threads(threads)


def consume(kafka: KafkaSettings, topic: str, n: int, timeout_s: float = 20.0) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers,
                         "group.id": f"test-serving-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(kafka.partitions)])
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            for msg in consumer.consume(n - len(got), timeout=0.5):
                assert msg.error() is None, msg.error()
                got.append(msg)
    finally:
        consumer.close()
    return got


def test_cold_start_then_predictions_reach_kafka_with_their_exact_features(
    serve: Callable[..., Served], registry: RedisRegistry,
    make_topics: Callable[..., KafkaSettings],
) -> None:
    kafka = make_topics()
    served = serve(kafka)
    # No champion existed: serving registered and promoted the cold-start model as v1.0.
    assert registry.champion_version() == "ctr-v1.0"
    record = registry.get("ctr-v1.0")
    assert record.mode == "cold_start" and record.parent is None and record.model == "logreg"
    assert [r.version for r in registry.list()] == ["ctr-v1.0"]

    body = predict_body(5)
    response = served.http.post("/v1/predict", json=body)
    assert response.status_code == 200
    out = response.json()
    assert out["model_version"] == "ctr-v1.0"
    # A cold model scores the prior CTR everywhere.
    assert all(abs(p["score"] - 0.05) < 0.01 for p in out["predictions"])

    messages = consume(kafka, kafka.predictions_topic, 5)
    assert len(messages) == 5
    by_id = {p["prediction_id"]: p for p in out["predictions"]}
    for msg in messages:
        decoded = decode_prediction(msg.value(), key=msg.key())
        assert isinstance(decoded, Prediction), decoded
        assert msg.partition() == murmur2_partition(msg.key(), kafka.partitions)
        served_p = by_id[decoded.prediction_id]
        candidate = next(c for c in body["candidates"] if c["item_id"] == decoded.item_id)
        assert decoded.features == {**body["context"], **candidate["features"],
                                    "user_id": "u42", "item_id": decoded.item_id}
        assert (decoded.score, decoded.request_id, decoded.model_version, decoded.arm) == (
            served_p["score"], out["request_id"], "ctr-v1.0", "champion")

    # An event for one of them lands in the same partition number of `events`.
    target = messages[0]
    pid = target.key().decode()
    accepted = served.http.post("/v1/events", json={"events": [
        {"type": "impression", "prediction_id": pid}, {"type": "nope", "prediction_id": pid}]})
    assert accepted.status_code == 202
    assert accepted.json()["accepted"] == 1 and accepted.json()["rejected"][0]["index"] == 1
    (event_msg,) = consume(kafka, kafka.events_topic, 1)
    event = decode_event(event_msg.value(), key=event_msg.key())
    assert isinstance(event, Event) and event.prediction_id == pid
    assert event_msg.partition() == target.partition()


def test_cold_start_is_idempotent_across_racing_processes(registry: RedisRegistry) -> None:
    built: list[int] = []

    def build() -> Model:
        built.append(1)
        return build_model("logreg", hash_bits=10)

    results: list[str] = []
    racers = [threading.Thread(target=lambda: results.append(
        ensure_champion(registry, build, reason=COLD_START_REASON))) for _ in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(30)
    assert results == ["ctr-v1.0"] * 4
    assert [r.version for r in registry.list()] == ["ctr-v1.0"]
    assert len(registry.history()) == 1 and registry.has_version("ctr-v1.0")
    assert not registry.has_version("ctr-v2.0")
    assert ensure_champion(registry, build, reason=COLD_START_REASON) == "ctr-v1.0"


def test_a_registered_but_unpromoted_v1_is_adopted(registry: RedisRegistry) -> None:
    # The trainer registered v1.0 and has not promoted it yet: serving promotes that one.
    model = build_model("logreg", hash_bits=10)
    blob = model.save()
    registry.put(ModelRecord.for_model(model, blob, version="ctr-v1.0", parent=None,
                                       mode="cold_start", created_at=int(time.time() * 1000)),
                 blob)
    assert ensure_champion(registry, lambda: pytest.fail("must not build"),
                           reason=COLD_START_REASON) == "ctr-v1.0"
    assert [r.version for r in registry.list()] == ["ctr-v1.0"]


def test_a_rejected_v1_makes_the_cold_start_take_the_next_major(
    registry: RedisRegistry,
) -> None:
    model = build_model("logreg", hash_bits=10)
    blob = model.save()
    registry.put(ModelRecord.for_model(model, blob, version="ctr-v1.0", parent=None,
                                       mode="cold_start", created_at=int(time.time() * 1000)),
                 blob)
    registry.reject("ctr-v1.0", GateDecision("reject", "integration: rejected", {}, "test"))
    assert ensure_champion(registry, lambda: build_model("logreg", hash_bits=10),
                           reason=COLD_START_REASON) == "ctr-v2.0"
    assert registry.get("ctr-v2.0").mode == "cold_start"
    assert registry.get("ctr-v1.0").status == "rejected"


def test_the_poll_finds_a_champion_change_without_an_announcement(
    serve: Callable[..., Served], registry: RedisRegistry, rclient: redis.Redis
) -> None:
    served = serve()  # polls every second (ServingSettings in the fixture)
    register(registry, "ctr-v1.0", seed=1)
    # The pointer moves with no pub/sub message (as if the announcement had been lost).
    rclient.set(f"{registry.cfg.prefix}champion", "ctr-v1.1")
    wait_for(lambda: served.predict().json()["model_version"] == "ctr-v1.1", 5,
             "the poll to pick up ctr-v1.1")


def test_hot_swap_under_concurrent_load_fails_no_request(
    serve: Callable[..., Served], registry: RedisRegistry
) -> None:
    served = serve()
    register(registry, "ctr-v1.0", seed=1)
    stop = threading.Event()
    seen: list[list[str]] = [[], []]
    failures: list[str] = []

    def hammer(log: list[str]) -> None:
        with httpx.Client(base_url=served.url, timeout=10.0) as http:
            while not stop.is_set():
                try:
                    r = http.post("/v1/predict", json=predict_body(20))
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        log.append(r.json()["model_version"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(log,)) for log in seen]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: all(len(log) >= 20 for log in seen), 20, "load before the swap")
        promoted_at = time.monotonic()
        registry.promote("ctr-v1.1", "integration: hot swap")
        wait_for(lambda: all(log[-1:] == ["ctr-v1.1"] for log in seen), 10, "the new version")
        visible_s = time.monotonic() - promoted_at
        counts = [len(log) for log in seen]
        wait_for(lambda: all(len(log) >= c + 20 for log, c in zip(seen, counts, strict=True)),
                 20, "load after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert failures == []
    for log in seen:
        first_new = log.index("ctr-v1.1")
        assert first_new >= 20 and set(log[:first_new]) == {"ctr-v1.0"}
        assert set(log[first_new:]) == {"ctr-v1.1"}  # never back to the old model
    assert visible_s < 2.0, f"promotion visible after {visible_s:.2f} s"


def test_admin_api_promotes_shows_lineage_and_rolls_back(
    serve: Callable[..., Served], registry: RedisRegistry
) -> None:
    served = serve()
    register(registry, "ctr-v1.0", seed=1)
    http = served.http
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http.post("/v1/models/ctr-v1.1/promote").status_code == 401
    assert http.post("/v1/models/ctr-v1.1/promote",
                     headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert registry.champion_version() == "ctr-v1.0"

    listing = http.get("/v1/models").json()
    assert listing["champion"] == "ctr-v1.0"
    assert [v["version"] for v in listing["versions"]] == ["ctr-v1.1", "ctr-v1.0"]
    shown = http.get("/v1/models/ctr-v1.1").json()
    assert shown["parent"] == "ctr-v1.0" and shown["mode"] == "stateful"
    assert shown["lineage"] == {"ranges": [{"topic": "examples", "partition": 0, "first": 100,
                                            "last": 219}], "n_examples": 120}
    assert shown["artifact_stored"] is True and shown["champion"] is False
    assert http.get("/v1/models/ctr-v9.9").status_code == 404
    bad = http.get("/v1/models/not-a-version")
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "version"

    promoted = http.post("/v1/models/ctr-v1.1/promote", headers=auth,
                         json={"reason": "integration test"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"champion": "ctr-v1.1", "previous": "ctr-v1.0",
                               "serving": "ctr-v1.1"}
    assert served.predict().json()["model_version"] == "ctr-v1.1"
    assert registry.history(1)[0].reason == "integration test"

    rolled = http.post("/v1/models/rollback", headers=auth)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json() == {"champion": "ctr-v1.0", "previous": "ctr-v1.1",
                             "serving": "ctr-v1.0"}
    assert served.predict().json()["model_version"] == "ctr-v1.0"
    nothing_left = http.post("/v1/models/rollback", headers=auth)
    assert nothing_left.status_code == 409 and "no previous champion" in nothing_left.text


def test_rollback_through_the_registry_reaches_serving(
    serve: Callable[..., Served], registry: RedisRegistry
) -> None:
    served = serve()
    register(registry, "ctr-v1.0", seed=1)
    registry.promote("ctr-v1.1", "integration")
    wait_for(lambda: served.predict().json()["model_version"] == "ctr-v1.1", 5, "v1.1")
    registry.rollback("integration: rollback")  # what `streamlearn models rollback` does
    wait_for(lambda: served.predict().json()["model_version"] == "ctr-v1.0", 5, "v1.0 back")


def test_a_tampered_artifact_is_refused_and_the_champion_keeps_serving(
    serve: Callable[..., Served], registry: RedisRegistry, rclient: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = serve()
    register(registry, "ctr-v1.0", seed=1)
    key = f"{registry.cfg.prefix}artifact:ctr-v1.1"
    chunk = bytearray(rclient.hget(key, "chunk:0") or b"")
    chunk[300] ^= 0x40
    rclient.hset(key, "chunk:0", bytes(chunk))

    # Through the API, the registry refuses to promote it: 409, nothing moves.
    refused = served.http.post("/v1/models/ctr-v1.1/promote",
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert refused.status_code == 409 and "ctr-v1.1" in refused.text
    assert registry.champion_version() == "ctr-v1.0"

    # Someone with write access to Redis moves the pointer by hand and announces it.
    caplog.set_level(logging.ERROR, logger="services.serving.champion")
    rclient.set(f"{registry.cfg.prefix}champion", "ctr-v1.1")
    rclient.publish(registry.channel, ChampionChange("promote", "ctr-v1.1", "ctr-v1.0", "evil",
                                                     int(time.time() * 1000)).to_json())
    metrics = served.ctx.metrics
    wait_for(lambda: metrics.swaps["refused"]._value.get() >= 1, 5, "the refusal")
    assert "refusing champion ctr-v1.1" in caplog.text
    for _ in range(10):
        response = served.predict()
        assert response.status_code == 200
        assert response.json()["model_version"] == "ctr-v1.0"
    time.sleep(1.5)  # past one poll interval: the refused version is not reloaded on a poll
    assert metrics.swaps["refused"]._value.get() == 1
    assert served.http.get("/readyz").json()["model_version"] == "ctr-v1.0"


def test_an_unreachable_broker_never_fails_a_request(
    stack: Stack, registry_settings: RegistrySettings, make_topics: Callable[..., KafkaSettings],
) -> None:
    # The real CLI, its producer pointed at a closed port (the shared broker stays up).
    kafka = make_topics(create=False)
    port, dead = free_port(), free_port()
    env = {
        **os.environ,
        "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead}",
        "STREAMLEARN_KAFKA_PREDICTIONS_TOPIC": kafka.predictions_topic,
        "STREAMLEARN_REDIS_URL": stack.redis_settings.url,
        "STREAMLEARN_REGISTRY_PREFIX": registry_settings.prefix,
        "STREAMLEARN_REGISTRY_SIGNING_KEY": SIGNING_KEY,
        "STREAMLEARN_TRAINER_MODEL": "logreg",
        "STREAMLEARN_TRAINER_HASH_BITS": "10",
        "STREAMLEARN_SERVING_PRODUCER_QUEUE_MESSAGES": "200",
        "STREAMLEARN_SERVING_PRODUCER_MESSAGE_TIMEOUT_MS": "1000",
    }
    cli = os.path.join(os.path.dirname(sys.executable), "streamlearn")
    proc = subprocess.Popen([cli, "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http:

            def ready() -> bool:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                try:
                    return http.get("/readyz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, 60, "streamlearn serve to be ready")
            slowest = 0.0
            for _ in range(30):  # 600 candidates into a 200-message queue
                t0 = time.perf_counter()
                response = http.post("/v1/predict", json=predict_body(20))
                slowest = max(slowest, time.perf_counter() - t0)
                assert response.status_code == 200, response.text
            assert http.post("/v1/events", json={"events": [
                {"type": "click", "prediction_id": "p1"}]}).status_code == 202
            assert slowest < 1.0, f"a request took {slowest:.3f} s with the broker down"

            def errors(reason: str) -> float:
                text = http.get("/metrics").text
                total = 0.0
                for line in text.splitlines():
                    if line.startswith("streamlearn_serving_produce_errors_total{") and \
                            f'reason="{reason}"' in line:
                        total += float(line.rsplit(" ", 1)[1])
                return total

            assert errors("overflow") >= 300  # at most 200 queued (+ what timed out meanwhile)
            wait_for(lambda: errors("delivery") >= 1, 10, "delivery failures to be counted")
            assert http.get("/healthz").status_code == 200
    finally:
        stop_process(proc, timeout_s=15)
