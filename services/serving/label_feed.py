"""The label feed: serving's ``LabelStats`` kept fresh from ``examples``, in a thread.

Every serving process reads every partition of ``examples`` itself (``assign``, no consumer
group, nothing committed), starting ``lookback_ms`` back (Kafka's offsets for that time), so a
restarted process serves with the statistics of the last hour rather than from nothing, and
processes behind one port all see every label. It reads committed examples only
(``read_committed``: the joiner writes in transactions). An undecodable value is skipped with
a warning naming the problem (the joiner writes only examples it encoded itself).

The statistics are what ``models.features.label_stats`` describes; the feed only moves
examples into ``LabelStats.update`` under the lock ``enrich`` shares.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from models.features.label_stats import LabelStats
from streams.schemas import Example, decode_example

log = logging.getLogger(__name__)


def label_stats_of(serving: Any) -> LabelStats | None:
    """The ``LabelStats`` the serving settings' ``label_stats*`` fields ask for; None when off.

    Example:
        >>> from config.settings import ServingSettings
        >>> on = ServingSettings(label_stats=["user_id", "item_id"])
        >>> label_stats_of(on).keys, label_stats_of(ServingSettings(label_stats=[]))
        (('user_id', 'item_id'), None)
    """
    if not serving.label_stats:
        return None
    return LabelStats(serving.label_stats, memory=serving.label_stats_memory,
                      prior=serving.label_stats_prior, capacity=serving.label_stats_capacity)


class LabelFeed:
    """A daemon thread feeding ``stats`` from the ``topic`` of examples.

    Attributes:
        stats: The statistics it updates (read by scoring under ``lock``).
        lock: Held while updating; ``enriching()`` holds it while reading.
    """

    def __init__(self, bootstrap: str, topic: str, stats: LabelStats, *,
                 lookback_ms: int = 3_600_000, poll_s: float = 0.2) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.stats = stats
        self.lookback_ms = lookback_ms
        self.poll_s = poll_s
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def enriching(self) -> Iterator[LabelStats]:
        """The statistics, with no update half-applied while the caller reads them."""
        with self.lock:
            yield self.stats

    def start(self) -> None:
        """Start reading (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="label-feed", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop reading and close the consumer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def apply(self, examples: list[Example]) -> None:
        """Fold decoded examples into the statistics (the thread's step; tests call it)."""
        with self.lock:
            for example in examples:
                self.stats.update(example.features, example.label)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except KafkaException as err:  # broker away: retry, statistics stay as they are
                log.warning("label feed: %s; retrying in 1 s", err)
                self._stop.wait(1.0)

    def _consume(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": "streamlearn-serving-label-feed",  # never joined: assign() only
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 50,
        })
        try:
            consumer.assign(self._start_offsets(consumer))
            while not self._stop.is_set():
                examples = []
                for msg in consumer.consume(1_000, self.poll_s):
                    if msg.error() is not None:
                        continue
                    decoded = decode_example(msg.value())
                    if isinstance(decoded, Example):
                        examples.append(decoded)
                    else:
                        log.warning("label feed: skipped an example: %s", decoded.reason)
                if examples:
                    self.apply(examples)
        finally:
            consumer.close()

    def _start_offsets(self, consumer: Consumer) -> list[TopicPartition]:
        meta = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(f"topic {self.topic!r} is not available")
        since = int(time.time() * 1000) - self.lookback_ms
        wanted = [TopicPartition(self.topic, p, since) for p in sorted(meta.partitions)]
        found = consumer.offsets_for_times(wanted, timeout=10)
        # No message at or after `since` (offset -1): start at the end, i.e. what comes next.
        return [TopicPartition(self.topic, tp.partition, tp.offset if tp.offset >= 0 else -1)
                for tp in found]
