"""The trainer on the real stack: it learns, the gate promotes and rejects, restarts are exact.

Each test has fresh topics (``make_topics``), its own registry prefix and trainer group. The
gate tests run ``Trainer`` in this process; the restart test runs ``streamlearn train`` as a
subprocess and SIGKILLs it in the middle of a stream.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from config.settings import (
    DriftSettings,
    GateSettings,
    KafkaSettings,
    RegistrySettings,
    SchemaSettings,
    TrainerSettings,
    TriggerSettings,
)
from models import Model, build_model
from models.registry import ModelRecord
from models.training.policies import train_from_scratch
from models.training.triggered import TriggeredPolicy
from services.local.stack.manager import Stack
from services.local.wait import wait_for
from services.registry.redis import RedisRegistry
from services.simulator.labeled import BASE_RATE, labeled_stream
from services.trainer.metrics import TrainerMetrics
from services.trainer.service import Trainer
from services.trainer.store import StateStore
from streams.schemas import Example, encode

SIGNING_KEY = "trainer-integration-key"
SMALL = {"model": "logreg", "hash_bits": 12}


def stream_of(n: int, seed: int, prefix: str = "", world_seed: int | None = None,
              favourite_rate: float = 0.3) -> list[Example]:
    """Labels after a fixed delay, so label order is prediction order and every part of the
    stream has the same click rate; a CTR near the cold-start prior (0.05), so a learning
    challenger's prequential mean stays calibrated enough for the gate's calibration rule."""
    rates = {k: v / 2 for k, v in BASE_RATE.items()}
    return labeled_stream(n, seed, users=20, favourite_rate=favourite_rate, base_rate=rates,
                          click_delay_ms=1_000, window_ms=1_000, prefix=prefix,
                          world_seed=world_seed)


@pytest.fixture
def client(stack: Stack) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(stack.redis_settings.url, socket_timeout=30.0)
    yield c
    keys = list(c.scan_iter(match="test-trainer-*", count=1000))
    if keys:
        c.delete(*keys)
    c.close()


@pytest.fixture
def registry(client: redis.Redis) -> RedisRegistry:
    prefix = f"test-trainer-{uuid.uuid4().hex[:10]}:"
    return RedisRegistry(client, RegistrySettings(prefix=prefix, signing_key=SIGNING_KEY))


def store_of(registry: RedisRegistry, group: str) -> StateStore:
    return StateStore(registry.client, registry.cfg.prefix, group, SIGNING_KEY.encode())


def produce(kafka: KafkaSettings, messages: Sequence[Example | bytes]) -> None:
    """Examples keyed by prediction_id (raw bytes: keyed ``bad``), flushed."""
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers,
                         "partitioner": "murmur2_random", "linger.ms": 5})
    for m in messages:
        if isinstance(m, bytes):
            producer.produce(kafka.examples_topic, value=m, key=b"bad")
        else:
            producer.produce(kafka.examples_topic, value=encode(m), key=m.prediction_id.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def end_offsets(kafka: KafkaSettings) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": "probe"})
    try:
        topic = kafka.examples_topic
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
    finally:
        consumer.close()


def in_process(kafka: KafkaSettings, registry: RedisRegistry, *,
               triggers: TriggerSettings | None = None, drift: DriftSettings | None = None,
               **overrides: Any) -> Trainer:
    group = overrides.pop("group_id", f"test-trainer-{uuid.uuid4().hex[:8]}")
    cfg = TrainerSettings(**{
        **SMALL, "group_id": group, "batch_size": 500, "max_wait_ms": 200,
        "checkpoint_interval_ms": 0, "metrics_port": 0, "lock_ttl_ms": 2_000,
        "sanity_size": 500, **overrides,
    })
    gate = GateSettings(min_examples=1_000, auc_floor=0.55)
    trainer = Trainer(kafka, cfg, gate, SchemaSettings(), registry, store_of(registry, group),
                      TrainerMetrics(), triggers=triggers, drift=drift)
    trainer.start()
    return trainer


def run_until(trainer: Trainer, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    try:
        while not done():
            assert time.monotonic() < deadline, "trainer did not get there in time"
            trainer.poll_once()
        trainer.checkpoint()
    finally:
        trainer.close()


def sample(trainer: Trainer, name: str, **labels: str) -> float:
    value = trainer.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_cold_start_learns_and_the_gate_promotes_a_better_challenger(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    # One partition: the gate's evidence is the same examples in the same order on every run
    # (across three, the interleaving changed the batches, and 1 run in 4 the calibration
    # rule rejected the challenger).
    kafka = make_topics(partitions=1)
    stream = stream_of(4_000, seed=1)
    produce(kafka, stream)
    trainer = in_process(kafka, registry, gate_every_examples=3_000)
    assert registry.champion_version() == "ctr-v1.0"  # cold start: an untrained v1.0
    assert registry.get("ctr-v1.0").mode == "cold_start"

    run_until(trainer, lambda: trainer.totals.trained == 4_000)

    decision = trainer.last_decision
    assert decision is not None and decision.outcome == "promote", decision
    assert decision.figures["challenger_loss"] < decision.figures["champion_loss"]
    assert registry.champion_version() == "ctr-v1.1"
    promoted = registry.get("ctr-v1.1")
    assert (promoted.status, promoted.mode, promoted.parent) == ("champion", "stateful",
                                                                 "ctr-v1.0")
    assert promoted.gate is not None and promoted.gate.outcome == "promote"
    # Lineage: exactly the examples the challenger learnt before the decision, and ranges on
    # the test's topic that add up to at least that many offsets.
    # A cold-start champion gets its first verdict at min_examples (1,000), then every 3,000.
    assert promoted.lineage.n_examples in range(1_000, 4_001)
    assert {r.topic for r in promoted.lineage.ranges} == {kafka.examples_topic}
    assert (sum(r.last - r.first + 1 for r in promoted.lineage.ranges)
            >= promoted.lineage.n_examples)
    assert registry.get("ctr-v1.0").status == "retired"
    assert sample(trainer, "streamlearn_trainer_gate_decisions_total",
                  outcome="promote", rule="better") == 1
    # After the promotion the next challenger is a replica of v1.1 and goes on learning.
    assert trainer.champion_version == "ctr-v1.1"
    assert sample(trainer, "streamlearn_trainer_examples_total", outcome="trained") == 4_000


def test_the_gate_rejects_a_worse_challenger_and_keeps_the_champion(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=1)
    # A champion that learnt 20,000 examples of the same behaviour, registered and promoted.
    champion = build_model(SMALL["model"], hash_bits=SMALL["hash_bits"])
    history = stream_of(20_000, seed=7, prefix="old-", world_seed=2)
    train_from_scratch(champion, history, batch_size=500)
    blob = champion.save()
    record = ModelRecord.for_model(champion, blob, version="ctr-v3.0", parent=None,
                                   mode="manual", created_at=int(time.time() * 1000))
    registry.put(record, blob)
    registry.promote("ctr-v3.0", "test setup")
    # Stateless: after 3,000 examples, a model trained from scratch on the last 200 only.
    produce(kafka, stream_of(6_000, seed=2))
    trainer = in_process(kafka, registry, mode="stateless", stateless_window=200,
                         stateless_retrain_examples=3_000, stateless_retrain_ms=0,
                         stateless_epochs=1, gate_every_examples=2_000)

    run_until(trainer, lambda: trainer.totals.trained == 6_000)

    rejected = [r for r in registry.list() if r.status == "rejected"]
    assert [r.mode for r in rejected] == ["stateless"], registry.list()
    assert rejected[0].gate is not None and rejected[0].gate.outcome == "reject"
    assert rejected[0].gate.figures["challenger_loss"] > rejected[0].gate.figures["champion_loss"]
    assert registry.champion_version() == "ctr-v3.0"
    logged = [d["version"] for d in registry.decisions(limit=100)]
    assert logged.count(rejected[0].version) == 1, logged  # once, with its status change
    assert sample(trainer, "streamlearn_trainer_gate_decisions_total", outcome="reject",
                  rule=rejected[0].gate.rule) == 1
    # Before the retrain the challenger was the champion's replica: equal, so no verdict.
    assert sample(trainer, "streamlearn_trainer_gate_decisions_total",
                  outcome="keep_training", rule="not_significant") >= 1


def test_bad_examples_go_to_the_dlq_and_duplicates_are_learnt_once(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=2)
    stream = stream_of(1_000, seed=3)
    bad = [b"{not json", orjson.dumps({"prediction_id": "x", "label": 2})]
    produce(kafka, [*stream[:600], *bad, *stream[:100], *stream[600:]])
    trainer = in_process(kafka, registry, gate_every_examples=100_000)

    run_until(trainer, lambda: trainer.ledger.next_offsets and
              sum(trainer.ledger.next_offsets.values()) == 1_102)

    assert (trainer.totals.trained, trainer.totals.duplicates, trainer.totals.invalid) == (
        1_000, 100, 2)
    dlq = read_topic(kafka, kafka.dlq_topic, 2)
    errors = sorted(orjson.loads(v)["error"] for v in dlq)
    assert errors[0].startswith("field 'label'") and errors[1].startswith("invalid JSON")
    assert all(orjson.loads(v)["source_topic"] == kafka.examples_topic for v in dlq)


def test_a_user_who_clicks_everything_is_not_learnt_from(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=1)
    humans = stream_of(1_000, seed=5)
    # A bot among the humans: every one of its 200 shown items clicked.
    bot = [replace(e, prediction_id=f"bot-{i}", label=1,
                   features={**e.features, "user_id": "bot-1"})
           for i, e in enumerate(stream_of(200, seed=6))]
    mixed = [x for pair in zip(humans[:200], bot, strict=True) for x in pair] + humans[200:]
    produce(kafka, mixed)
    trainer = in_process(kafka, registry, gate_every_examples=100_000, batch_size=100)

    run_until(trainer, lambda: sum(trainer.ledger.next_offsets.values()) == 1_200)

    guarded = trainer.metrics.examples["guarded"]._value.get()
    # Judged on its record before each batch: its first batch (50 labels) is learnt, then not.
    assert 150 <= guarded <= 190, guarded
    assert trainer.totals.trained == 1_200 - guarded
    assert trainer.ledger.next_offsets == {0: 1_200}  # guarded examples are done with too


def read_topic(kafka: KafkaSettings, topic: str, n: int, timeout_s: float = 20.0) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers,
                         "group.id": f"reader-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < n and time.monotonic() < deadline:
            for m in consumer.consume(100, timeout=0.5):
                if not m.error():
                    values.append(m.value())
    finally:
        consumer.close()
    return values


# -- restart in the middle of a stream (a real subprocess, SIGKILL) ------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()  # noqa: S310
    except OSError:
        return {}
    out = {}
    for line in body.decode().splitlines():
        match = re.match(r"^(streamlearn_trainer_\w+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            out[match[1]] = float(match[2])
    return out


def start_trainer(kafka: KafkaSettings, registry: RedisRegistry, group: str,
                  port: int, log: Any) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMLEARN_KAFKA_EXAMPLES_TOPIC": kafka.examples_topic,
        "STREAMLEARN_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
        "STREAMLEARN_REGISTRY_PREFIX": registry.cfg.prefix,
        "STREAMLEARN_REGISTRY_SIGNING_KEY": SIGNING_KEY,
        "STREAMLEARN_TRAINER_GROUP_ID": group,
        "STREAMLEARN_TRAINER_MODEL": SMALL["model"],
        "STREAMLEARN_TRAINER_HASH_BITS": str(SMALL["hash_bits"]),
        "STREAMLEARN_TRAINER_BATCH_SIZE": "100",
        "STREAMLEARN_TRAINER_MAX_WAIT_MS": "100",
        # Examples held for their cohort when the kill comes: a restart must read them again.
        "STREAMLEARN_TRAINER_COHORT_WAIT_MS": "300",
        "STREAMLEARN_TRAINER_CHECKPOINT_INTERVAL_MS": "150",
        "STREAMLEARN_TRAINER_GATE_EVERY_EXAMPLES": "1000000",
        "STREAMLEARN_GATE_MIN_EXAMPLES": "1000000",  # no verdict, not even a cold start's first
        "STREAMLEARN_TRAINER_LOCK_TTL_MS": "2000",
        "STREAMLEARN_TRAINER_METRICS_PORT": str(port),
    }
    return subprocess.Popen([sys.executable, "-m", "services.cli", "train"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def test_a_trainer_killed_mid_stream_resumes_and_learns_each_example_exactly_once(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry, tmp_path: Any
) -> None:
    kafka = make_topics(partitions=3)
    group = f"test-trainer-{uuid.uuid4().hex[:8]}"
    stream = stream_of(6_000, seed=4)
    # Redeliveries: 300 examples are sent a second time, some before and some after the kill.
    chunks = [stream[i : i + 250] for i in range(0, 6_000, 250)]
    chunks[10] = chunks[10] + stream[:150]
    chunks[20] = chunks[20] + stream[2_800:2_950]
    log = open(tmp_path / "trainer.log", "ab")  # noqa: SIM115 - closed below
    port1, port2 = free_port(), free_port()
    first = start_trainer(kafka, registry, group, port1, log)
    second = None
    try:
        for i, chunk in enumerate(chunks):  # a live stream: the trainer keeps up as it comes
            produce(kafka, chunk)
            if i == 12:
                wait_for(lambda: scrape(port1).get("streamlearn_trainer_durable_examples", 0)
                         >= 2_000, 60, "the first trainer to checkpoint 2,000 examples")
                first.send_signal(signal.SIGKILL)
                first.wait(10)
                second = start_trainer(kafka, registry, group, port2, log)
        total = sum(end_offsets(kafka).values())
        assert total == 6_300
        store = store_of(registry, group)

        def caught_up() -> bool:
            state = store.load()
            return state is not None and sum(state.ledger.next_offsets.values()) == total

        wait_for(caught_up, 90, "the restarted trainer to checkpoint the whole stream")
        assert second is not None
        figures = scrape(port2)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        log.close()

    state = store.load()
    assert state is not None
    assert (state.totals.trained, state.totals.duplicates, state.totals.invalid) == (
        6_000, 300, 0), (tmp_path / "trainer.log").read_text()[-3000:]
    restored = figures["streamlearn_trainer_restored_examples"]
    trained_by_second = figures['streamlearn_trainer_examples_total{outcome="trained"}']
    # Resumed mid-stream from a durable checkpoint, and learnt exactly the rest: nothing the
    # checkpoint held was learnt again, nothing after it was skipped.
    assert 2_000 <= restored < 6_000
    assert restored + trained_by_second == 6_000
    assert state.ledger.n_trained == 6_000  # one challenger learnt the whole stream


def test_a_champion_promoted_elsewhere_becomes_the_next_challengers_start(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=1)
    produce(kafka, stream_of(1_000, seed=5))
    trainer = in_process(kafka, registry, gate_every_examples=100_000, champion_poll_ms=50)
    try:
        wait_for(lambda: trainer.poll_once() or trainer.totals.trained == 1_000, 30,
                 "the first 1,000 examples")
        assert trainer.ledger.n_trained == 1_000
        other = build_model(SMALL["model"], hash_bits=SMALL["hash_bits"], seed=9)
        blob = other.save()
        registry.put(ModelRecord.for_model(other, blob, version="ctr-v7.0", parent=None,
                                           mode="manual", created_at=int(time.time() * 1000)),
                     blob)
        registry.promote("ctr-v7.0", "promoted by an operator")
        wait_for(lambda: trainer.poll_once() or trainer.champion_version == "ctr-v7.0", 10,
                 "the trainer to follow the new champion")
        # The challenger is now a replica of v7.0, its lineage starts afresh.
        feats = [e.features for e in stream_of(50, seed=6)]
        assert (trainer.policy.challenger.predict_proba_many(feats)
                == other.predict_proba_many(feats)).all()
        assert trainer.ledger.n_trained == 0 and trainer.evaluation.n == 0
    finally:
        trainer.close()


def test_retrain_from_scratch_registers_a_manual_major_version(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=2)
    produce(kafka, stream_of(3_000, seed=8))
    env = {
        **os.environ,
        "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMLEARN_KAFKA_EXAMPLES_TOPIC": kafka.examples_topic,
        "STREAMLEARN_REGISTRY_PREFIX": registry.cfg.prefix,
        "STREAMLEARN_REGISTRY_SIGNING_KEY": SIGNING_KEY,
        "STREAMLEARN_TRAINER_MODEL": SMALL["model"],
        "STREAMLEARN_TRAINER_HASH_BITS": str(SMALL["hash_bits"]),
    }
    done = subprocess.run([sys.executable, "-m", "services.cli", "retrain", "--from-scratch"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "trained logreg from scratch on 2700 examples" in done.stdout.replace("\n", " ")
    # 10 % held out; no champion to judge against yet, so the new model is promoted as v1.0.
    assert registry.champion_version() == "ctr-v1.0"
    record = registry.get("ctr-v1.0")
    assert (record.mode, record.parent, record.status) == ("manual", None, "champion")


def test_refresh_sanity_freezes_a_new_set_from_the_next_examples(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=3)
    first, second = stream_of(1_000, seed=7, prefix="a"), stream_of(1_000, seed=8, prefix="b")
    produce(kafka, first)
    trainer = in_process(kafka, registry, gate_every_examples=100_000, champion_poll_ms=50)
    try:
        wait_until(trainer, lambda: trainer.totals.trained == 1_000)
        assert {e.prediction_id for e in trainer.sanity} <= {e.prediction_id for e in first}
        assert len(trainer.sanity) == 500

        registry.request_sanity_refresh()  # what `streamlearn models refresh-sanity` does
        wait_until(trainer, lambda: registry.sanity_refresh_requested() is None)
        assert trainer.sanity == []  # dropped, and the checkpoint says so before the ack
        assert store_of(registry, trainer.cfg.group_id).load().sanity == []

        produce(kafka, second)
        wait_until(trainer, lambda: trainer.totals.trained == 2_000)
        assert len(trainer.sanity) == 500
        assert {e.prediction_id for e in trainer.sanity} <= {e.prediction_id for e in second}
    finally:
        trainer.close()


def wait_until(trainer: Trainer, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll the trainer until ``done`` (it stays open, unlike ``run_until``)."""
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "trainer did not get there in time"
        trainer.poll_once()


