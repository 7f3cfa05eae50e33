"""``TriggeredPolicy``: train, and ask the gate, only when a trigger fires (``models.triggers``).

``TriggeredPolicy`` implements ``models.training.policies.TrainingPolicy`` (recorded as
``stateful``:
it fine-tunes a replica of the champion). The prequential rule it keeps: every example is
scored by champion and challenger when it arrives, *before* the challenger may learn it.

1. Each batch is scored by both models (``StepResult`` test figures, as in the other modes),
   the per-user cap applied, and what is kept is appended to a bounded buffer (oldest dropped
   past ``buffer_max``, counted in ``dropped``).
2. The triggers observe the batch; their firings are on ``StepResult.fired``.
3. On a firing, after the batch was scored, the challenger learns the whole buffer (every
   example it holds arrived since the last training, so none is learnt twice) and the buffer
   empties. ``StepResult.retrained`` is then True: the figures collected so far describe the
   challenger *before* that training, so the loop starts a new evaluation window.
4. The gate's evidence is the batches scored *after* the training: examples the trained
   challenger has never learnt (they wait in the buffer for the next training). Once at least
   ``min_evidence`` of them exist (set it to the gate's ``min_examples``), the batch's
   ``StepResult.gate_due`` is True, once: the loop asks the gate on its evaluation window.
5. Firings while evidence is being gathered, and on the batch that completes it, are *held*:
   training then would make the evidence describe another model. The challenger learns at the
   first batch after the gate was asked (``held`` lists them meanwhile).
6. ``on_new_champion`` (after a promotion or a rejection) restarts the challenger from the
   champion's replica; the buffer is kept: nobody has learnt those examples yet. What depends
   on the champion (the performance reference, the drift detector) restarts when ``process``
   is handed another champion object than before (held performance and drift firings, which
   judged the old champion, are dropped then), so a rejection, which keeps the champion,
   keeps them.

A keep_training verdict needs no call: the trained challenger stays and waits for the next
firing. The loop (the trainer's, or an in-process benchmark's) is the one of the other modes::

    result = policy.process(champion, batch, now_ms)   # scores both models first
    evaluation.add(result)
    if result.retrained:                 # trained after scoring: the gate's evidence
        evaluation.reset()               # starts with the next batch
    if result.gate_due:                  # enough fresh evidence on the trained challenger
        decision = decide(evaluation.paired(), sanity, gate_cfg)
        if decision.outcome == "promote":
            champion = policy.challenger
            policy.on_new_champion(champion)
        elif decision.outcome == "reject":
            policy.on_new_champion(champion)
        evaluation.reset()

Example:
    >>> from models import build_model
    >>> from models.training.step import LabeledExample
    >>> from models.triggers import TriggerConfig
    >>> champion = build_model("logreg", hash_bits=8)
    >>> policy = TriggeredPolicy(champion, Triggers.from_config(
    ...     TriggerConfig(volume_every_labels=4, performance_tolerance=0, drift_detector="none")),
    ...     min_evidence=2)
    >>> batch = [LabeledExample(f"p{i}", i % 2, {"d": "tv"}) for i in range(2)]
    >>> [(r.fired and r.fired[0].kind, r.retrained, r.n_trained, r.gate_due)
    ...  for r in (policy.process(champion, batch, now_ms=t) for t in range(3))]
    [((), False, 0, False), ('volume', True, 4, False), ((), False, 0, True)]
    >>> policy.trainings, policy.counts["volume"], len(policy.buffer)
    (1, 1, 2)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from models.learners.base import Model
from models.registry import Mode
from models.training.batching import cap_per_user
from models.training.policies import train_from_scratch
from models.training.step import Labeled, StepResult, score_both
from models.triggers import CHAMPION_FREE, KINDS, Firing, Kind, Triggers


class TriggeredPolicy:
    """A champion replica that learns its buffered examples only when a trigger fires.

    See the module docstring for the rules; ``process`` and ``on_new_champion`` are the
    ``TrainingPolicy`` protocol, ``StepResult.fired/retrained/gate_due`` what the loop reads.
    """

    def __init__(
        self,
        champion: Model,
        triggers: Triggers | None = None,
        *,
        challenger: Model | None = None,
        min_evidence: int = 1_024,
        buffer_max: int = 50_000,
        per_user_cap: int | None = None,
        epochs: int = 1,
        batch_size: int = 512,
        seed: int = 0,
        ips_clip: float | None = None,
    ) -> None:
        """Start from ``champion.clone()`` (or a challenger restored after a restart).

        Args:
            champion: The current champion.
            triggers: What makes the challenger learn; None: ``Triggers.from_config()``
                (volume every 10,000 labels, performance +10 %, ADWIN drift).
            challenger: A challenger persisted before a restart; None: a fresh replica.
            min_evidence: Examples scored after a training before the gate is due (use the
                gate's ``min_examples``).
            buffer_max: Examples kept for the next training at most (oldest dropped).
            per_user_cap: Poisoning guard applied before examples enter the buffer.
            epochs: Passes over the buffer per training.
            batch_size: Mini-batch size of those passes.
            seed: Seeds the shuffles of the passes.
            ips_clip: Learn with clipped inverse-propensity weights; None: unweighted.

        Raises:
            ValueError: A size < 1.
        """
        if min(min_evidence, buffer_max, epochs, batch_size) < 1:
            raise ValueError("min_evidence, buffer_max, epochs and batch_size must be >= 1")
        self.triggers = Triggers.from_config() if triggers is None else triggers
        self._challenger = champion.clone() if challenger is None else challenger
        self.min_evidence, self.per_user_cap = min_evidence, per_user_cap
        self.epochs, self.batch_size, self.seed = epochs, batch_size, seed
        self.ips_clip = ips_clip
        self.buffer: deque[Labeled] = deque(maxlen=buffer_max)
        self.held: list[Firing] = []
        self.counts: dict[Kind, int] = dict.fromkeys(KINDS, 0)
        self.trainings = 0
        self.total_trained = 0
        self.dropped = 0
        self.evidence: int | None = None  # examples scored since the last training, if awaited
        self._champion: Model | None = None  # the one the triggers' state describes

    @property
    def mode(self) -> Mode:
        """``"stateful"``: the challenger is a fine-tuned replica of the champion."""
        return "stateful"

    @property
    def challenger(self) -> Model:
        """The challenger (changes only when a trigger fires)."""
        return self._challenger

    @property
    def awaiting_evidence(self) -> bool:
        """True between a training and the batch that makes the gate due."""
        return self.evidence is not None

    def process(self, champion: Model, batch: Sequence[Labeled], now_ms: int) -> StepResult:
        """Score the batch, buffer it, let the triggers observe it, train if one fired."""
        if self._champion is not None and champion is not self._champion:
            self.triggers.new_champion()  # its loss stream is another one
            # Held performance/drift firings described the old champion's losses.
            self.held = [f for f in self.held if f.kind in CHAMPION_FREE]
        self._champion = champion
        tested = score_both(champion, self._challenger, batch)
        kept, n_capped = cap_per_user(batch, self.per_user_cap)
        overflow = len(self.buffer) + len(kept) - (self.buffer.maxlen or 0)
        self.dropped += max(0, overflow)
        self.buffer.extend(kept)
        fired = self.triggers.observe(now_ms, tested.champion_losses,
                                      tested.labels - tested.champion_scores)
        for firing in fired:
            self.counts[firing.kind] += 1
        self.held.extend(fired)
        gate_due = False
        if self.evidence is not None:
            self.evidence += tested.n
            if self.evidence >= self.min_evidence:
                gate_due, self.evidence = True, None
        train_loss, n_trained = 0.0, 0
        if self.held and self.evidence is None and not gate_due and self.buffer:
            n_trained = len(self.buffer)
            train_loss = self.train(now_ms)
        return replace(tested, train_loss=train_loss, n_trained=n_trained, n_capped=n_capped,
                       retrained=n_trained > 0, fired=fired, gate_due=gate_due)

    def train(self, now_ms: int) -> float:
        """The challenger learns the buffer; evidence gathering starts.

        Returns:
            The mean training loss of the last pass.
        """
        examples = list(self.buffer)
        loss = train_from_scratch(self._challenger, examples, batch_size=self.batch_size,
                                  epochs=self.epochs, seed=self.seed + self.trainings,
                                  ips_clip=self.ips_clip)
        self.buffer.clear()
        self.held.clear()
        self.trainings += 1
        self.total_trained += len(examples)
        self.triggers.trained(now_ms, self.total_trained)
        self.evidence = 0
        return loss

    def on_new_champion(self, model: Model) -> None:
        """The next challenger is a replica of ``model``; the buffer is kept."""
        self._challenger = model.clone()
        self.evidence = None

    def state(self) -> dict[str, Any]:
        """What a restart resumes besides the buffer (JSON-ready): counters and the triggers'
        state; a drift detector starts afresh (it needs some history before it alarms)."""
        return {
            "held": [asdict(f) for f in self.held], "counts": dict(self.counts),
            "trainings": self.trainings, "total_trained": self.total_trained,
            "dropped": self.dropped, "evidence": self.evidence,
            "triggers": self.triggers.state(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``state`` (missing keys keep their defaults)."""
        self.held = [Firing(f["kind"], f["reason"]) for f in state.get("held", [])]
        self.counts.update({k: int(v) for k, v in state.get("counts", {}).items()
                            if k in self.counts})
        self.trainings = int(state.get("trainings", 0))
        self.total_trained = int(state.get("total_trained", 0))
        self.dropped = int(state.get("dropped", 0))
        evidence = state.get("evidence")
        self.evidence = None if evidence is None else int(evidence)
        self.triggers.load_state(state.get("triggers", []))
