"""Test-then-train on micro-batches: score with champion and challenger, then update the challenger.

This is the pure core of ``streamlearn train``; the Kafka adapter around it only moves
messages and offsets. One micro-batch goes through, in this order:

1. ``SeenIds.filter_new`` (``models.training.batching``) drops redelivered ``prediction_id``s;
2. ``step`` scores the whole batch with the champion *and* the challenger before either has
   learnt from it, and keeps per-example log losses, scores and labels for the gate;
3. the poisoning guard (``cap_per_user``) keeps at most ``per_user_cap`` examples per user;
4. the forgetting guard (``Reservoir.mix``, ``models.training.replay``) appends replayed older
   examples;
5. the challenger learns the result. The champion is only ever read.

``Evaluation`` accumulates the step results since the last gate decision and hands them to
``models.gate.decision.decide`` as ``PairedLosses``. The two training modes (stateful fine-tuning,
stateless retraining) live in ``models.training.policies``.

An example is anything with ``prediction_id``, ``label`` and ``features`` attributes
(``Labeled``): ``streams.schemas.Example`` fits as it is, and ``LabeledExample`` serves
in-process callers. The user a per-user cap counts is ``features["user_id"]``.

Example:
    >>> from models import build_model
    >>> champion = build_model("logreg", hash_bits=8)
    >>> challenger = champion.clone()
    >>> batch = [LabeledExample("p1", 1, {"device": "tv"}), LabeledExample("p2", 0, {})]
    >>> result = step(champion, challenger, batch)
    >>> result.n, result.n_trained, result.labels.tolist()
    (2, 2, [1.0, 0.0])
    >>> bool((result.champion_losses == result.challenger_losses).all())  # same start
    True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from models.evaluation.metrics import log_losses
from models.gate.decision import PairedLosses
from models.learners.base import Model, check_labels
from models.training.batching import cap_per_user
from models.training.replay import Reservoir
from models.triggers import Firing


class Labeled(Protocol):
    """A labelled example as the trainer needs it (``streams.schemas.Example`` fits)."""

    @property
    def prediction_id(self) -> str: ...

    @property
    def label(self) -> int: ...

    @property
    def features(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class LabeledExample:
    """A plain ``Labeled`` for in-process use (tests, references, benchmarks)."""

    prediction_id: str
    label: int
    features: Mapping[str, Any] = field(default_factory=dict)


def features_and_labels(batch: Sequence[Labeled]) -> tuple[list[Mapping[str, Any]], np.ndarray]:
    """The feature dicts and the checked 0/1 labels (float64) of a batch.

    Raises:
        BatchError: A label is not 0/1.

    Example:
        >>> features_and_labels([LabeledExample("p", 1, {"a": "b"})])
        ([{'a': 'b'}], array([1.]))
    """
    feats = [ex.features for ex in batch]
    return feats, check_labels(feats, [ex.label for ex in batch])


def ips_weights(batch: Sequence[Labeled], clip: float | None) -> np.ndarray | None:
    """Clipped inverse propensities, ``min(1 / propensity, clip)`` per example (1 where the
    propensity is unknown): the exposure a ranking gave an example undone, so explored
    candidates speak for the many like them it did not show. None when ``clip`` is None.

    Example:
        >>> from types import SimpleNamespace
        >>> batch = [SimpleNamespace(propensity=p) for p in (0.5, 0.01, None)]
        >>> ips_weights(batch, 10.0).tolist()
        [2.0, 10.0, 1.0]
    """
    if clip is None:
        return None
    p = propensities_of(batch)
    if p is None:
        return np.ones(len(batch))
    return np.minimum(1.0 / np.nan_to_num(p, nan=1.0), clip)


def learn_examples(model: Model, batch: Sequence[Labeled], ips_clip: float | None = None,
                   ) -> float:
    """One ``learn_many`` update on labelled examples, weighted by ``ips_weights`` when
    ``ips_clip`` is set; the batch's loss before the update."""
    feats, labels = features_and_labels(batch)
    return model.learn_many(feats, labels, weights=ips_weights(batch, ips_clip))


