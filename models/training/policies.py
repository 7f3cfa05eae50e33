"""The two training modes behind one protocol, so the trainer's Kafka loop is mode-agnostic.

* ``StatefulPolicy`` (default): the challenger starts as a replica of the champion and keeps
  fine-tuning on every micro-batch (test-then-train, ``models.training.step.step``); when another
  model becomes champion, the next challenger is a replica of it.
* ``StatelessPolicy``: keeps a bounded sliding window of recent examples and, on a schedule
  (every N examples and/or every T ms of the caller's clock), trains a model built from
  scratch over the window; that model becomes the challenger. Between retrains the challenger
  is only scored, never updated.

The loop drives either one the same way::

    result = policy.process(champion, fresh_batch, now_ms)   # test-then-train
    evaluation.add(result)
    if result.retrained:             # a brand-new challenger: earlier figures describe another
        evaluation.reset()           # model (``StepResult.retrained`` is only set then)
    ...gate decides on evaluation.paired()...
    policy.on_new_champion(model)    # after a promotion (or a rejection: pass the champion)

Example:
    >>> from models import build_model
    >>> from models.training.step import LabeledExample
    >>> champion = build_model("logreg", hash_bits=8)
    >>> policy = StatelessPolicy(champion, "logreg", {"hash_bits": 8}, window=100,
    ...                          retrain_every_examples=2)
    >>> batch = [LabeledExample(f"p{i}", i % 2, {"d": "tv"}) for i in range(3)]
    >>> result = policy.process(champion, batch, now_ms=0)
    >>> result.retrained, result.n_trained, len(policy.window)
    (True, 3, 3)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from models.learners.base import Model
from models.learners.factory import build_model
from models.registry import Mode
from models.training.batching import cap_per_user
from models.training.replay import Reservoir
from models.training.step import Labeled, StepResult, learn_examples, score_both, step


class TrainingPolicy(Protocol):
    """How a challenger is produced; all the Kafka adapter needs to know about training."""

    @property
    def mode(self) -> Mode:
        """``"stateful"`` or ``"stateless"`` (recorded in the registry)."""
        ...

    @property
    def challenger(self) -> Model:
        """The current challenger (persist ``challenger.save()`` with each batch outcome)."""
        ...

    @property
    def ips_clip(self) -> float | None:
        """How the challenger learns: clipped inverse-propensity weights (None: unweighted)."""
        ...

    def process(self, champion: Model, batch: Sequence[Labeled], now_ms: int) -> StepResult:
        """Test-then-train one deduplicated micro-batch against the current champion."""
        ...

    def on_new_champion(self, model: Model) -> None:
        """Another model became champion (or the challenger was rejected): start over from it."""
        ...


class StatefulPolicy:
    """A challenger replica of the champion, fine-tuned on every micro-batch."""

    def __init__(
        self,
        champion: Model,
        *,
        challenger: Model | None = None,
        per_user_cap: int | None = None,
        replay_ratio: float = 0.0,
        replay_capacity: int = 10_000,
        seed: int = 0,
        ips_clip: float | None = None,
    ) -> None:
        """Start from ``champion.clone()``, or from a ``challenger`` restored after a restart.

        Args:
            champion: The current champion.
            challenger: A challenger persisted before a restart; None: a fresh replica.
            per_user_cap: Poisoning guard (``cap_per_user``); None disables it.
            replay_ratio: Forgetting guard: replayed examples per fresh one; 0 disables it.
            replay_capacity: Size of the replay reservoir.
            seed: Seeds the reservoir.
            ips_clip: Learn with clipped inverse-propensity weights; None: unweighted.
        """
        self._challenger = champion.clone() if challenger is None else challenger
        self.ips_clip = ips_clip
        self.per_user_cap = per_user_cap
        self.replay_ratio = replay_ratio
        self.reservoir: Reservoir[Labeled] | None = (
            Reservoir(replay_capacity, seed) if replay_ratio > 0 else None
        )

    @property
    def mode(self) -> Mode:
        """Always ``"stateful"``."""
        return "stateful"

    @property
    def challenger(self) -> Model:
        """The fine-tuned replica."""
        return self._challenger

    def process(self, champion: Model, batch: Sequence[Labeled], now_ms: int) -> StepResult:
        """``models.training.step.step`` with this policy's guards (``now_ms`` is unused)."""
        return step(
            champion,
            self._challenger,
            batch,
            per_user_cap=self.per_user_cap,
            reservoir=self.reservoir,
            replay_ratio=self.replay_ratio,
            ips_clip=self.ips_clip,
        )

    def on_new_champion(self, model: Model) -> None:
        """The next challenger is a replica of ``model``; the replay reservoir is kept."""
        self._challenger = model.clone()