# -- triggered mode (issue 7) ---------------------------------------------------------------


def register_champion(registry: RedisRegistry, history: list[Example], version: str) -> Model:
    """A champion that learnt ``history``, registered and promoted."""
    champion = build_model(SMALL["model"], hash_bits=SMALL["hash_bits"])
    train_from_scratch(champion, history, batch_size=500)
    blob = champion.save()
    registry.put(ModelRecord.for_model(champion, blob, version=version, parent=None,
                                       mode="manual", created_at=int(time.time() * 1000)), blob)
    registry.promote(version, "test setup")
    return champion


def test_triggered_mode_trains_and_asks_the_gate_only_when_a_trigger_fires(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=3)
    produce(kafka, stream_of(1_500, seed=11, prefix="a"))
    later = stream_of(2_500, seed=13, prefix="b")
    volume = TriggerSettings(volume_every_labels=2_500, performance_tolerance=0,
                             drift_detector="none")
    # gate_every_examples=100 would ask the gate 40 times in the other modes. The lease
    # outlasts the pause while the test produces.
    trainer = in_process(kafka, registry, mode="triggered", triggers=volume,
                         gate_every_examples=100, lock_ttl_ms=60_000)
    try:
        wait_until(trainer, lambda: trainer.totals.trained == 1_500)
        feats = [e.features for e in stream_of(200, seed=12)]
        # No firing yet: nothing learnt, no gate decision.
        assert sample(trainer, "streamlearn_trainer_trigger_trainings_total") == 0
        assert (trainer.policy.challenger.predict_proba_many(feats)
                == trainer.champion.predict_proba_many(feats)).all()
        assert trainer.totals.decisions == 0
        # Buffered for the next training: all but what the per-user cap kept out.
        assert len(trainer.policy.buffer) == 1_500 - trainer.totals.capped  # type: ignore[attr-defined]

        produce(kafka, later)
        wait_until(trainer, lambda: trainer.totals.trained == 4_000)
    finally:
        trainer.close()
    # One volume firing between 2,500 and 3,000 labels; the challenger learnt the buffer then;
    # the gate was asked once, after 1,000 examples scored by the trained challenger.
    assert sample(trainer, "streamlearn_trainer_trigger_firings_total", kind="volume") == 1
    assert sample(trainer, "streamlearn_trainer_trigger_trainings_total") == 1
    assert trainer.totals.decisions == 1
    decision = trainer.last_decision
    assert decision is not None and decision.figures["n"] >= 1_000, decision
    assert decision.figures["n"] < 1_500
    # The cold-start champion is untrained: learning 2,500 examples is enough to beat it.
    assert decision.outcome == "promote", decision.reason
    record = registry.get("ctr-v1.1")
    assert (record.mode, record.parent, record.status) == ("stateful", "ctr-v1.0", "champion")
    # Its lineage is what it learnt at the firing, not the evidence scored after it.
    assert 2_500 <= record.lineage.n_examples < 3_000
    assert sum(sample(trainer, "streamlearn_trainer_trigger_firings_total", kind=k)
               for k in ("time", "performance", "drift")) == 0


