"""What the trainer tells people about each ``Learner`` outcome, and its consumer lag: metrics
and console lines.

The service applies an outcome to the registry and the checkpoint; everything it says about
it — counters, gauges, the drift watch's monitors and alarms, the gate's line — goes through
one ``Report``, so the service's own code is only the applying.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException
from rich.console import Console

from models.evaluation.metrics import auc
from models.gate import PairedLosses
from models.training.loop import Outcome
from models.training.step import Evaluation
from models.training.triggered import TriggeredPolicy
from services.trainer.drift import DriftWatch
from services.trainer.metrics import TrainerMetrics
from services.trainer.state import Totals
from streams.schemas import Example

COLOURS = {"promote": "green", "reject": "red"}


class Report:
    """The trainer's metrics and console, fed one outcome at a time."""

    def __init__(self, metrics: TrainerMetrics, console: Console, drift: DriftWatch,
                 sanity_size: int) -> None:
        self.metrics, self.console, self.drift = metrics, console, drift
        self.sanity_size = sanity_size

    def batch(self, outcome: Outcome, n_dup: int, policy: object) -> None:
        """Counters of one step, the drift monitors, alarms, triggers and sanity refreshes."""
        result, m = outcome.result, self.metrics
        m.batches.inc()
        m.examples["trained"].inc(len(outcome.kept))
        m.examples["duplicate"].inc(n_dup)
        m.examples["guarded"].inc(outcome.guarded)
        m.examples["capped"].inc(result.n_capped)
        m.examples["replayed"].inc(result.n_replayed)
        if result.n_trained:
            m.train_loss.set(result.train_loss)
        kept = [e for e in outcome.kept if isinstance(e, Example)]
        self.drift.observe(kept, result)
        if isinstance(policy, TriggeredPolicy):
            self._triggers(outcome, policy)
        if outcome.alarm is not None:
            self.drift.alarm(outcome.alarm.detector, outcome.alarm.reason)
        if outcome.sanity_refreshed:
            self.console.print(f"  sanity set refreshed: the next {self.sanity_size} "
                               "examples form a new one")

    def _triggers(self, outcome: Outcome, policy: TriggeredPolicy) -> None:
        result = outcome.result
        for firing in result.fired:
            self.metrics.trigger_firings[firing.kind].inc()
            self.console.print(f"[magenta]trigger[/] {firing.kind}: {firing.reason}")
        if policy.held and result.fired and not result.retrained:
            self.console.print(f"  held until the gate has judged the last training "
                               f"({len(policy.buffer)} examples buffered)")
        if result.retrained:
            self.metrics.trigger_trainings.inc()
            self.console.print(f"  challenger learnt {result.n_trained} buffered examples; the "
                               f"gate asks after {policy.min_evidence} fresh ones")
        self.metrics.trigger_buffer.set(len(policy.buffer))

    def decision(self, champion_version: str, outcome: Outcome) -> None:
        """The prequential figures the gate judged, the decision's count, its line."""
        decision, evidence = outcome.decision, outcome.evidence
        if decision is None or evidence is None:
            return
        self._prequential(champion_version, evidence)  # before the count: a scrape sees both
        self.metrics.decision(decision.outcome, decision.rule, decision.figures)
        colour = COLOURS.get(decision.outcome, "yellow")
        self.console.print(f"gate: [{colour}]{decision.outcome}[/] — {decision.reason}")

    def _prequential(self, version: str, fresh: PairedLosses) -> None:
        m = self.metrics
        m.prequential(version, "champion", float(fresh.champion_losses.mean()),
                      _safe_auc(fresh.labels, fresh.champion_scores))
        m.prequential(version, "challenger", float(fresh.challenger_losses.mean()),
                      _safe_auc(fresh.labels, fresh.challenger_scores))

    def lag(self, consumer: Consumer, next_offsets: Mapping[int, int]) -> None:
        """Messages behind the end of each assigned partition."""
        for tp in consumer.assignment():
            try:
                # Cached: librdkafka updates the high watermark from every fetch response,
                # where a broker query costs about 0.4 s per partition.
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            done = next_offsets.get(tp.partition, 0)
            self.metrics.lag.labels(partition=str(tp.partition)).set(max(0, high - done))

    def progress(self, totals: Totals, evaluation: Evaluation, rate: float) -> None:
        """The periodic progress line."""
        ev, t = evaluation, totals
        losses = (f"challenger {ev.challenger_mean:.4f} vs champion {ev.champion_mean:.4f} "
                  f"on {ev.n} fresh" if ev.n else "no fresh examples yet")
        self.console.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] {t.trained} trained ({rate:,.0f}/s), "
            f"{t.duplicates} dup, {t.invalid} invalid, {t.capped} capped; {losses}"
        )


def _safe_auc(labels: Any, scores: Any) -> float:
    area = auc(labels, scores)
    return 0.5 if area != area else area  # NaN while only one class was seen
