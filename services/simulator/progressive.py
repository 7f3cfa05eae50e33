"""Progressive evaluation on a logged stream of labelled requests: every example is scored by
the model that would have served it, then learnt.

Four ways to learn the same stream, in process, for ``bench replay``:

- ``through_learner``: the trainer's decision loop with its settings (``build_learner``, the
  ``Learner`` ``streamlearn train`` runs), in micro-batches of ``settings.batch_size``. Each
  batch is scored by the champion of that moment (what serving would have served) and by the
  challenger before the loop steps on it, so the scores cover every example, including those
  the bot guard or the per-user cap keep from learning;
- ``model_progressive``: the same model alone, each micro-batch scored then learnt, without
  the loop's gate, bot guard and per-user cap (what the loop itself costs or brings);
- ``river_progressive``: a river classifier's own ``predict_proba_one`` then ``learn_one`` on
  one-hot dicts (``one_hot``); with ``batch_size`` > 1 a whole batch is scored before it is
  learnt, which is the label delay the trainer's micro-batches impose;
- ``batch_trained``: a model trained offline on a fixed set, shuffled, for a few epochs.

``models.training.progressive`` is the trainer benchmark's log-loss reference with delayed
labels; this module reports the scores themselves, so the caller can compute AUC and log loss
on any subset (the last 20 %, the part replayed through the services).

Example:
    >>> from river import linear_model
    >>> from config.settings import GateSettings, TrainerSettings
    >>> from models.evaluation import auc
    >>> from models.training.step import LabeledExample
    >>> stream = [LabeledExample(f"p{i}", int(i % 3 == 0), {"c": str(i % 3), "user_id": str(i)})
    ...           for i in range(600)]
    >>> settings = TrainerSettings(batch_size=100, gate_every_examples=200, hash_bits=10)
    >>> served = through_learner(stream, settings, GateSettings(min_examples=100))
    >>> served.champion.shape, served.promotions >= 1, auc(served.labels[300:],
    ...                                                     served.champion[300:])
    ((600,), True, 1.0)
    >>> river = river_progressive(linear_model.LogisticRegression(), stream)
    >>> round(float(river[0]), 2), auc(served.labels[300:], river[300:])
    (0.5, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from river import base
from river.base.typing import FeatureName

from config.settings import GateSettings, TrainerSettings
from models.learners.base import Model
from models.training.step import Labeled, features_and_labels
from services.trainer.build import build_learner

Advance = Callable[[int], Any]  # told how many examples were just done (a progress bar)


@dataclass(frozen=True)
class Served:
    """Scores of a progressive run through the trainer's loop, one per example, in order.

    Attributes:
        labels: 0/1 per example (float64).
        champion: What the champion of the moment scored (what serving would have served).
        challenger: What the challenger scored before it learnt the example's batch.
        decisions, promotions, rejections: The gate's verdicts.
        guarded: Examples the bot guard kept from learning.
        capped: Examples the per-user cap kept from an update.
        alarms: Concept-drift alarms raised.
    """

    labels: np.ndarray
    champion: np.ndarray
    challenger: np.ndarray
    decisions: int
    promotions: int
    rejections: int
    guarded: int
    capped: int
    alarms: int


def through_learner(stream: Sequence[Labeled], settings: TrainerSettings, gate: GateSettings,
                    *, times_ms: Sequence[int] | None = None, advance: Advance | None = None,
                    ) -> Served:
    """Score, then learn, ``stream`` in micro-batches through the trainer's decision loop,
    starting from the cold-start model ``new_model(settings)``.

    Args:
        stream: Labelled examples in time order.
        settings, gate: The trainer's and the gate's settings.
        times_ms: Each example's time (the loop's ``now_ms`` is its batch's last); None:
            the index.
        advance: Called with the batch size after each batch.
    """
    learner = build_learner(settings, gate)  # from the cold start (new_model)
    _, labels = features_and_labels(stream)
    champion, challenger = np.empty(len(stream)), np.empty(len(stream))
    size = settings.batch_size
    for start in range(0, len(stream), size):
        batch = stream[start:start + size]
        end = start + len(batch)
        feats = [e.features for e in batch]
        champion[start:end] = learner.champion.predict_proba_many(feats)
        challenger[start:end] = learner.challenger.predict_proba_many(feats)
        learner.step(batch, now_ms=end - 1 if times_ms is None else times_ms[end - 1])
        if advance is not None:
            advance(len(batch))
    c = learner.counts
    return Served(labels, champion, challenger, c.decisions, c.promotions, c.rejections,
                  c.guarded, c.capped, c.alarms)


def model_progressive(model: Model, stream: Sequence[Labeled], *, batch_size: int,
                      advance: Advance | None = None) -> np.ndarray:
    """``model``'s click probabilities on ``stream``, each micro-batch scored, then learnt
    (``learn_many``): the model alone, without the loop's gate, guard or per-user cap.

    Example:
        >>> from models import build_model
        >>> from models.training.step import LabeledExample
        >>> stream = [LabeledExample(f"p{i}", i % 2, {"odd": bool(i % 2)}) for i in range(8)]
        >>> scores = model_progressive(build_model("logreg", hash_bits=8), stream, batch_size=4)
        >>> [round(float(p), 2) for p in scores[:4]], bool(scores[5] > scores[4])
        ([0.05, 0.05, 0.05, 0.05], True)
    """
    feats, labels = features_and_labels(stream)
    scores = np.empty(len(stream))
    for start in range(0, len(stream), batch_size):
        end = min(start + batch_size, len(stream))
        scores[start:end] = model.predict_proba_many(feats[start:end])
        model.learn_many(feats[start:end], labels[start:end])
        if advance is not None:
            advance(end - start)
    return scores


def one_hot(features: Mapping[str, Any]) -> dict[FeatureName, float]:
    """A feature dict as river's one-hot input: every value, numbers included, a category.

    Example:
        >>> one_hot({"gender": "F", "age": 24, "genre_drama": True})
        {'gender=F': 1.0, 'age=24': 1.0, 'genre_drama=True': 1.0}
    """
    return {f"{key}={value}": 1.0 for key, value in features.items()}


def river_progressive(model: base.Classifier, stream: Sequence[Labeled], *, batch_size: int = 1,
                      advance: Advance | None = None, every: int = 1_000) -> np.ndarray:
    """A river classifier's click probabilities on ``stream``, each scored before it is
    learnt (one at a time; ``batch_size`` > 1 scores a whole batch first). ``advance`` is
    called every ``every`` examples (rounded up to whole batches)."""
    scores = np.empty(len(stream))
    done = 0
    for start in range(0, len(stream), batch_size):
        batch = [(one_hot(e.features), bool(e.label)) for e in stream[start:start + batch_size]]
        for offset, (x, _) in enumerate(batch):
            scores[start + offset] = model.predict_proba_one(x).get(True, 0.0)
        for x, y in batch:
            model.learn_one(x, y)
        done += len(batch)
        if advance is not None and (done >= every or start + batch_size >= len(stream)):
            advance(done)
            done = 0
    return scores


def batch_trained(model: Model, train: Sequence[Labeled], *, epochs: int, batch_size: int,
                  seed: int = 0, advance: Advance | None = None) -> Model:
    """``model`` after ``epochs`` shuffled passes over ``train`` in ``learn_many`` batches of
    ``batch_size`` (seeded order); returns the same object.

    Example:
        >>> from models import build_model
        >>> from models.training.step import LabeledExample
        >>> train = [LabeledExample(f"p{i}", i % 2, {"odd": bool(i % 2)}) for i in range(64)]
        >>> model = batch_trained(build_model("logreg", hash_bits=8), train, epochs=3,
        ...                       batch_size=8)
        >>> odd, even = model.predict_proba_many([{"odd": True}, {"odd": False}])
        >>> bool(odd > 2 * even)
        True
    """
    feats, labels = features_and_labels(train)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(train))
        for start in range(0, len(train), batch_size):
            chosen = order[start:start + batch_size]
            model.learn_many([feats[i] for i in chosen], labels[chosen])
            if advance is not None:
                advance(len(chosen))
    return model
