"""`python -m bench joiner`: one joiner worker against the practical limit of one Python process.

Phases, all on the real broker with fresh topics:

1. **backlog**: a generated scenario (known expected examples) is produced first; one
   `streamlearn join` worker then works through it. ``input_msgs_per_s`` comes from the
   group's committed offsets; ``lost`` and ``duplicates`` compare the examples read back with
   read_committed to the expected set.
2. **passthrough**: a plain confluent-kafka consume→produce loop over the same input topics on
   the same broker in the same run: the practical limit for one Python process. ``ratio`` =
   joiner / passthrough.
3. **live**: predictions and clicks produced in real time; ``join_latency_*`` is the time from
   a click's timestamp until a read_committed consumer holds the positive example.
4. **memory**: a worker holding pending predictions (long window); RSS growth per 100k.

Targets (issue 3): lost = duplicates = 0; ≥ 10,000 input msg/s; ratio ≥ 0.25; latency p99 ≤
250 ms; ≤ 300 MB per 100k pending.
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console

from bench.common import percentile, running_stack
from config.settings import KafkaSettings
from services.local.joiners import (
    JoinerCluster,
    committed,
    delete_topics,
    end_offsets,
    produce,
    read_examples,
    wait_until_drained,
)
from streams.joiner.partitioning import murmur2_partition
from streams.joiner.policy import JoinPolicy
from streams.joiner.scenario import generate, summarize
from streams.schemas import Event, Prediction, decode_example, encode
from streams.topics import ensure_topics, topic_specs

BACKLOG_POLICY = JoinPolicy(
    attribution_window_ms=2_000, allowed_lateness_ms=15_000, max_event_lead_ms=15_000,
    idle_timeout_ms=1_000,
)


_CREATED: list[str] = []  # data topics of this run, deleted at its end


def fresh_topics(bootstrap: str, partitions: int = 3) -> KafkaSettings:
    tag = f"bj{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, predictions_topic=f"{tag}-predictions",
        events_topic=f"{tag}-events", examples_topic=f"{tag}-examples", dlq_topic=f"{tag}-dlq",
        late_labels_topic=f"{tag}-late-labels", partitions=partitions,
    )
    ensure_topics(AdminClient({"bootstrap.servers": bootstrap}), kafka)
    _CREATED.extend(spec.name for spec in topic_specs(kafka))
    return kafka


def backlog(bootstrap: str, workdir: Path, predictions: int,
            console: Console) -> tuple[dict[str, Any], KafkaSettings]:
    kafka = fresh_topics(bootstrap)
    s = generate("in_order", BACKLOG_POLICY, predictions=predictions, partitions=kafka.partitions,
                 seed=3, start_ts=int(time.time() * 1000) - 5_000, mean_gap_ms=1,
                 predictions_topic=kafka.predictions_topic, events_topic=kafka.events_topic)
    total = produce(kafka, s.messages)
    console.print(f"backlog: {total:,} input messages produced; starting one worker")
    cluster = JoinerCluster(kafka, workdir, BACKLOG_POLICY)
    ends = end_offsets(kafka, [kafka.predictions_topic, kafka.events_topic])
    cluster.start("bench")
    try:
        first_t, first_n, last_t = None, 0, None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = sum(max(0, o) for o in committed(kafka, cluster.group, ends).values())
            now = time.monotonic()
            if done and first_t is None:
                first_t, first_n = now, done
            if done >= total:
                last_t = now
                break
            time.sleep(0.2)
        if first_t is None or last_t is None or last_t <= first_t:
            raise RuntimeError(f"worker made no progress\n{cluster.logs()}")
        rate = (total - first_n) / (last_t - first_t)
        wait_until_drained(cluster)
        emitted = summarize(read_examples(kafka))
    finally:
        cluster.close()
    counts = Counter(emitted)
    figures = {
        "input_msgs": total,
        "input_msgs_per_s": round(rate),
        "lost": len(s.expected_examples - set(emitted)),
        "duplicates": sum(n - 1 for n in counts.values() if n > 1),
        "unexpected": len(set(emitted) - s.expected_examples),
    }
    return figures, kafka


def passthrough(kafka: KafkaSettings, total: int) -> float:
    """Messages per second of a plain consume→produce loop over the same input topics."""
    out_topic = f"{kafka.examples_topic}-passthrough"
    ensure_topics(AdminClient({"bootstrap.servers": kafka.bootstrap_servers}),
                  kafka.model_copy(update={"examples_topic": out_topic}))
    _CREATED.append(out_topic)
    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap_servers, "group.id": f"pt-{uuid.uuid4().hex}",
        "enable.auto.commit": False, "queued.min.messages": 1_000_000,
    })
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5,
                         "queue.buffering.max.messages": 1_000_000})
    t0 = time.perf_counter()
    consumer.assign([TopicPartition(t, p, 0) for t in (kafka.predictions_topic,
                                                       kafka.events_topic)
                     for p in range(kafka.partitions)])
    seen = 0
    while seen < total:
        for msg in consumer.consume(10_000, 1.0):
            if msg.error() is None:
                producer.produce(out_topic, key=msg.key(), value=msg.value(),
                                 partition=msg.partition())
                seen += 1
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - t0
    consumer.close()
    return seen / elapsed


def live_latency(bootstrap: str, workdir: Path, seconds: float, rate: int) -> list[float]:
    """Click ts → positive example held by a read_committed consumer, in milliseconds."""
    kafka = fresh_topics(bootstrap)
    policy = JoinPolicy(attribution_window_ms=30_000, allowed_lateness_ms=1_000,
                        idle_timeout_ms=2_000)
    cluster = JoinerCluster(kafka, workdir, policy)
    cluster.start("live")
    latencies: list[float] = []
    stop = threading.Event()

    def read() -> None:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{uuid.uuid4().hex}",
                      "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                      "fetch.wait.max.ms": 10})
        c.subscribe([kafka.examples_topic])
        while not stop.is_set():
            for msg in c.consume(500, 0.05):
                if msg.error() is None:
                    ex = decode_example(msg.value())
                    if getattr(ex, "label", 0) == 1:
                        latencies.append(time.time() * 1000 - ex.ts_label)  # type: ignore[union-attr]
        c.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1,
                         "partitioner": "murmur2_random"})
    try:
        # Go live once the worker has handled a message on every partition: the first
        # message of a partition restores its state (two read-backs), a one-off start-up
        # cost that is not the steady-state latency measured here.
        warm_keys: dict[int, bytes] = {}
        n = 0
        while len(warm_keys) < kafka.partitions:
            key = f"warm{n}".encode()
            warm_keys.setdefault(murmur2_partition(key, kafka.partitions), key)
            n += 1
        for key in warm_keys.values():
            warm = Prediction(key.decode(), "r", int(time.time() * 1000), "u", "i", {}, "v",
                              "champion", .1)
            producer.produce(kafka.predictions_topic, key=key, value=encode(warm))
        producer.flush(10)
        ends = end_offsets(kafka, [kafka.predictions_topic])
        deadline = time.monotonic() + 120
        while not all(o >= 1 for o in committed(kafka, cluster.group, ends).values() or [0]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"live worker never started\n{cluster.logs()}")
            time.sleep(0.2)
        t_end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < t_end:
            now = int(time.time() * 1000)
            pid = f"live{i}"
            p = Prediction(pid, "r", now, f"u{i % 97}", f"i{i % 31}", {"device": "web"}, "v",
                           "champion", 0.1)
            producer.produce(kafka.predictions_topic, key=pid.encode(), value=encode(p))
            click = Event(f"c{i}", "click", pid, int(time.time() * 1000))
            producer.produce(kafka.events_topic, key=pid.encode(), value=encode(click))
            producer.poll(0)
            i += 1
            time.sleep(max(0.0, 1.0 / rate))
        producer.flush(10)
        deadline = time.monotonic() + 30
        while len(latencies) < i and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        reader.join(10)
        cluster.close()
    return latencies


def pending_memory(bootstrap: str, workdir: Path, pending: int) -> float:
    """Worker RSS growth per 100k pending predictions (windows kept open)."""
    kafka = fresh_topics(bootstrap)
    policy = JoinPolicy(attribution_window_ms=3_600_000, allowed_lateness_ms=1_000,
                        idle_timeout_ms=3_600_000, max_pending=10 * pending)
    cluster = JoinerCluster(kafka, workdir, policy)
    cluster.start("mem")
    try:
        deadline = time.monotonic() + 120
        while (base := cluster.metric("mem", "process_resident_memory_bytes")) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"memory worker never answered\n{cluster.logs()}")
            time.sleep(0.2)
        # Let it finish starting (consumer joined) before the baseline.
        produce_live(kafka, 1, 0)
        _wait_pending(cluster, 1)
        base = cluster.metric("mem", "process_resident_memory_bytes") or 0.0
        produce_live(kafka, pending, 1)
        _wait_pending(cluster, pending + 1)
        grown = (cluster.metric("mem", "process_resident_memory_bytes") or 0.0) - base
    finally:
        cluster.close()
    return grown / 1e6 * 100_000 / pending


def produce_live(kafka: KafkaSettings, n: int, start: int) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5,
                         "partitioner": "murmur2_random"})
    now = int(time.time() * 1000)
    for i in range(start, start + n):
        pid = f"m{i}"
        features = {"device": "mobile", "hour": i % 24, "category": f"c{i % 50}",
                    "price": float(i % 100), "user_id": f"u{i % 5000}", "item_id": f"i{i % 900}"}
        p = Prediction(pid, f"r{i // 10}", now, f"u{i % 5000}", f"i{i % 900}", features,
                       "ctr-v1.0", "champion", 0.05)
        producer.produce(kafka.predictions_topic, key=pid.encode(), value=encode(p))
        imp = Event(f"e{i}", "impression", pid, now)
        producer.produce(kafka.events_topic, key=pid.encode(), value=encode(imp))
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)


def _wait_pending(cluster: JoinerCluster, n: int) -> None:
    deadline = time.monotonic() + 300
    while (cluster.metric("mem", "streamlearn_joiner_pending") or 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"pending never reached {n}\n{cluster.logs()}")
        time.sleep(0.5)


def run(quick: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Run all phases; returns the figures."""
    console = console or Console(stderr=True)
    predictions = 3_000 if quick else 30_000
    with running_stack() as stack, tempfile.TemporaryDirectory(prefix="sl-bj-") as tmp:
        bootstrap = stack.kafka_settings.bootstrap_servers
        work = Path(tmp)
        try:
            figures, kafka = backlog(bootstrap, work / "backlog", predictions, console)
            console.print("passthrough over the same input…")
            limit = passthrough(kafka, figures["input_msgs"])
            console.print("live latency…")
            lat = live_latency(bootstrap, work / "live", 5 if quick else 20, 200)
            console.print("pending memory…")
            mem = pending_memory(bootstrap, work / "mem", 10_000 if quick else 100_000)
        finally:
            delete_topics(bootstrap, set(_CREATED))
            _CREATED.clear()
    figures.update({
        "passthrough_msgs_per_s": round(limit),
        "ratio": round(figures["input_msgs_per_s"] / limit, 4),
        "join_latency_p50_ms": round(percentile(lat, 0.5), 1) if lat else None,
        "join_latency_p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
        "positives_timed": len(lat),
        "rss_mb_per_100k_pending": round(mem, 1),
    })
    return figures
