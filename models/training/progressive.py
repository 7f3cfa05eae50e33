"""In-process references for the trainer: progressive validation with delayed labels.

``progressive_delayed`` runs a model over a stream the way the deployed trainer does, with no
Kafka: every example is scored when it arrives, its label is revealed ``delay`` later, and
revealed examples are learnt in micro-batches. It follows river's ``stream.simulate_qa``
exactly (``evaluate.progressive_val_score`` with ``moment``/``delay``), so with
``batch_size=1`` the two agree to the last digit; ``AsRiverClassifier`` lets river drive one
of our models to check that. The trainer benchmark compares the loss of the real pipeline
against this reference (``logloss_ratio``).

Delay semantics (river's): an example arriving at time ``t`` expires at ``t + delay``. When
an example arrives at time ``u``, every pending example with expiry ``<= u`` is revealed
(oldest expiry first) *before* the newcomer is scored. Time is the arrival index unless a
``moment`` is given, so ``delay=0`` and ``delay=1`` both mean "learnt before the next
example is scored".

Example:
    >>> from river import evaluate, metrics
    >>> from models import build_model
    >>> from models.training.step import LabeledExample
    >>> data = [({"odd": bool(i % 2)}, bool(i % 2)) for i in range(200)]
    >>> stream = [LabeledExample(f"p{i}", int(y), x) for i, (x, y) in enumerate(data)]
    >>> ours = progressive_delayed(build_model("logreg", hash_bits=8), stream, delay=20)
    >>> model = AsRiverClassifier(build_model("logreg", hash_bits=8))
    >>> river = evaluate.progressive_val_score(data, model, metrics.LogLoss(), delay=20)
    >>> round(ours, 4), round(river.get(), 4)
    (0.767, 0.767)
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
from river import base
from river.base.typing import ClfTarget, FeatureName

from models.evaluation.metrics import log_losses
from models.features.encoding import FeatureDict
from models.learners.base import Model
from models.training.step import Labeled, features_and_labels, learn_examples

Delay = float | Callable[[Labeled], float]


def progressive_delayed(
    model: Model,
    stream: Iterable[Labeled],
    *,
    delay: Delay = 0,
    moment: Callable[[Labeled], float] | None = None,
    batch_size: int = 1,
) -> float:
    """Mean log loss of test-then-train with delayed labels and micro-batched updates.

    Args:
        model: Learns in place.
        stream: Examples in arrival order (non-decreasing ``moment`` if one is given).
        delay: Time until an example's label is revealed: a constant, or a function of the
            example (e.g. ``lambda e: e.ts_label - e.ts_prediction``).
        moment: An example's arrival time (e.g. ``lambda e: e.ts_prediction``); None: its
            index in the stream.
        batch_size: Revealed examples are learnt ``batch_size`` at a time, as the trainer's
            micro-batches; a final partial batch is not learnt (nothing is left to score).

    Returns:
        The mean per-example log loss (``models.evaluation.metrics.log_losses``); NaN for an empty
        stream.

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    delay_of = delay if callable(delay) else (lambda _ex: delay)
    # (expiry, arrival index, example); the index breaks ties in arrival order, as river's
    # bisect.insort of its mementos does.
    pending: list[tuple[float, int, Labeled]] = []
    arrived: list[Labeled] = []  # not scored yet: the model has not changed since they arrived
    revealed: list[Labeled] = []
    losses: list[np.ndarray] = []

    def score_arrived() -> None:
        if arrived:
            feats, labels = features_and_labels(arrived)
            losses.append(log_losses(labels, model.predict_proba_many(feats)))
            arrived.clear()

    for i, example in enumerate(stream):
        now = float(i) if moment is None else moment(example)
        while pending and pending[0][0] <= now:
            revealed.append(heapq.heappop(pending)[2])
            if len(revealed) == batch_size:
                score_arrived()  # everything that arrived so far is scored before the update
                learn_examples(model, revealed)
                revealed = []
        heapq.heappush(pending, (now + delay_of(example), i, example))
        arrived.append(example)
    score_arrived()
    return float(np.concatenate(losses).mean()) if losses else float("nan")


class AsRiverClassifier(base.Classifier):
    """One of our models as a river classifier, so river's own evaluators can drive it.

    Example:
        >>> from models import build_model
        >>> model = AsRiverClassifier(build_model("logreg", hash_bits=8))
        >>> {k: round(v, 2) for k, v in model.predict_proba_one({"device": "tv"}).items()}
        {False: 0.95, True: 0.05}
    """

    def __init__(self, model: Model) -> None:
        """Wrap ``model``; it learns in place."""
        self.model = model

    def learn_one(self, x: dict[FeatureName, Any], y: ClfTarget, **kwargs: Any) -> None:
        """Learn one example (``y`` truthy means a click)."""
        self.model.learn_many([_flat(x)], [int(bool(y))])

    def predict_proba_one(
        self, x: dict[FeatureName, Any], **kwargs: Any
    ) -> dict[ClfTarget, float]:
        """``{False: 1 - p, True: p}`` with ``p`` the model's click probability."""
        p = float(self.model.predict_proba_many([_flat(x)])[0])
        return {False: 1.0 - p, True: p}


def _flat(x: dict[FeatureName, Any]) -> FeatureDict:
    # river types feature names as any hashable; ours are flat dicts with string keys.
    return cast(FeatureDict, x)
