"""What a scenario is: its knobs, its messages and what the joiner must emit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from streams.joiner.policy import JoinerError, JoinPolicy
from streams.schemas import Example

VARIANTS: Final[Mapping[str, Mapping[str, Any]]] = {
    "in_order": {},
    "shuffled": {"shuffle": True},
    "duplicates": {"p_duplicate": 0.3},
    "late_clicks": {"p_late_click": 0.2, "p_late_delivery": 0.2},
    "garbage": {"p_garbage": 0.1},
    "orphans": {"p_orphan_event": 0.05},
    "everything": {
        "shuffle": True, "p_duplicate": 0.2, "p_late_click": 0.1, "p_late_delivery": 0.1,
        "p_garbage": 0.05, "p_orphan_event": 0.02,
    },
}


class ScenarioError(JoinerError):
    """The knobs ask for a delivery order whose outcome the generator cannot guarantee."""


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """The knobs of a scenario (``VARIANTS`` presets set some of them)."""

    seed: int = 0
    predictions: int = 2_000
    partitions: int = 1
    start_ts: int = 1_763_800_000_000
    mean_gap_ms: int = 40  # between requests; a request serves 1..max_candidates predictions
    max_candidates: int = 3
    p_shown: float = 0.7
    p_click: float = 0.25  # given shown
    p_conversion: float = 0.2  # given clicked
    p_impression_lost: float = 0.1  # given an in-window click: the click alone implies it
    shuffle: bool = False
    p_duplicate: float = 0.0
    p_late_click: float = 0.0  # given clicked: the click falls after the window
    p_late_delivery: float = 0.0  # given an in-window click: delivered after the close
    p_orphan_event: float = 0.0  # per request: an event whose prediction never comes
    p_garbage: float = 0.0  # per message: a rejected message is delivered next to it
    predictions_topic: str = "predictions"
    events_topic: str = "events"


class ExpectedExample(NamedTuple):
    """What identifies an example in assertions."""

    prediction_id: str
    label: int
    ts_label: int


class ExpectedLateLabel(NamedTuple):
    """What identifies a late label in assertions."""

    prediction_id: str
    ts_click: int
    reason: str


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message as it would sit on Kafka; ``garbage`` ones must fail the decoders."""

    topic: str
    partition: int
    key: bytes
    value: bytes
    garbage: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    """A generated scenario: the messages in delivery order and what the joiner must emit."""

    spec: ScenarioSpec
    policy: JoinPolicy
    messages: tuple[RawMessage, ...]
    expected_by_policy: Mapping[str, frozenset[ExpectedExample]]
    expected_late_labels: frozenset[ExpectedLateLabel]
    expected_orphans: frozenset[str]  # event_ids, each orphaned once (reason no_prediction)
    expected_unshown: int  # under impression_required
    span_ms: int  # event-time span of all valid messages

    @property
    def expected_examples(self) -> frozenset[ExpectedExample]:
        """The expected examples under ``policy.policy``."""
        return self.expected_by_policy[self.policy.policy]

    @property
    def garbage_count(self) -> int:
        """How many messages the decoders must reject."""
        return sum(m.garbage for m in self.messages)

    def partition(self, number: int) -> list[RawMessage]:
        """The messages of one partition, in delivery order."""
        return [m for m in self.messages if m.partition == number]


def summarize(examples: Iterable[Example]) -> list[ExpectedExample]:
    """Reduce emitted examples to what scenarios assert on (a list: duplicates must show).

    Example:
        >>> summarize([Example("p1", 1, 5, 1, {}, "ctr-v1.0", "champion", 0.5)])
        [ExpectedExample(prediction_id='p1', label=1, ts_label=5)]
    """
    return [ExpectedExample(e.prediction_id, e.label, e.ts_label) for e in examples]


