"""The Redis registry on the real Redis of the stack: each test has its own key prefix."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis

from config.settings import RegistrySettings
from models import build_model
from models.errors import ArtifactError, ChampionChangedError, RegistryError, VersionExistsError
from models.gate.decision import GateDecision
from models.learners.base import Model
from models.registry import Lineage, Mode, ModelRecord, OffsetRange
from services.local.stack.manager import Stack
from services.registry.redis import RedisRegistry

BATCH = [{"device": "tv", "item_category": "games", "price": 12.5},
         {"device": "mobile", "item_category": "books", "price": 3.0}]


@pytest.fixture
def client(stack: Stack) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(stack.redis_settings.url, socket_timeout=30.0)
    yield c
    c.close()


@pytest.fixture
def make_registry(client: redis.Redis) -> Iterator[Callable[..., RedisRegistry]]:
    """Factory: a registry under a fresh key prefix; every key under it is deleted afterwards."""
    prefixes: list[str] = []

    def make(**overrides: Any) -> RedisRegistry:
        prefix = overrides.pop("prefix", f"test-{uuid.uuid4().hex[:10]}:")
        prefixes.append(prefix)
        cfg = RegistrySettings(prefix=prefix, signing_key="integration-test-key", **overrides)
        return RedisRegistry(client, cfg)

    yield make
    for prefix in prefixes:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def trained(name: str = "logreg", **hyperparams: Any) -> Model:
    model = build_model(name, **{"hash_bits": 10, **hyperparams})
    model.learn_many(BATCH, [1, 0])
    return model


def register(registry: RedisRegistry, parent: str | None = None, mode: Mode = "stateless",
             model: Model | None = None, created_at: int | None = None) -> ModelRecord:
    model = model or trained()
    blob = model.save()
    version = registry.next_version(parent, mode)
    record = ModelRecord.for_model(
        model, blob, version=version, parent=parent, mode=mode,
        created_at=created_at or int(time.time() * 1000),
        lineage=Lineage((OffsetRange("examples", 0, 10, 521), OffsetRange("examples", 1, 3, 502)),
                        1012),
    )
    return registry.put(record, blob)


def wait_message(pubsub: redis.client.PubSub, timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if msg is not None and msg["type"] == "message":
            return json.loads(msg["data"])
    raise AssertionError(f"no message on the channel within {timeout_s} s")


def flip_byte(client: redis.Redis, registry: RedisRegistry, version: str, index: int) -> None:
    key = f"{registry.cfg.prefix}artifact:{version}"
    chunk = bytearray(client.hget(key, "chunk:0") or b"")
    chunk[index] ^= 0x40
    client.hset(key, "chunk:0", bytes(chunk))


def test_put_get_load_round_trip(make_registry: Callable[..., RedisRegistry]) -> None:
    registry = make_registry()
    model = trained()
    first = register(registry, model=model)
    assert first.version == "ctr-v1.0"
    assert registry.get("ctr-v1.0") == first
    loaded = registry.load("ctr-v1.0")
    assert np.array_equal(loaded.predict_proba_many(BATCH), model.predict_proba_many(BATCH))
    second = register(registry, parent="ctr-v1.0", mode="stateful")
    assert second.version == "ctr-v1.1" and second.lineage.n_examples == 1012
    assert [r.version for r in registry.list()] == ["ctr-v1.1", "ctr-v1.0"]
    assert registry.champion() is None
    with pytest.raises(VersionExistsError, match="ctr-v1.1 is already registered"):
        registry.put(second, registry.artifact("ctr-v1.1"))
    with pytest.raises(RegistryError, match="unknown version ctr-v9.9"):
        registry.get("ctr-v9.9")


def test_promote_moves_the_pointer_and_publishes(
    make_registry: Callable[..., RedisRegistry], client: redis.Redis
) -> None:
    registry = make_registry()
    register(registry)
    register(registry, parent="ctr-v1.0", mode="stateful")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(registry.channel)
    try:
        registry.promote("ctr-v1.0", "cold start")
        assert wait_message(pubsub) == {"action": "promote", "version": "ctr-v1.0",
                                        "previous": None, "reason": "cold start",
                                        "at": registry.history()[0].at}
        new = registry.promote("ctr-v1.1", "gate: better", expected="ctr-v1.0")
        message = wait_message(pubsub)
    finally:
        pubsub.close()
    assert (message["version"], message["previous"]) == ("ctr-v1.1", "ctr-v1.0")
    assert new.status == "champion" and registry.champion_version() == "ctr-v1.1"
    assert registry.get("ctr-v1.0").status == "retired"
    assert [(c.action, c.version, c.previous) for c in registry.history()] == [
        ("promote", "ctr-v1.1", "ctr-v1.0"), ("promote", "ctr-v1.0", None)]
    with pytest.raises(ChampionChangedError, match="champion is ctr-v1.1, expected none"):
        registry.promote("ctr-v1.0", "cold start", expected=None)
    assert registry.promote("ctr-v1.1", "again").status == "champion"  # a no-op
    assert len(registry.history()) == 2


def test_rollback_restores_the_previous_champion(
    make_registry: Callable[..., RedisRegistry], client: redis.Redis
) -> None:
    registry = make_registry()
    for parent in (None, "ctr-v1.0", "ctr-v1.1"):
        register(registry, parent=parent, mode="stateful" if parent else "cold_start")
    for version in ("ctr-v1.0", "ctr-v1.1", "ctr-v1.2"):
        registry.promote(version, "gate")
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(registry.channel)
    try:
        restored = registry.rollback("bad CTR")
        message = wait_message(pubsub)
    finally:
        pubsub.close()
    assert restored.version == "ctr-v1.1" and registry.champion_version() == "ctr-v1.1"
    assert (message["action"], message["version"], message["previous"]) == (
        "rollback", "ctr-v1.1", "ctr-v1.2")
    assert registry.get("ctr-v1.2").status == "retired"
    assert registry.rollback().version == "ctr-v1.0"  # successive rollbacks walk back
    with pytest.raises(RegistryError, match="no previous champion to roll back to"):
        registry.rollback()
    assert registry.champion_version() == "ctr-v1.0"


def test_tampered_or_unsigned_artifact_is_refused_and_the_champion_stays(
    make_registry: Callable[..., RedisRegistry], client: redis.Redis
) -> None:
    registry = make_registry()
    register(registry)
    registry.promote("ctr-v1.0", "first")
    register(registry, parent="ctr-v1.0", mode="stateful")
    flip_byte(client, registry, "ctr-v1.1", 200)
    with pytest.raises(ArtifactError, match="artifact of ctr-v1.1 fails its SHA-256 check"):
        registry.promote("ctr-v1.1", "gate")
    with pytest.raises(ArtifactError, match="ctr-v1.1"):
        registry.load("ctr-v1.1")
    champion = registry.champion()
    assert champion is not None and champion.version == "ctr-v1.0"
    assert registry.get("ctr-v1.1").status == "candidate"

    # A forger who also rewrites the record's checksum still lacks the HMAC key.
    model_key = f"{registry.cfg.prefix}model:ctr-v1.1"
    art_key = f"{registry.cfg.prefix}artifact:ctr-v1.1"
    blob = client.hget(art_key, "chunk:0") or b""
    record = json.loads(client.hget(model_key, "record") or b"")
    record["artifact"]["sha256"] = hashlib.sha256(blob).hexdigest()
    client.hset(model_key, "record", json.dumps(record))
    with pytest.raises(ArtifactError, match="fails its HMAC signature check"):
        registry.promote("ctr-v1.1", "gate")
    client.hdel(art_key, "signature")
    with pytest.raises(ArtifactError, match="artifact of ctr-v1.1 is unsigned"):
        registry.load("ctr-v1.1")
    assert registry.champion_version() == "ctr-v1.0"
    assert registry.history()[0].version == "ctr-v1.0"


def test_an_artifact_signed_with_another_key_is_refused(
    make_registry: Callable[..., RedisRegistry], client: redis.Redis
) -> None:
    ours = make_registry()
    theirs = RedisRegistry(client, RegistrySettings(prefix=ours.cfg.prefix, signing_key="other"))
    register(theirs)
    with pytest.raises(ArtifactError, match="tampered, or signed with another key"):
        ours.load("ctr-v1.0")


def test_large_artifact_round_trips_in_chunks(
    make_registry: Callable[..., RedisRegistry], client: redis.Redis
) -> None:
    registry = make_registry()  # default 4 MiB chunks
    model = trained("fm", hash_bits=16, factors=16)
    record = register(registry, model=model)
    chunks = int(client.hget(f"{registry.cfg.prefix}artifact:ctr-v1.0", "chunks") or 0)
    assert record.artifact.size > 2 * registry.cfg.chunk_bytes and chunks == -(
        -record.artifact.size // registry.cfg.chunk_bytes)
    loaded = registry.load("ctr-v1.0")
    assert np.array_equal(loaded.predict_proba_many(BATCH), model.predict_proba_many(BATCH))


def test_retention_prunes_oldest_artifacts_but_keeps_champion_and_records(
    make_registry: Callable[..., RedisRegistry],
) -> None:
    registry = make_registry(max_versions=3, max_history=2, rollback_depth=1)
    register(registry, created_at=1000)
    registry.promote("ctr-v1.0", "first")
    for i in range(1, 6):
        register(registry, parent=f"ctr-v1.{i - 1}", mode="stateful", created_at=1000 + i)
    stored = [r.version for r in registry.list() if registry.has_artifact(r.version)]
    assert stored == ["ctr-v1.5", "ctr-v1.4", "ctr-v1.0"]
    assert len(registry.list()) == 6  # records stay
    with pytest.raises(ArtifactError, match="artifact of ctr-v1.1 is not stored"):
        registry.load("ctr-v1.1")
    for version in ("ctr-v1.4", "ctr-v1.5"):
        registry.promote(version, "gate")
    assert [c.version for c in registry.history()] == ["ctr-v1.5", "ctr-v1.4"]
    register(registry, parent="ctr-v1.5", mode="stateful", created_at=2000)
    # rollback_depth=1 protects ctr-v1.4 (one step back) besides the champion.
    stored = {r.version for r in registry.list() if registry.has_artifact(r.version)}
    assert stored == {"ctr-v1.6", "ctr-v1.5", "ctr-v1.4"}
    assert registry.rollback().version == "ctr-v1.4"


def test_concurrent_promotions_leave_a_consistent_champion_and_history(
    make_registry: Callable[..., RedisRegistry],
) -> None:
    registry = make_registry(max_history=500)
    versions = [register(registry).version for _ in range(4)]
    registry.promote(versions[0], "start")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def churn(mine: list[str]) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(25):
                registry.promote(mine[i % 2], f"thread {mine[0]}")
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(versions[k : k + 2],)) for k in (0, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    history = registry.history()
    # "start" + 50 promotions, none lost; thread 0's first is a no-op when it runs first.
    assert 50 <= len(history) <= 51
    champion = registry.champion_version()
    assert champion == history[0].version
    for newer, older in zip(history, history[1:], strict=False):
        assert newer.previous == older.version
    statuses = {r.version: r.status for r in registry.list()}
    assert [v for v, s in statuses.items() if s == "champion"] == [champion]
    assert {s for v, s in statuses.items() if v != champion} == {"retired"}


def test_gate_decisions_are_recorded_and_rejected_versions_need_force(
    make_registry: Callable[..., RedisRegistry],
) -> None:
    registry = make_registry()
    register(registry)
    registry.promote("ctr-v1.0", "first")
    register(registry, parent="ctr-v1.0", mode="stateful")
    wait = GateDecision("keep_training", "min_examples: 10 paired examples so far, need 1024",
                        {"n": 10.0}, "min_examples")
    assert registry.record_decision("ctr-v1.1", wait).status == "candidate"
    no = GateDecision("reject", "worse: challenger log loss 0.5 vs champion 0.4",
                      {"n": 2048.0, "p_worse": 0.001}, "worse")
    assert registry.reject("ctr-v1.1", no).status == "rejected"
    assert registry.get("ctr-v1.1").gate == no
    assert [d["outcome"] for d in registry.decisions()] == ["reject", "keep_training"]
    with pytest.raises(RegistryError, match="ctr-v1.1 was rejected"):
        registry.promote("ctr-v1.1", "manual")
    with pytest.raises(RegistryError, match="is the champion"):
        registry.reject("ctr-v1.0", no)
    assert registry.promote("ctr-v1.1", "manual override", force=True).status == "champion"


def test_a_sanity_refresh_request_is_cleared_only_by_whoever_acted_on_it(
    make_registry: Callable[..., RedisRegistry], client: redis.Redis
) -> None:
    registry = make_registry()
    assert registry.sanity_refresh_requested() is None
    at = registry.request_sanity_refresh()
    assert registry.sanity_refresh_requested() == at
    client.set(f"{registry.cfg.prefix}sanity-refresh", str(at + 1))  # a newer request came in
    registry.clear_sanity_refresh(at)
    assert registry.sanity_refresh_requested() == at + 1  # still pending: not the one acted on
    registry.clear_sanity_refresh(at + 1)
    assert registry.sanity_refresh_requested() is None


def test_champion_changes_and_refusals_are_counted_in_the_given_metrics(
    make_registry: Callable[..., RedisRegistry], client: redis.Redis
) -> None:
    from prometheus_client import CollectorRegistry

    from services.registry.metrics import RegistryMetrics

    metrics_registry = CollectorRegistry()
    registry = make_registry()
    registry.metrics = RegistryMetrics(metrics_registry)

    def count(name: str, **labels: str) -> float | None:
        return metrics_registry.get_sample_value(f"streamlearn_registry_{name}_total", labels)

    # Every series is there at 0 before anything happens.
    assert count("promotions", forced="false") == 0.0
    assert count("rollbacks") == 0.0
    assert count("rejections", rule="worse") == 0.0
    register(registry)
    register(registry, parent="ctr-v1.0", mode="stateful")
    registry.promote("ctr-v1.0", "first")
    registry.promote("ctr-v1.0", "again")  # a no-op moves nothing, counts nothing
    registry.promote("ctr-v1.1", "gate")
    assert count("promotions", forced="false") == 2.0
    registry.rollback("bad")
    assert count("rollbacks") == 1.0
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("again")
    assert count("change_failures", action="rollback", reason="refused") == 1.0
    assert count("rollbacks") == 1.0

    no = GateDecision("reject", "worse: challenger log loss 0.5 vs champion 0.4", {}, "worse")
    registry.reject("ctr-v1.1", no)
    registry.reject("ctr-v1.1", GateDecision("reject", "by hand", {}, "a-free-text-rule"))
    assert count("rejections", rule="worse") == 1.0
    assert count("rejections", rule="other") == 1.0
    with pytest.raises(RegistryError, match="was rejected"):
        registry.promote("ctr-v1.1", "manual")
    assert count("change_failures", action="promote", reason="refused") == 1.0
    with pytest.raises(ChampionChangedError):
        registry.promote("ctr-v1.1", "cas", expected=None, force=True)
    assert count("change_failures", action="promote", reason="champion_changed") == 1.0
    register(registry, parent="ctr-v1.0", mode="stateful")
    flip_byte(client, registry, "ctr-v1.2", 200)
    with pytest.raises(ArtifactError):
        registry.promote("ctr-v1.2", "gate")
    assert count("change_failures", action="promote", reason="artifact") == 1.0
    assert registry.promote("ctr-v1.1", "override", force=True).status == "champion"
    assert (count("promotions", forced="true"), count("promotions", forced="false")) == (1.0, 2.0)
    assert registry.champion_version() == "ctr-v1.1"
