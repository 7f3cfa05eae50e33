"""What the joiner is asked to do: the window, the label policy, lateness and bounds.

Pure data, no pydantic: the Faust adapter builds a policy from ``JoinerSettings`` with
``streams.joiner.settings.from_settings``; tests build one directly.

Example:
    >>> policy = JoinPolicy(attribution_window_ms=30_000, max_event_lead_ms=60_000)
    >>> policy.retention_ms
    60000
    >>> JoinPolicy(attribution_window_ms=0)
    Traceback (most recent call last):
    ...
    streams.joiner.policy.JoinerError: attribution_window_ms must be > 0, got 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from streams.errors import StreamsError

LabelPolicy = Literal["impression_required", "all_served"]
LABEL_POLICIES: Final = ("impression_required", "all_served")


class JoinerError(StreamsError):
    """Root of the joiner's errors: an invalid policy or an unreadable state record."""


@dataclass(frozen=True, slots=True)
class JoinPolicy:
    """How predictions and events are joined into labeled examples (CONTRACT.md).

    Attributes:
        attribution_window_ms: a click counts when its ts lies in
            ``[ts_prediction, ts_prediction + attribution_window_ms]``.
        policy: ``impression_required`` (an example needs an impression; a click or a
            conversion implies one) or ``all_served`` (every prediction becomes an example).
        allowed_lateness_ms: the watermark trails the highest timestamp seen by this much.
        idle_timeout_ms: wall-clock quiet time after which a partition's event time moves on
            by itself, so the last windows still close.
        max_event_lead_ms: how far (event time) an event may run ahead of its prediction.
        max_pending: bound on open windows plus held events, and separately on done markers.
        done_retention_ms: how long past its window end a finished prediction's marker is kept
            to absorb redeliveries and late clicks; None means
            ``max(attribution_window_ms, max_event_lead_ms)``.
    """

    attribution_window_ms: int = 30_000
    policy: LabelPolicy = "impression_required"
    allowed_lateness_ms: int = 5_000
    idle_timeout_ms: int = 10_000
    max_event_lead_ms: int = 60_000
    max_pending: int = 1_000_000
    done_retention_ms: int | None = None

    def __post_init__(self) -> None:
        positive = {
            "attribution_window_ms": self.attribution_window_ms,
            "idle_timeout_ms": self.idle_timeout_ms,
            "max_pending": self.max_pending,
        }
        non_negative = {
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "max_event_lead_ms": self.max_event_lead_ms,
            "done_retention_ms": self.done_retention_ms or 0,
        }
        for name, value in positive.items():
            if value <= 0:
                raise JoinerError(f"{name} must be > 0, got {value}")
        for name, value in non_negative.items():
            if value < 0:
                raise JoinerError(f"{name} must be >= 0, got {value}")
        if self.policy not in LABEL_POLICIES:
            raise JoinerError(
                f"policy must be one of {', '.join(LABEL_POLICIES)}, got {self.policy!r}"
            )

    @property
    def retention_ms(self) -> int:
        """How long past its window end a done marker is kept (resolved default)."""
        if self.done_retention_ms is not None:
            return self.done_retention_ms
        # One more window covers clicks that a twice-as-long window would have caught (the
        # late-label bias question); the lead covers events that trail a closed prediction.
        return max(self.attribution_window_ms, self.max_event_lead_ms)
