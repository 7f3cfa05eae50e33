"""Drive real `streamlearn join` worker processes against the real broker and read what they
emit. Completion is a condition, not a sleep: the group's committed offsets have reached the end
of the input topics and every worker reports nothing pending."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from config.settings import KafkaSettings
from services.local.loop import delete_topics, free_port, kafka_env
from services.local.wait import stop_process, wait_for
from streams.joiner.policy import JoinPolicy
from streams.joiner.scenario import RawMessage
from streams.schemas import Example, decode_example

# Lateness and lead exceed a compressed scenario's span so any interleaving of the two topics
# gives the same examples. Windows close on idle only: the idle timeout must exceed every quiet
# gap a test makes mid-stream (sleeps before a kill, a rebalance), or event time would jump
# ahead of input still to come and close windows the expectation keeps open. Closing needs
# lateness + window of quiet anyway, so this costs no drain time.
TEST_POLICY = JoinPolicy(
    attribution_window_ms=2_000, allowed_lateness_ms=15_000, max_event_lead_ms=15_000,
    idle_timeout_ms=16_000,
)


@dataclass
class JoinerCluster:
    """Worker processes of one consumer group over one set of test topics."""

    kafka: KafkaSettings
    workdir: Path
    policy: JoinPolicy = TEST_POLICY
    group: str = field(default_factory=lambda: f"joiner-{uuid.uuid4().hex[:8]}")
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = field(default_factory=dict)

    def env(self, name: str, metrics_port: int) -> dict[str, str]:
        k, p = self.kafka, self.policy
        return {
            **os.environ,
            **kafka_env(k),
            "STREAMLEARN_JOINER_GROUP_ID": self.group,
            "STREAMLEARN_JOINER_TICKS_TOPIC": f"{self.group}-ticks",
            "STREAMLEARN_JOINER_STATE_TOPIC": f"{self.group}-state",
            "STREAMLEARN_JOINER_STATE_DIR": str(self.workdir / name),
            "STREAMLEARN_JOINER_METRICS_PORT": str(metrics_port),
            "STREAMLEARN_JOINER_POLICY": p.policy,
            "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": str(p.attribution_window_ms),
            "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": str(p.allowed_lateness_ms),
            "STREAMLEARN_JOINER_MAX_EVENT_LEAD_MS": str(p.max_event_lead_ms),
            "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": str(p.idle_timeout_ms),
            "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
        }

    def start(self, name: str = "w1") -> None:
        port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "services.cli", "join",
             "--loglevel", os.environ.get("SL_JOIN_LOGLEVEL", "warning")],
            env=self.env(name, port), stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs[name] = (proc, port)

    def kill9(self, name: str) -> None:
        proc, _ = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)

    def stop_all(self) -> None:
        stop_process(*(proc for proc, _ in self.procs.values()), timeout_s=30)
        self.procs.clear()

    def close(self) -> None:
        """Stop the workers and delete the group's own topics (ticks, state, Faust's leader)."""
        self.stop_all()
        delete_topics(self.kafka.bootstrap_servers, [
            f"{self.group}-ticks", f"{self.group}-state", f"{self.group}-__assignor-__leader",
        ])

    def metric(self, name: str, sample: str) -> float | None:
        """Sum of one sample over the worker's label sets; None when not scrapeable yet."""
        samples = self.samples(name, sample)
        return None if samples is None else sum(samples.values())

    def samples(self, name: str, sample: str) -> dict[str, float] | None:
        """One sample's value per label set (``'{partition="0"}'``; ``''`` without labels);
        None when the worker cannot be scraped."""
        _, port = self.procs[name]
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()  # noqa: S310
        except OSError:
            return None
        found = {}
        for line in body.decode().splitlines():
            if line.startswith(sample + "{") or line.startswith(sample + " "):
                series, value = line.rsplit(" ", 1)
                found[series[len(sample):]] = float(value)
        return found

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:]
            for p in sorted(self.workdir.glob("*.log"))
        )


def produce(kafka: KafkaSettings, messages: Iterable[RawMessage]) -> int:
    """Produce scenario messages to their partitions as is; returns how many."""
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
    n = 0
    for m in messages:
        if not m.topic:  # garbage without a topic cannot be produced
            continue
        producer.produce(m.topic, key=m.key, value=m.value, partition=m.partition)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush(60)
    return n