class StatelessPolicy:
    """A model built from scratch over a sliding window of recent examples, on a schedule."""

    def __init__(
        self,
        champion: Model,
        name: str,
        hyperparams: Mapping[str, Any] | None = None,
        *,
        challenger: Model | None = None,
        window: int = 50_000,
        retrain_every_examples: int | None = None,
        retrain_every_ms: int | None = None,
        epochs: int = 1,
        batch_size: int = 512,
        per_user_cap: int | None = None,
        seed: int = 0,
        ips_clip: float | None = None,
    ) -> None:
        """Create the policy; until its first retrain the challenger is a champion replica.

        Args:
            champion: The current champion.
            name: Model built at each retrain (``build_model(name, **hyperparams)``).
            hyperparams: Its hyperparameters.
            challenger: The last retrained challenger, persisted before a restart; None: a
                champion replica until the first retrain.
            window: Most recent examples kept (older ones slide out).
            retrain_every_examples: Retrain after this many new examples; None: not by count.
            retrain_every_ms: Retrain when this long has passed since the last retrain (or
                the first batch); None: not by time. Defaults to every ``window`` examples when
                both are None.
            epochs: Passes over the window per retrain.
            batch_size: Mini-batch size of those passes.
            per_user_cap: Poisoning guard applied before examples enter the window.
            seed: Seeds the per-epoch shuffles.
            ips_clip: Learn with clipped inverse-propensity weights; None: unweighted.

        Raises:
            ValueError: A size or period < 1.
            HyperparameterError: ``build_model`` refuses ``name`` or ``hyperparams``.
        """
        if min(window, epochs, batch_size) < 1:
            raise ValueError("window, epochs and batch_size must be >= 1")
        if retrain_every_examples is None and retrain_every_ms is None:
            retrain_every_examples = window
        for period in (retrain_every_examples, retrain_every_ms):
            if period is not None and period < 1:
                raise ValueError(f"retrain periods must be >= 1, got {period}")
        self.name = name
        self.ips_clip = ips_clip
        self.hyperparams = dict(hyperparams or {})
        build_model(name, **self.hyperparams)  # refuse a bad configuration now, not at retrain
        self.window: deque[Labeled] = deque(maxlen=window)
        self.retrain_every_examples = retrain_every_examples
        self.retrain_every_ms = retrain_every_ms
        self.epochs = epochs
        self.batch_size = batch_size
        self.per_user_cap = per_user_cap
        self.seed = seed
        self.retrains = 0
        self._challenger = champion.clone() if challenger is None else challenger
        self._since_retrain = 0
        self._last_retrain_ms: int | None = None

    @property
    def mode(self) -> Mode:
        """Always ``"stateless"``."""
        return "stateless"

    @property
    def challenger(self) -> Model:
        """The model of the last retrain (a champion replica before the first one)."""
        return self._challenger

    def retrain_due(self, now_ms: int) -> bool:
        """Whether the schedule calls for a retrain now (never with an empty window)."""
        if not self.window:
            return False
        every_n, every_ms = self.retrain_every_examples, self.retrain_every_ms
        if every_n is not None and self._since_retrain >= every_n:
            return True
        last = self._last_retrain_ms
        return every_ms is not None and last is not None and now_ms - last >= every_ms

    def process(self, champion: Model, batch: Sequence[Labeled], now_ms: int) -> StepResult:
        """Score the batch with both models, slide it into the window, retrain if due."""
        if self._last_retrain_ms is None:
            self._last_retrain_ms = now_ms  # the time schedule starts with the stream
        tested = score_both(champion, self._challenger, batch)
        kept, n_capped = cap_per_user(batch, self.per_user_cap)
        self.window.extend(kept)
        self._since_retrain += len(kept)
        train_loss, n_trained, retrained = 0.0, 0, False
        if self.retrain_due(now_ms):
            train_loss, n_trained, retrained = self.retrain(now_ms), len(self.window), True
        return replace(
            tested,
            train_loss=train_loss,
            n_trained=n_trained,
            n_capped=n_capped,
            retrained=retrained,
        )

    def retrain(self, now_ms: int) -> float:
        """Build a fresh model, train it over the window, make it the challenger.

        Returns:
            The mean training loss of the last epoch.
        """
        model = build_model(self.name, **self.hyperparams)
        loss = train_from_scratch(
            model, list(self.window), batch_size=self.batch_size, epochs=self.epochs,
            seed=self.seed + self.retrains, ips_clip=self.ips_clip,
        )
        self._challenger = model
        self.retrains += 1
        self._since_retrain = 0
        self._last_retrain_ms = now_ms
        return loss

    def on_new_champion(self, model: Model) -> None:
        """Until the next retrain the challenger is a replica of ``model``; the window stays."""
        self._challenger = model.clone()


def train_from_scratch(
    model: Model,
    examples: Sequence[Labeled],
    *,
    batch_size: int = 512,
    epochs: int = 1,
    seed: int = 0,
    ips_clip: float | None = None,
) -> float:
    """Train ``model`` over ``examples`` in shuffled mini-batches, ``epochs`` times (weighted
    by clipped inverse propensities with ``ips_clip``).

    Each epoch visits the examples in a fresh seeded permutation: the window is one training
    set, and shuffling keeps its last minutes from dominating the final updates.

    Returns:
        The example-weighted mean of the losses ``learn_many`` reported in the last epoch
        (0.0 without examples).
    """
    rng = np.random.default_rng(seed)
    loss = 0.0
    for _ in range(epochs):
        order = rng.permutation(len(examples))
        total = 0.0
        for start in range(0, len(order), batch_size):
            chunk = [examples[int(i)] for i in order[start : start + batch_size]]
            total += learn_examples(model, chunk, ips_clip) * len(chunk)
        loss = total / len(examples) if len(examples) else 0.0
    return loss