def test_a_drift_in_the_label_stream_raises_the_alarm_and_the_drift_trigger(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=1)  # one partition: the drift point is an offset
    register_champion(registry, stream_of(20_000, seed=7, prefix="old-", world_seed=2),
                      "ctr-v3.0")
    produce(kafka, stream_of(5_000, seed=9, prefix="pre-", world_seed=2))
    # Other users' favourites, clicked twice as often: the champion's loss rises.
    drifted = stream_of(1_000, seed=10, prefix="post-", world_seed=3, favourite_rate=0.6)
    only_drift = TriggerSettings(volume_every_labels=0, performance_tolerance=0,
                                 drift_detector="adwin")
    trainer = in_process(kafka, registry, mode="triggered", triggers=only_drift,
                         sanity_size=300, lock_ttl_ms=60_000)
    try:
        wait_until(trainer, lambda: trainer.totals.trained == 5_000)
        # The same behaviour as the champion learnt: no alarm, no firing, nothing learnt.
        assert sample(trainer, "streamlearn_drift_alarms_total", detector="adwin") == 0
        assert sample(trainer, "streamlearn_trainer_trigger_firings_total", kind="drift") == 0
        assert sample(trainer, "streamlearn_trainer_trigger_trainings_total") == 0
        batches_before = trainer.totals.batches

        produce(kafka, drifted)
        wait_until(trainer, lambda: trainer.totals.trained == 6_000)
    finally:
        trainer.close()
    # Within the two drifted batches (500 each): the loss rose, then (more clicks than
    # predicted) the calibration moved; each firing is an alarm. The challenger learnt once:
    # the second firing is held while the gate's evidence is gathered.
    assert trainer.totals.batches - batches_before == 2
    firings = sample(trainer, "streamlearn_trainer_trigger_firings_total", kind="drift")
    assert 1 <= firings <= 2
    assert sample(trainer, "streamlearn_drift_alarms_total", detector="adwin") == firings
    assert sample(trainer, "streamlearn_trainer_trigger_trainings_total") == 1
    assert trainer.drift.alarms[0].startswith("drift: adwin: champion log loss rose from")
    # The alarm re-froze the gate's sanity set from examples of the new behaviour.
    assert len(trainer.sanity) == 300
    assert all(e.prediction_id.startswith("post-") for e in trainer.sanity)


