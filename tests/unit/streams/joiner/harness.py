"""Drives a PartitionJoiner the way the Faust adapter will, collecting everything it emits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from streams.joiner import JoinPolicy, Output, PartitionClock, PartitionJoiner, Record
from streams.joiner.scenario import Scenario
from streams.schemas import DecodeError, Event, Prediction, decode_event, decode_prediction

FAR_FUTURE_WALL_MS = 10**13  # an idle advance this large closes every window


@dataclass
class Run:
    """Everything a joiner emitted, plus a mirror of its state built only from Output.changes
    (what a changelogged table would hold)."""

    outputs: list[Output] = field(default_factory=list)
    table: dict[str, Record] = field(default_factory=dict)
    clock: PartitionClock = field(default_factory=PartitionClock)
    rejected: int = 0

    def take(self, out: Output) -> Output:
        self.outputs.append(out)
        for key, record in out.changes:
            if record is None:
                del self.table[key]
            else:
                self.table[key] = record
        self.clock = out.clock
        return out

    @property
    def examples(self) -> list:
        return [x for out in self.outputs for x in out.examples]

    @property
    def late_labels(self) -> list:
        return [x for out in self.outputs for x in out.late_labels]

    @property
    def orphans(self) -> list:
        return [x for out in self.outputs for x in out.orphans]

    @property
    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for out in self.outputs:
            total.update(out.counts)
        return total


def feed(
    joiner: PartitionJoiner, inputs: Iterable[Prediction | Event], run: Run | None = None
) -> Run:
    """Apply decoded inputs in order."""
    run = run if run is not None else Run()
    for message in inputs:
        if isinstance(message, Prediction):
            run.take(joiner.on_prediction(message))
        else:
            run.take(joiner.on_event(message))
    return run


def drain(joiner: PartitionJoiner, run: Run) -> Run:
    """Let the partition go idle long enough for every window and marker to expire."""
    run.take(joiner.on_idle(0))
    run.take(joiner.on_idle(FAR_FUTURE_WALL_MS))
    return run


def decoded(scenario: Scenario, partition: int) -> tuple[list[Prediction | Event], int]:
    """A partition's messages through the strict decoders; garbage must be exactly what fails."""
    out: list[Prediction | Event] = []
    rejected = 0
    for raw in scenario.partition(partition):
        decode = decode_prediction if raw.topic == scenario.spec.predictions_topic else decode_event
        message = decode(raw.value, key=raw.key)
        if isinstance(message, DecodeError):
            assert raw.garbage, f"valid message rejected: {message.reason}: {raw}"
            rejected += 1
        else:
            assert not raw.garbage, f"garbage accepted: {raw}"
            out.append(message)
    return out, rejected


def run_scenario(scenario: Scenario, policy: JoinPolicy | None = None) -> Run:
    """One joiner per partition over the scenario, drained at the end; one merged Run."""
    merged = Run()
    for partition in range(scenario.spec.partitions):
        joiner = PartitionJoiner(policy or scenario.policy)
        inputs, rejected = decoded(scenario, partition)
        run = drain(joiner, feed(joiner, inputs))
        merged.outputs += run.outputs
        merged.rejected += rejected
    return merged
