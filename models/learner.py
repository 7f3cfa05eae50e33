"""The trainer's decision loop without I/O: test-then-train batches, the gate, promotions.

``Learner`` owns what ``streamlearn train`` decides between two Kafka reads: a training policy
(``models.policies``), the prequential ``Evaluation`` since the last decision, the frozen
sanity set, and the gate cadence (a decision every ``gate_every`` fresh examples). A promotion
makes the challenger the champion and starts the next challenger from it; a rejection discards
the challenger and starts again from the champion. In-process callers (the learning-quality
benchmark) drive it with batches and a clock of their own; nothing here reads Kafka or Redis.

Example:
    >>> from models import build_model
    >>> from models.gate import GateConfig
    >>> from models.policies import StatefulPolicy
    >>> from models.training import LabeledExample
    >>> champion = build_model("logreg", hash_bits=8)
    >>> learner = Learner(champion, StatefulPolicy(champion), GateConfig(min_examples=8),
    ...                   gate_every=16, sanity_size=4)
    >>> batch = [LabeledExample(f"p{i}", int(i % 4 == 0), {"c": str(i % 4)}) for i in range(16)]
    >>> decision = learner.step(batch, now_ms=0)
    >>> decision.outcome in ("promote", "keep_training", "reject"), len(learner.sanity)
    (True, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from models.base import Model
from models.drift import LossDriftDetector
from models.gate import GateConfig, GateDecision, PairedLosses, decide
from models.microbatch import ClickGuard
from models.policies import TrainingPolicy
from models.training import Evaluation, Labeled, StepResult, paired_on


@dataclass(frozen=True)
class Counts:
    """What a ``Learner`` has done so far."""

    batches: int = 0
    examples: int = 0
    decisions: int = 0
    promotions: int = 0
    rejections: int = 0
    sanity_refreshes: int = 0


class Learner:
    """Test-then-train one micro-batch at a time and ask the gate every ``gate_every`` fresh
    examples.

    Args:
        champion: The model serving now.
        policy: How the challenger is produced (stateful, stateless or trigger-driven).
        gate: The gate's thresholds.
        gate_every: Fresh examples between two gate decisions; None: when the policy says so
            (``StepResult.gate_due``, the trigger-driven policy).
        sanity_size: The first examples kept as the frozen sanity set (0 = none).
        window_max: Fresh examples the evaluation looks back over at most.
        drift: A concept-drift detector on the champion's losses and calibration
            (``models.drift.LossDriftDetector``). Its alarm
            re-freezes the sanity set from the next examples: a set drawn from the world before
            the drift would otherwise reject every challenger that adapted to the new one as
            "forgetting". None: the set stays until refreshed by hand.
        guard: Drops the examples of users whose click rate no human has (``ClickGuard``)
            before the policy sees the batch; None: no such guard.
    """

    def __init__(self, champion: Model, policy: TrainingPolicy, gate: GateConfig, *,
                 gate_every: int | None = 4096, sanity_size: int = 1000,
                 window_max: int | None = 50_000,
                 drift: LossDriftDetector | None = None, guard: ClickGuard | None = None) -> None:
        self.champion = champion
        self.policy = policy
        self.gate = gate
        self.gate_every = gate_every
        self.sanity_size = sanity_size
        self.evaluation = Evaluation(window_max)
        self.sanity: list[Labeled] = []
        self.since_gate = 0
        self.counts = Counts()
        self.last_result: StepResult | None = None
        self.drift = drift
        self.guard = guard
        self.last_alarm = False

    def step(self, batch: Sequence[Labeled], now_ms: int) -> GateDecision | None:
        """One deduplicated micro-batch: score both models, let the challenger learn, and
        decide when the gate is due. Returns the decision, or None when none was taken."""
        if self.guard is not None:
            batch, _ = self.guard.filter(batch)
        result = self.policy.process(self.champion, batch, now_ms)
        self.last_result = result
        self.evaluation.add(result)
        if result.retrained:  # a brand-new challenger: earlier figures describe another model
            self.evaluation.reset()
            self.since_gate = 0
        self.since_gate += len(batch)
        self.counts = replace(self.counts, batches=self.counts.batches + 1,
                              examples=self.counts.examples + len(batch))
        if self.drift is not None and result.n:
            alarm = self.drift.update(result.champion_losses,
                                      result.labels - result.champion_scores)
            self.last_alarm = alarm is not None
            if self.last_alarm and self.sanity_size:
                self.refresh_sanity()
        if len(self.sanity) < self.sanity_size:
            self.sanity.extend(batch[: self.sanity_size - len(self.sanity)])
        due = (getattr(result, "gate_due", False) if self.gate_every is None
               else self.since_gate >= self.gate_every)
        if not due or not self.evaluation.n:
            return None
        return self.decide()

    def decide(self) -> GateDecision:
        """Ask the gate now and act on its outcome."""
        self.since_gate = 0
        decision = decide(self.evaluation.paired(), self.sanity_pairs(), self.gate)
        c = self.counts
        promoted, rejected = decision.outcome == "promote", decision.outcome == "reject"
        self.counts = replace(c, decisions=c.decisions + 1, promotions=c.promotions + promoted,
                              rejections=c.rejections + rejected)
        if promoted:
            self.champion = self.policy.challenger
            self.policy.on_new_champion(self.champion)
            if self.drift is not None:
                self.drift.reset()  # a new champion: a new loss stream
        elif rejected:
            self.policy.on_new_champion(self.champion)
        if promoted or rejected or self.gate_every is None:
            self.evaluation.reset()
        return decision

    def refresh_sanity(self) -> None:
        """Forget the frozen sanity set; the next ``sanity_size`` examples form a new one."""
        self.sanity = []
        self.counts = replace(self.counts, sanity_refreshes=self.counts.sanity_refreshes + 1)

    def sanity_pairs(self) -> PairedLosses | None:
        """Champion and challenger on the sanity set, or None before there is one."""
        return paired_on(self.sanity, self.champion, self.policy.challenger)