def test_a_restarted_triggered_trainer_resumes_its_buffer_and_trigger_counts(
    make_topics: Callable[..., KafkaSettings], registry: RedisRegistry
) -> None:
    kafka = make_topics(partitions=2)
    produce(kafka, stream_of(1_500, seed=14, prefix="a"))
    later = stream_of(1_000, seed=15, prefix="b")
    volume = TriggerSettings(volume_every_labels=2_000, performance_tolerance=0,
                             drift_detector="none")
    group = f"test-trainer-{uuid.uuid4().hex[:8]}"
    first = in_process(kafka, registry, mode="triggered", triggers=volume, group_id=group)
    run_until(first, lambda: first.totals.trained == 1_500)  # checkpoints, then closes
    buffered = len(first.policy.buffer)  # type: ignore[attr-defined]
    assert buffered == 1_500 - first.totals.capped

    second = in_process(kafka, registry, mode="triggered", triggers=volume, group_id=group,
                        lock_ttl_ms=60_000)
    try:
        policy = second.policy
        assert isinstance(policy, TriggeredPolicy)
        assert len(policy.buffer) == buffered and policy.trainings == 0
        assert policy.triggers.triggers[0].since == 1_500  # type: ignore[attr-defined]
        produce(kafka, later)
        wait_until(second, lambda: second.totals.trained == 2_500)
    finally:
        second.close()
    # 500 more labels made 2,000: one firing, and the challenger learnt what both processes
    # buffered (less what the per-user cap kept out).
    assert sample(second, "streamlearn_trainer_trigger_firings_total", kind="volume") == 1
    assert policy.trainings == 1
    assert policy.total_trained + len(policy.buffer) == 2_500 - second.totals.capped
