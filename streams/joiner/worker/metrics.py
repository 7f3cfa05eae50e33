"""Every Prometheus object of the joiner process (names ``streamlearn_joiner_*``).

Label values are bounded: event types, labels 0/1, reason codes, partition numbers, and the
core's fixed counter names. Children are created once here, never per message.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from streams.joiner import output as out

DLQ_REASONS = (
    "invalid_json", "schema", "timestamp", "key_mismatch", "misrouted", *out.ORPHAN_REASONS,
)


def dlq_reason_code(reason: str) -> str:
    """Map a decoder's free-text reason to a bounded label value.

    Example:
        >>> dlq_reason_code("field 'ts': 1763 is not epoch milliseconds (seconds sent?)")
        'timestamp'
        >>> dlq_reason_code("invalid JSON: unexpected character")
        'invalid_json'
    """
    if reason.startswith(("invalid JSON", "expected a JSON object", "empty message")):
        return "invalid_json"
    if reason.startswith("message key"):
        return "key_mismatch"
    if reason.startswith("field 'ts") and ("epoch" in reason or "past" in reason
                                           or "future" in reason):
        return "timestamp"
    return "schema"


class JoinerMetrics:
    """The joiner's metrics, registered in ``registry`` (a fresh one per process or test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_resident_memory_bytes & co. for ops (and the memory benchmark).
        ProcessCollector(registry=r)
        self.predictions_in = Counter(
            "streamlearn_joiner_predictions_in", "Predictions consumed", registry=r
        )
        events = Counter(
            "streamlearn_joiner_events_in", "Behavioural events consumed", ["type"], registry=r
        )
        self.events_in = {t: events.labels(type=t) for t in out.EVENTS_IN}
        examples = Counter(
            "streamlearn_joiner_examples_out", "Labeled examples emitted", ["label"], registry=r
        )
        self.examples_out = {label: examples.labels(label=str(label)) for label in (0, 1)}
        self.late_clicks = Counter(
            "streamlearn_joiner_late_clicks", "Clicks after their window closed", registry=r
        )
        orphans = Counter(
            "streamlearn_joiner_orphans", "Events without a prediction", ["reason"], registry=r
        )
        self.orphans = {reason: orphans.labels(reason=reason) for reason in out.ORPHAN_REASONS}
        dlq = Counter("streamlearn_joiner_dlq_records", "Records sent to the DLQ", ["reason"],
                      registry=r)
        self.dlq = {reason: dlq.labels(reason=reason) for reason in DLQ_REASONS}
        outcomes = Counter(
            "streamlearn_joiner_outcomes", "Every counter of the join core", ["what"], registry=r
        )
        self.outcomes = {name: outcomes.labels(what=name) for name in out.COUNTERS}
        self.duplicates_suppressed = Counter(
            "streamlearn_joiner_duplicates_suppressed",
            "Examples not sent because examples already holds one for the prediction",
            registry=r,
        )
        self.dedup_incomplete = Counter(
            "streamlearn_joiner_dedup_incomplete",
            "Restores whose read of recent examples timed out (dedup partial)", registry=r,
        )
        self.pending = Gauge(
            "streamlearn_joiner_pending", "Open windows plus held events", ["partition"],
            registry=r,
        )
        self.watermark_lag = Gauge(
            "streamlearn_joiner_watermark_lag_seconds", "Wall clock minus the watermark",
            ["partition"], registry=r,
        )
        self.join_latency = Histogram(
            "streamlearn_joiner_join_latency_seconds",
            "Click timestamp to positive example handed to Kafka",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
