"""What one joiner step returns: examples, late labels, orphans, counters and state changes.

Counter names and reason codes are fixed strings, so the adapter can pre-create one
Prometheus child per name (bounded label values) and never sees a prediction_id in a label.

Example:
    >>> emit = Emitter(PREDICTIONS_IN)
    >>> emit.count(UNSHOWN)
    >>> out = emit.build(PartitionClock(1763800000000))
    >>> dict(out.counts), out.examples
    ({'predictions_in': 1, 'unshown': 1}, ())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from streams.joiner.policy import JoinPolicy
from streams.joiner.state import MAX_HELD_EVENTS, PartitionClock, Record
from streams.schemas import Event, Example, Prediction

# Counters (Output.counts keys).
PREDICTIONS_IN: Final = "predictions_in"
EVENTS_IN: Final = MappingProxyType(
    {t: f"events_in_{t}" for t in ("impression", "click", "conversion")}
)
DUPLICATE_PREDICTIONS: Final = "duplicate_predictions"
LATE_PREDICTIONS: Final = "late_predictions"
DUPLICATE_EVENTS: Final = "duplicate_events"
EVENTS_HELD: Final = "events_held"
EXAMPLES_POSITIVE: Final = "examples_positive"
EXAMPLES_NEGATIVE: Final = "examples_negative"
UNSHOWN: Final = "unshown"
LATE_CLICKS: Final = "late_clicks"
REPEATED_CLICKS: Final = "repeated_clicks"
EVENTS_AFTER_CLOSE: Final = "events_after_close"
ORPHAN_EVENTS: Final = "orphan_events"
FORCED_CLOSES: Final = "forced_closes"
MARKERS_EXPIRED: Final = "markers_expired"
MARKERS_EVICTED: Final = "markers_evicted"
IDLE_ADVANCES: Final = "idle_advances"
COUNTERS: Final = (
    PREDICTIONS_IN, *EVENTS_IN.values(), DUPLICATE_PREDICTIONS, LATE_PREDICTIONS,
    DUPLICATE_EVENTS, EVENTS_HELD, EXAMPLES_POSITIVE, EXAMPLES_NEGATIVE, UNSHOWN, LATE_CLICKS,
    REPEATED_CLICKS, EVENTS_AFTER_CLOSE, ORPHAN_EVENTS, FORCED_CLOSES, MARKERS_EXPIRED,
    MARKERS_EVICTED, IDLE_ADVANCES,
)

# Orphan reasons (Orphan.reason).
NO_PREDICTION: Final = "no_prediction"
EVICTED: Final = "evicted"
TOO_MANY_EVENTS: Final = "too_many_events"
LATE_PREDICTION: Final = "late_prediction"
ORPHAN_REASONS: Final = (NO_PREDICTION, EVICTED, TOO_MANY_EVENTS, LATE_PREDICTION)

# Late-label reasons (LateLabel.reason).
AFTER_WINDOW: Final = "after_window"  # the click's ts is past the window end
AFTER_CLOSE: Final = "after_close"  # in the window, but joined after the window was closed
LATE_REASONS: Final = (AFTER_WINDOW, AFTER_CLOSE)

@dataclass(frozen=True, slots=True)
class LateLabel:
    """A click that did not make its prediction a positive (for the ``late-labels`` topic).

    ``label`` is the label of the example already emitted for the prediction: 0, or None when
    none was emitted (unshown, or its window is still open).
    """

    prediction_id: str
    ts_prediction: int
    ts_click: int
    event_id: str | None
    reason: str
    label: int | None


@dataclass(frozen=True, slots=True)
class Orphan:
    """An input that joined nothing: route it to the DLQ with ``detail`` as the error.

    ``offset`` is the source offset given with the message (None when unknown).
    """

    message: Prediction | Event
    reason: str
    detail: str
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Output:
    """Everything one call of the joiner emits, in emission order.

    Attributes:
        examples: labeled examples for the ``examples`` topic.
        late_labels: late clicks for the ``late-labels`` topic.
        orphans: inputs that joined nothing (metric + DLQ record).
        counts: counter increments, keys from ``COUNTERS``.
        changes: state changes to changelog, ``(prediction_id, record)`` with None meaning
            delete; the last state of each key touched by this call, in first-touch order.
        clock: the partition clock after this call (the same object while it is unchanged).
    """

    examples: tuple[Example, ...] = ()
    late_labels: tuple[LateLabel, ...] = ()
    orphans: tuple[Orphan, ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    changes: tuple[tuple[str, Record | None], ...] = ()
    clock: PartitionClock = field(default_factory=PartitionClock)


class Emitter:
    """Collects what one joiner call emits, in order, then freezes it into an ``Output``."""

    __slots__ = ("examples", "late_labels", "orphans", "counts", "changes")

    def __init__(self, counter: str | None = None) -> None:
        self.examples: list[Example] = []
        self.late_labels: list[LateLabel] = []
        self.orphans: list[Orphan] = []
        self.counts: dict[str, int] = {} if counter is None else {counter: 1}
        # One entry per key, its last state; dicts keep first-touch order.
        self.changes: dict[str, Record | None] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        counts = self.counts
        counts[name] = counts.get(name, 0) + n

    def build(self, clock: PartitionClock) -> Output:
        """The immutable Output of everything collected."""
        return Output(
            tuple(self.examples),
            tuple(self.late_labels),
            tuple(self.orphans),
            self.counts,
            tuple(self.changes.items()),
            clock,
        )


def orphan_event(event: Event, reason: str, policy: JoinPolicy, offset: int | None) -> Orphan:
    """The orphan of an event that joined nothing, its detail ready for a DLQ record.

    Example:
        >>> e = Event("e1", "click", "p9", 1763800000000)
        >>> orphan = orphan_event(e, NO_PREDICTION, JoinPolicy(), 41)
        >>> orphan.reason, orphan.offset, orphan.detail.split(": ")[1]
        ('no_prediction', 41, 'no prediction within max_event_lead_ms=60000 of the event')
    """
    if reason == NO_PREDICTION:
        why = f"no prediction within max_event_lead_ms={policy.max_event_lead_ms} of the event"
    elif reason == EVICTED:
        why = f"evicted while waiting for its prediction (max_pending={policy.max_pending})"
    else:
        why = f"more than {MAX_HELD_EVENTS} events held for one prediction"
    detail = (
        f"event {event.event_id!r} ({event.type}, ts {event.ts}) for prediction "
        f"{event.prediction_id!r}: {why}"
    )
    return Orphan(event, reason, detail, offset)


def late_prediction(prediction: Prediction, expired_below: int, offset: int | None) -> Orphan:
    """The orphan of a prediction that came after its window and dedup retention had passed.

    Example:
        >>> p = Prediction("p9", "r1", 1763800000000, "u1", "i1", {}, "ctr-v1.0", "champion", 0.2)
        >>> late_prediction(p, 1763800100000, None).reason
        'late_prediction'
    """
    detail = (
        f"prediction {prediction.prediction_id!r} (ts {prediction.ts}) arrived after its window "
        f"and its dedup retention had passed (expired below {expired_below})"
    )
    return Orphan(prediction, LATE_PREDICTION, detail, offset)
