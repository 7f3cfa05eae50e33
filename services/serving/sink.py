"""Where serving logs predictions and events: a non-blocking, bounded Kafka producer.

A request never waits for Kafka and never fails because of it. ``send`` hands the message to
librdkafka's in-memory queue and returns; when that queue is full (a slow or absent broker)
the message is dropped and counted as ``overflow``; a message the broker never acknowledges
within ``message.timeout.ms`` is counted as ``delivery``. A background thread serves the
delivery reports.

Keys are prediction ids and the partitioner is ``murmur2_random`` (Kafka's Java default), so
a prediction and its events land in the same partition of the co-partitioned data topics
(``streams/joiner/partitioning.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from services.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

_QUEUE_FULL = KafkaError._QUEUE_FULL


class MessageSink(Protocol):
    """The port serving logs through; ``KafkaSink`` is the production adapter."""

    def send(self, topic: str, key: str, value: bytes) -> None:
        """Queue one message; never blocks, never raises."""

    def send_many(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Queue ``(key, value)`` messages; never blocks, never raises."""

    def usable(self) -> bool:
        """Whether messages can currently be queued (readiness)."""

    def status(self) -> dict[str, Any]:
        """Details for ``/readyz``."""

    def close(self, timeout_s: float) -> None:
        """Flush what is queued (up to ``timeout_s``) and stop."""


class KafkaSink:
    """confluent-kafka producer with a bounded queue and counted failures.

    Args:
        bootstrap_servers: Kafka brokers.
        metrics: Where overflow and delivery failures are counted.
        max_messages: Capacity of the in-memory queue (messages).
        linger_ms: How long librdkafka waits to batch messages.
        message_timeout_ms: How long a message may wait for the broker before it is dropped.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        metrics: ServingMetrics,
        *,
        max_messages: int = 100_000,
        linger_ms: int = 5,
        message_timeout_ms: int = 30_000,
    ) -> None:
        self.max_messages = max_messages
        self._metrics = metrics
        self._broker_error: str | None = None
        self._fatal: str | None = None
        self._producer = Producer({
            "bootstrap.servers": bootstrap_servers,
            "partitioner": "murmur2_random",
            "linger.ms": linger_ms,
            "queue.buffering.max.messages": max_messages,
            "queue.buffering.max.kbytes": 256 * 1024,
            "message.timeout.ms": message_timeout_ms,
            "enable.idempotence": False,
            "acks": 1,
            # Successes need no Python callback (20 per request); failures are counted.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            # librdkafka's own log lines go through logging (served by poll), not raw stderr.
            "logger": logging.getLogger("services.serving.sink.librdkafka"),
        })
        metrics.track_buffer(self.fill)
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._serve_reports, name="serving-producer",
                                        daemon=True)
        self._poller.start()

    def send(self, topic: str, key: str, value: bytes) -> None:
        """Queue one message; a full queue or a producer error is counted, never raised."""
        try:
            self._producer.produce(topic, value=value, key=key)
        except BufferError:
            self._metrics.produce_error(topic, "overflow")
        except (KafkaException, ValueError, TypeError) as exc:
            log.error("could not queue a message for %s: %s", topic, exc)
            self._metrics.produce_error(topic, "produce")

    def send_many(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Queue a request's messages in one call (``produce_batch``: each still partitioned
        by its key, like ``send``); what does not fit is counted, never raised."""
        batch: list[dict[str, Any]] = [{"key": key, "value": value} for key, value in messages]
        try:
            queued = self._producer.produce_batch(topic, batch)
        except BufferError:  # documented for a full queue, though 2.16 marks messages instead
            self._metrics.produce_error(topic, "overflow", len(batch))
            return
        except (KafkaException, ValueError, TypeError) as exc:
            log.error("could not queue %d messages for %s: %s", len(batch), topic, exc)
            self._metrics.produce_error(topic, "produce", len(batch))
            return
        if queued < len(batch):
            # produce_batch queues what fits and marks each message it refused with ``_error``.
            errors: list[KafkaError] = [m["_error"] for m in batch if "_error" in m]
            full = sum(1 for e in errors if e.code() == _QUEUE_FULL)
            if full:
                self._metrics.produce_error(topic, "overflow", full)
            other = [e for e in errors if e.code() != _QUEUE_FULL]
            if other:
                log.error("could not queue %d messages for %s: %s", len(other), topic, other[0])
                self._metrics.produce_error(topic, "produce", len(other))

    def fill(self) -> float:
        """Queued messages over capacity, 0..1."""
        return min(1.0, len(self._producer) / self.max_messages)

    def usable(self) -> bool:
        """True while the producer can queue messages (no fatal error, queue not full)."""
        return self._fatal is None and self._poller.is_alive() and self.fill() < 1.0

    def status(self) -> dict[str, Any]:
        """Queue fill and the last broker-level error seen (an unreachable broker does not
        make the producer unusable: messages wait in the queue until it overflows)."""
        return {"usable": self.usable(), "buffer_fill": round(self.fill(), 4),
                "broker_error": self._broker_error, "fatal_error": self._fatal}

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the report thread and flush what is queued, for at most ``timeout_s``."""
        self._stop.set()
        self._poller.join(timeout=2.0)
        left = self._producer.flush(timeout_s)
        if left:
            log.warning("%d queued messages not delivered at shutdown", left)

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(0.1)
            except Exception:  # a callback bug must not stop delivery reports
                log.exception("producer poll failed")
                time.sleep(0.1)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._metrics.produce_error(msg.topic() or "?", "delivery")

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err.str()
            log.error("Kafka producer fatal error: %s", err.str())
        else:
            self._broker_error = err.str()
            log.warning("Kafka producer: %s", err.str())
