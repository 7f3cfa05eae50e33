"""What a joiner partition committed, read back from Kafka when the partition is (re)assigned.

Two reads, both with ``isolation.level=read_committed`` so that nothing from an aborted or
still-open transaction counts:

- **State** (``read_state``): the partition's rows of the joiner's changelog topic, latest value
  per key, tombstones applied. The worker writes them inside the same transaction as the
  examples and input offsets, so the rows read back are exactly the state after the last
  committed input offset — whatever the worker's memory held before a crash or a rebalance.
- **Emitted** (``read_emitted``): the prediction_ids of the partition's recent ``examples``; a
  second guard that never sends an example twice (faust-streaming #517, #177 reported
  exactly-once duplicates upstream).

Both wait until the read_committed position reaches the partition's end. That can only happen
once any transaction open on the partition is decided, which is why they run after the new
owner's transactional producers have fenced the previous owner.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, Message, TopicPartition


class EmittedIds:
    """prediction_ids emitted on one partition, with their emission time, bounded by a horizon.

    Example:
        >>> ids = EmittedIds(horizon_ms=1000)
        >>> ids.add("p1", 5000); "p1" in ids
        True
        >>> ids.prune(now_ms=7000); "p1" in ids
        False
    """

    __slots__ = ("_ids", "horizon_ms")

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._ids: dict[str, int] = {}

    def __contains__(self, prediction_id: object) -> bool:
        return prediction_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, prediction_id: str, emitted_ms: int) -> None:
        self._ids[prediction_id] = emitted_ms

    def prune(self, now_ms: int) -> None:
        """Forget ids emitted before the horizon (insertion order is emission order)."""
        cutoff = now_ms - self.horizon_ms
        stale = []
        for pid, ms in self._ids.items():
            if ms >= cutoff:
                break
            stale.append(pid)
        for pid in stale:
            del self._ids[pid]


def _read_to_end(
    bootstrap: str,
    topic: str,
    partition: int,
    on_message: Callable[[Message], None],
    start_ms: int | None,
    timeout_s: float,
) -> bool:
    """Feed every committed message of ``topic[partition]`` (from ``start_ms``, or the start) to
    ``on_message`` until the position reaches the end taken at the start; False on timeout."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"streamlearn-joiner-readback-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
    })
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        start = low
        if start_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, partition, start_ms)],
                                               timeout=10)[0].offset
            if found < 0:  # nothing at or after start_ms
                return True
            start = max(found, low)
        if start >= high:
            return True
        consumer.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(5_000, 0.2):
                if msg.error() is None:
                    on_message(msg)
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position >= high:
                return True
        return False
    finally:
        consumer.close()


def read_emitted(
    bootstrap: str, topic: str, partition: int, horizon_ms: int, timeout_s: float = 20.0
) -> tuple[EmittedIds, bool]:
    """The prediction_ids committed to ``topic[partition]`` within the horizon.

    Returns:
        The ids, and whether the read reached the partition's end (False on timeout: the
        dedup is then partial, and the caller should say so).
    """
    ids = EmittedIds(horizon_ms)

    def add(msg: Message) -> None:
        key = msg.key()
        if key:
            ids.add(key.decode("utf-8", "replace"), msg.timestamp()[1])

    now = int(time.time() * 1000)
    complete = _read_to_end(bootstrap, topic, partition, add, now - horizon_ms, timeout_s)
    return ids, complete


def read_state(
    bootstrap: str, topic: str, partition: int, timeout_s: float = 60.0
) -> tuple[dict[bytes, bytes], bool]:
    """The committed rows of a changelog partition: latest value per key, tombstones applied.

    Returns:
        The rows, and whether the read reached the partition's end (a partial state must not
        be used: the caller should fail and let the worker be restarted).
    """
    rows: dict[bytes, bytes] = {}

    def apply(msg: Message) -> None:
        key, value = msg.key(), msg.value()
        if key is None:
            return
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value

    complete = _read_to_end(bootstrap, topic, partition, apply, None, timeout_s)
    return rows, complete
