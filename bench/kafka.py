"""`python -m bench kafka`: what one Python process gets from the local broker.

- produce/consume throughput of 200-byte messages with confluent-kafka (batched ``consume()``),
- one-message round trip (produce → broker → consumer) latency, p50 and p99,
- broker start time on a private broker: cold (fresh data dir, no class-data archive) and warm
  (formatted data dir, archive written at the previous exit).

Anchors (issue 2): ≥ 150k msg/s produced, ≥ 200k msg/s consumed, round trip p99 ≤ 10 ms.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from rich.console import Console
from rich.progress import Progress

from bench.common import percentile, running_stack, scratch_topic
from config.settings import KafkaSettings, RedisSettings, StackSettings
from services.local.loop import free_port
from services.local.stack.manager import Stack

MESSAGE_BYTES = 200
ANCHORS = {"produce_msgs_per_s": 150_000, "consume_msgs_per_s": 200_000, "roundtrip_p99_ms": 10}


def produce_throughput(bootstrap: str, topic: str, n: int, progress: Progress) -> float:
    """Messages per second from the first ``produce`` until every delivery is acknowledged."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
    })
    payload = os.urandom(MESSAGE_BYTES // 2).hex().encode()  # 200 printable bytes
    task = progress.add_task("produce", total=n)
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, payload)
                break
            except BufferError:
                producer.poll(0.001)
        if i % 10_000 == 0:
            producer.poll(0)
            progress.update(task, completed=i)
    producer.flush(120)
    elapsed = time.perf_counter() - t0
    progress.update(task, completed=n)
    return n / elapsed


def consume_throughput(bootstrap: str, topic: str, partitions: int, n: int,
                       progress: Progress) -> float:
    """Messages per second with batched ``consume()``, from ``assign()`` to the n-th message.

    Timing starts before the first fetch: librdkafka prefetches in the background, so starting
    the clock at the first message would credit it with data fetched off the clock.
    """
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-{topic}",
        "enable.auto.commit": False,
        # A deep prefetch queue is what lets batched consume() run at ~1M msg/s; large fetch
        # sizes instead were slower than the defaults here (BENCHMARKS.md).
        "queued.min.messages": 1_000_000,
    })
    task = progress.add_task("consume", total=n)
    got = 0
    t0 = time.perf_counter()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    deadline = time.monotonic() + 120
    while got < n and time.monotonic() < deadline:
        batch = consumer.consume(num_messages=10_000, timeout=1.0)
        got += sum(1 for m in batch if m.error() is None)
        progress.update(task, completed=got)
    elapsed = time.perf_counter() - t0
    consumer.close()
    if got < n:
        raise RuntimeError(f"consumed only {got} of {n} messages")
    return got / elapsed


def roundtrip_latencies(bootstrap: str, topic: str, n: int, progress: Progress) -> list[float]:
    """Milliseconds from ``produce`` of one message until the consumer holds it, n times."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-rt-{topic}",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 50,
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    payload = b"x" * MESSAGE_BYTES
    task = progress.add_task("round trip", total=n)
    latencies = []
    for i in range(n + 20):  # the first 20 warm the connections up and are not counted
        t0 = time.perf_counter()
        producer.produce(topic, payload, partition=0)
        producer.poll(0)
        msg = None
        while msg is None or msg.error() is not None:
            msg = consumer.poll(5.0)
        if i >= 20:
            latencies.append((time.perf_counter() - t0) * 1000)
            progress.update(task, completed=i - 19)
    producer.flush(10)
    consumer.close()
    return latencies


def broker_start_times(jar_cache: Path) -> tuple[float, float]:
    """Seconds until a private broker answers: cold (fresh), then warm (restart)."""
    with tempfile.TemporaryDirectory(prefix="sl-bench-") as home:
        stack = Stack(
            StackSettings(home=Path(home), cache_dir=jar_cache,
                          kafka_controller_port=free_port()),
            KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"),
            RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"),
        )
        try:
            cold = stack.up_kafka().seconds
            stack.down()  # the JVM writes its class-data archive on this exit
            warm = stack.up_kafka().seconds
        finally:
            stack.down()
    return cold, warm


def run(quick: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Run the whole benchmark; returns the figures."""
    console = console or Console(stderr=True)
    n = 50_000 if quick else 500_000
    n_rt = 200 if quick else 2_000
    partitions = 3
    with running_stack() as stack:
        bootstrap = stack.kafka_settings.bootstrap_servers
        with Progress(console=console, transient=True) as progress:
            with scratch_topic(bootstrap, partitions) as topic:
                produced = produce_throughput(bootstrap, topic, n, progress)
                consumed = consume_throughput(bootstrap, topic, partitions, n, progress)
            with scratch_topic(bootstrap, 1) as topic:
                latencies = roundtrip_latencies(bootstrap, topic, n_rt, progress)
        console.print("timing a private broker's cold and warm start…")
        cold, warm = broker_start_times(stack.kafka.cache_root)
    figures = {
        "produce_msgs_per_s": round(produced),
        "consume_msgs_per_s": round(consumed),
        "roundtrip_p50_ms": round(percentile(latencies, 0.50), 3),
        "roundtrip_p99_ms": round(percentile(latencies, 0.99), 3),
        "broker_cold_start_s": round(cold, 2),
        "broker_warm_start_s": round(warm, 2),
        "messages": n,
        "message_bytes": MESSAGE_BYTES,
        "roundtrips": n_rt,
    }
    figures["meets_anchors"] = (
        figures["produce_msgs_per_s"] >= ANCHORS["produce_msgs_per_s"]
        and figures["consume_msgs_per_s"] >= ANCHORS["consume_msgs_per_s"]
        and figures["roundtrip_p99_ms"] <= ANCHORS["roundtrip_p99_ms"]
    )
    return figures