def end_offsets(kafka: KafkaSettings, topics: Iterable[str]) -> dict[TopicPartition, int]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers,
                         "group.id": f"probe-{uuid.uuid4().hex}"})
    ends = {}
    try:
        for topic in topics:
            for p in range(kafka.partitions):
                ends[TopicPartition(topic, p)] = _high_watermark(consumer, topic, p)
    finally:
        consumer.close()
    return ends


def _high_watermark(consumer: Consumer, topic: str, partition: int) -> int:
    # A topic created a moment ago may not have its leader known yet: retry that briefly.
    deadline = time.monotonic() + 15
    while True:
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                      timeout=10)[1])
        except KafkaException as err:
            if time.monotonic() > deadline or "leader" not in str(err).lower():
                raise
            time.sleep(0.2)


def committed(kafka: KafkaSettings, group: str, tps: Iterable[TopicPartition]) -> dict:
    """The group's committed offsets; {} while the broker cannot tell yet.

    After a crash the dead worker's transaction stays open until its partitions are reassigned
    and its transactional id fenced; meanwhile offset fetches for them wait, then time out.
    """
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    try:
        got = consumer.committed(list(tps), timeout=5)
    except KafkaException:
        return {}
    finally:
        consumer.close()
    return {TopicPartition(tp.topic, tp.partition): tp.offset for tp in got}


def wait_until_drained(cluster: JoinerCluster, timeout_s: float = 180.0) -> None:
    """Until the group has committed all input and its workers report, between them, every
    partition and nothing pending on any.

    A worker clears its per-partition gauges at a rebalance and sets them again as it handles
    the partition's next message, so a partition nobody reports on is not known to be empty.
    """
    k = cluster.kafka
    ends = end_offsets(k, [k.predictions_topic, k.events_topic])
    everyone = {f'{{partition="{p}"}}' for p in range(k.partitions)}

    def drained() -> bool:
        done = committed(k, cluster.group, ends)
        caught_up = all(done.get(tp, -1) >= end for tp, end in ends.items())
        pending: dict[str, float] = {}
        for name in cluster.procs:
            pending.update(cluster.samples(name, "streamlearn_joiner_pending") or {})
        return caught_up and set(pending) >= everyone and not any(pending.values())

    try:
        wait_for(drained, timeout_s, "the joiner to drain", interval_s=0.5)
    except TimeoutError:
        raise AssertionError(
            f"joiner did not drain within {timeout_s} s\n{cluster.logs()}") from None


def read_all(kafka: KafkaSettings, topic: str, settle_s: float = 1.0) -> list[bytes]:
    """Every committed message of ``topic`` (read_committed), once the topic has settled.

    A worker that has just reported "nothing pending" may still have its last outputs in its
    producer's buffer or in a transaction that commits within ``commit_interval_ms``. So the
    read repeats until the end offsets stop moving for ``settle_s`` and the read_committed
    position has reached them (it cannot pass an open transaction: reaching the end means
    every record before it is decided).
    """
    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap_servers, "group.id": f"read-{uuid.uuid4().hex}",
        "isolation.level": "read_committed", "enable.auto.commit": False,
    })
    values: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        ends = end_offsets(kafka, [topic])
        consumer.assign([TopicPartition(topic, tp.partition, 0) for tp in ends])
        positions = {tp.partition: 0 for tp in ends}
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is None:
                    values.append(msg.value())
            for tp in consumer.position([TopicPartition(topic, p) for p in positions]):
                positions[tp.partition] = tp.offset
            if all(end == 0 or positions[tp.partition] >= end for tp, end in ends.items()):
                time.sleep(settle_s)
                later = end_offsets(kafka, [topic])
                if later == ends:
                    return values
                ends = later
        raise AssertionError(f"{topic}: read_committed did not reach the end in 120 s")
    finally:
        consumer.close()


def read_examples(kafka: KafkaSettings) -> list[Example]:
    examples = []
    for value in read_all(kafka, kafka.examples_topic):
        decoded = decode_example(value)
        if not isinstance(decoded, Example):
            raise AssertionError(f"the joiner wrote an invalid example: {decoded.reason}")
        examples.append(decoded)
    return examples
