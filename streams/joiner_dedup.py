"""What a joiner partition already emitted, learned back from the ``examples`` topic itself.

Faust's exactly-once can still commit an example twice across a crash (faust-streaming #517,
#177; our kill -9 test reproduced it). The examples topic is the one record that cannot be
behind the truth, so on (re)assignment a worker reads its partition's recent examples with
read_committed — after its transactional id has fenced the dead worker's open transaction — and
never sends an example whose prediction_id is already there.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, TopicPartition


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


def read_emitted(
    bootstrap: str, topic: str, partition: int, horizon_ms: int, timeout_s: float = 20.0
) -> tuple[EmittedIds, bool]:
    """The prediction_ids committed to ``topic[partition]`` within the horizon.

    Returns:
        The ids, and whether the read reached the partition's end (False on timeout: the
        dedup is then partial, and the caller should say so).
    """
    ids = EmittedIds(horizon_ms)
    now = int(time.time() * 1000)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"streamlearn-joiner-dedup-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
    })
    try:
        tp = TopicPartition(topic, partition, now - horizon_ms)
        start = consumer.offsets_for_times([tp], timeout=10)[0].offset
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        if start < 0:  # nothing at or after the horizon
            return ids, True
        consumer.assign([TopicPartition(topic, partition, max(start, low))])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in consumer.consume(5_000, 0.2):
                key = msg.key()
                if msg.error() is None and key:
                    ids.add(key.decode("utf-8", "replace"), msg.timestamp()[1])
            position = consumer.position([TopicPartition(topic, partition)])[0].offset
            if position >= high:
                return ids, True
        return ids, False
    finally:
        consumer.close()