@dataclass(frozen=True)
class StepResult:
    """What one micro-batch produced: test figures for the gate, training figures for metrics.

    The first five arrays are aligned per evaluated example (the whole deduplicated batch,
    capped examples included: capping limits an update, not what is measured). Replayed
    examples are never in them.

    Attributes:
        champion_losses: Per-example log loss of the champion, before any learning.
        challenger_losses: Per-example log loss of the challenger, before it learnt the batch.
        champion_scores: The champion's click probabilities.
        challenger_scores: The challenger's click probabilities.
        labels: 0/1 labels (float64).
        train_loss: Mean loss the update reported (0.0 when nothing was trained).
        n_trained: Examples the challenger learnt from (kept + replayed; for a stateless
            retrain, the window size).
        n_capped: Examples dropped by the per-user cap.
        n_replayed: Replayed examples mixed into the update.
        retrained: The challenger was replaced by a model built from scratch (stateless
            mode), or learnt its buffer on a trigger (triggered mode), after this batch was
            scored: start a new evaluation window.
        fired: The triggers that fired on this batch (``models.triggers``; triggered mode).
        gate_due: Enough evidence has been scored since the challenger's last training: ask
            the gate now (triggered mode; the other modes leave the cadence to the caller).
        propensities: Per evaluated example, the propensity serving logged (an example's
            ``propensity`` attribute), NaN where unknown; None: none known.
    """

    champion_losses: np.ndarray
    challenger_losses: np.ndarray
    champion_scores: np.ndarray
    challenger_scores: np.ndarray
    labels: np.ndarray
    train_loss: float = 0.0
    n_trained: int = 0
    n_capped: int = 0
    n_replayed: int = 0
    retrained: bool = False
    fired: tuple[Firing, ...] = ()
    gate_due: bool = False
    propensities: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of evaluated examples."""
        return int(self.labels.size)


def score_both(champion: Model, challenger: Model, batch: Sequence[Labeled]) -> StepResult:
    """The test half of test-then-train: both models score the batch; nobody learns.

    Returns:
        A ``StepResult`` with the evaluation arrays and zero training figures.
    """
    feats, labels = features_and_labels(batch)
    p_champion = champion.predict_proba_many(feats)
    p_challenger = challenger.predict_proba_many(feats)
    return StepResult(
        champion_losses=log_losses(labels, p_champion),
        challenger_losses=log_losses(labels, p_challenger),
        champion_scores=p_champion,
        challenger_scores=p_challenger,
        labels=labels,
        propensities=propensities_of(batch),
    )


def propensities_of(batch: Sequence[Labeled]) -> np.ndarray | None:
    """The logged propensities of a batch (NaN where unknown); None when none is known.

    Example:
        >>> from types import SimpleNamespace  # streams.schemas.Example carries one
        >>> ex = SimpleNamespace(prediction_id="p", label=1, features={}, propensity=0.05)
        >>> propensities_of([ex, LabeledExample("q", 0)]).tolist()
        [0.05, nan]
    """
    values = [getattr(ex, "propensity", None) for ex in batch]
    if all(v is None for v in values):
        return None
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def step(
    champion: Model,
    challenger: Model,
    batch: Sequence[Labeled],
    *,
    per_user_cap: int | None = None,
    reservoir: Reservoir[Any] | None = None,
    replay_ratio: float = 0.0,
    ips_clip: float | None = None,
) -> StepResult:
    """Test-then-train one deduplicated micro-batch; only the challenger changes.

    Args:
        champion: The serving model; only scored.
        challenger: Learns the batch in place after scoring it.
        batch: Labelled examples in arrival order.
        per_user_cap: At most this many examples per ``features["user_id"]`` are learnt;
            None: no cap.
        reservoir: Older examples to replay; the kept examples are added to it after the
            update. None: no replay.
        replay_ratio: Replayed examples per kept one (``Reservoir.mix``).
        ips_clip: Learn with clipped inverse-propensity weights (``ips_weights``); None: not.

    Returns:
        The batch's ``StepResult``.

    Raises:
        ValueError: ``challenger`` is ``champion`` (learning would change the serving model).
        BatchError: A label or feature the models refuse.
    """
    if challenger is champion:
        raise ValueError("the challenger must be a replica (champion.clone()), not the champion")
    tested = score_both(champion, challenger, batch)
    kept, n_capped = cap_per_user(batch, per_user_cap)
    train = kept if reservoir is None else reservoir.mix(kept, replay_ratio)
    train_loss = learn_examples(challenger, train, ips_clip)
    if reservoir is not None:
        reservoir.add(kept)
    return replace(
        tested,
        train_loss=train_loss,
        n_trained=len(train),
        n_capped=n_capped,
        n_replayed=len(train) - len(kept),
    )


class Evaluation:
    """The step results since the last gate decision, paired per example.

    Bounded: past ``max_examples`` the oldest whole batches are dropped, so a gate that keeps
    answering "keep training" cannot grow it without limit.

    Example:
        >>> ev = Evaluation()
        >>> ev.add(StepResult(np.array([0.7, 0.5]), np.array([0.6, 0.4]), np.zeros(2),
        ...                   np.zeros(2), np.zeros(2)))
        >>> ev.n, round(ev.champion_mean, 2), round(ev.challenger_mean, 2)
        (2, 0.6, 0.5)
        >>> ev.reset(); ev.n
        0
    """

    def __init__(self, max_examples: int | None = None) -> None:
        """Create an empty window holding at most ``max_examples`` (None: unbounded)."""
        self.max_examples = max_examples
        self._results: deque[StepResult] = deque()
        self._n = 0

    @property
    def n(self) -> int:
        """Evaluated examples in the window."""
        return self._n

    @property
    def batches(self) -> int:
        """Step results in the window."""
        return len(self._results)

    def add(self, result: StepResult) -> None:
        """Append one batch's figures (empty results are ignored)."""
        if not result.n:
            return
        self._results.append(result)
        self._n += result.n
        while self.max_examples is not None and self._n > self.max_examples:
            self._n -= self._results.popleft().n

    def reset(self) -> None:
        """Empty the window (after a gate decision or a new challenger)."""
        self._results.clear()
        self._n = 0

    @property
    def champion_mean(self) -> float:
        """The champion's mean log loss over the window (NaN when empty)."""
        return _mean(self.paired().champion_losses)

    @property
    def challenger_mean(self) -> float:
        """The challenger's mean log loss over the window (NaN when empty)."""
        return _mean(self.paired().challenger_losses)

    def paired(self) -> PairedLosses:
        """The window's per-example arrays in arrival order: the gate's ``decide`` input.

        Raises:
            GateError: A loss is not finite (cannot happen with ``step``'s losses).
        """
        def cat(name: str) -> np.ndarray:
            parts = [getattr(r, name) for r in self._results]
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)

        known = [r.propensities for r in self._results if r.propensities is not None]
        propensities = None
        if known:
            propensities = np.concatenate([
                np.full(r.n, np.nan) if r.propensities is None else r.propensities
                for r in self._results])
        return PairedLosses(
            champion_losses=cat("champion_losses"),
            challenger_losses=cat("challenger_losses"),
            champion_scores=cat("champion_scores"),
            challenger_scores=cat("challenger_scores"),
            labels=cat("labels"),
            propensities=propensities,
        )


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def paired_on(examples: Sequence[Labeled], champion: Model, challenger: Model,
              ) -> PairedLosses | None:
    """Both models scored on ``examples`` (the gate's sanity set); None when there are none."""
    if not examples:
        return None
    feats = [e.features for e in examples]
    return PairedLosses.from_scores(
        np.asarray([float(e.label) for e in examples]),
        champion.predict_proba_many(feats),
        challenger.predict_proba_many(feats),
    )
