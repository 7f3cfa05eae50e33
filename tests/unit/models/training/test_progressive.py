"""The in-process reference: progressive validation with delayed labels, checked against river."""

from __future__ import annotations

import math

import numpy as np
import pytest
from river import datasets, evaluate, linear_model, metrics, preprocessing

from models import Model, build_model
from models.evaluation.metrics import log_losses
from models.training.progressive import AsRiverClassifier, progressive_delayed
from models.training.step import LabeledExample
from tests.unit.models.training.factories import batches, make_examples


def phishing() -> tuple[list[tuple[dict, bool]], list[LabeledExample]]:
    data = list(datasets.Phishing())
    return data, [LabeledExample(str(i), int(y), x) for i, (x, y) in enumerate(data)]


def river_logreg() -> Model:
    # prior_ctr=0.5 starts the intercept at 0, river's default: the wrapper is then exactly
    # river's StandardScaler | LogisticRegression on all-numeric data.
    return build_model("river_logreg", prior_ctr=0.5)


@pytest.mark.parametrize("delay", [None, 25])
def test_batch_of_one_matches_rivers_progressive_val_score(delay: int | None) -> None:
    data, stream = phishing()
    pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    river_itself = evaluate.progressive_val_score(data, pipeline, metrics.LogLoss(), delay=delay)
    through_wrapper = evaluate.progressive_val_score(
        data, AsRiverClassifier(river_logreg()), metrics.LogLoss(), delay=delay
    )
    ours = progressive_delayed(river_logreg(), stream, delay=delay or 0, batch_size=1)
    assert through_wrapper.get() == river_itself.get()
    assert ours == pytest.approx(river_itself.get(), rel=1e-12)
    assert ours == pytest.approx(0.330112 if delay is None else 0.338524, abs=1e-6)


def test_timestamp_delays_reveal_labels_in_expiry_order_as_river_does() -> None:
    rng = np.random.default_rng(0)
    # Arrival times with ties, label delays that reorder the reveals.
    ts = np.cumsum(rng.integers(0, 3, size=400))
    waits = rng.integers(0, 40, size=400)
    data = [
        ({"ts": int(t), "wait": int(w), "x": float(rng.normal())}, bool(rng.random() < 0.3))
        for t, w in zip(ts, waits, strict=True)
    ]
    stream = [LabeledExample(str(i), int(y), x) for i, (x, y) in enumerate(data)]
    river = evaluate.progressive_val_score(
        data, AsRiverClassifier(river_logreg()), metrics.LogLoss(),
        moment=lambda x: x["ts"], delay=lambda x, _y: x["wait"],
    )
    ours = progressive_delayed(
        river_logreg(), stream,
        moment=lambda e: e.features["ts"], delay=lambda e: e.features["wait"],
    )
    assert ours == pytest.approx(river.get(), rel=1e-12)


def test_micro_batches_without_delay_are_the_trainers_test_then_train() -> None:
    stream = make_examples(1_000, seed=3)
    ours = progressive_delayed(build_model("fm", hash_bits=12), stream, delay=0, batch_size=128)
    model, losses = build_model("fm", hash_bits=12), []
    for batch in batches(stream, 128):
        feats, labels = [e.features for e in batch], np.array([e.label for e in batch], float)
        losses.append(log_losses(labels, model.predict_proba_many(feats)))
        model.learn_many(feats, labels)
    assert ours == pytest.approx(float(np.concatenate(losses).mean()), rel=1e-12)


def test_a_longer_delay_costs_loss_on_a_learnable_stream() -> None:
    stream = make_examples(2_000, seed=4)
    fm = {"hash_bits": 12}
    prompt = progressive_delayed(build_model("fm", **fm), stream, delay=0, batch_size=64)
    late = progressive_delayed(build_model("fm", **fm), stream, delay=1_000, batch_size=64)
    assert (round(prompt, 3), round(late, 3)) == (0.320, 0.409)


def test_degenerate_inputs() -> None:
    assert math.isnan(progressive_delayed(build_model("logreg", hash_bits=8), []))
    with pytest.raises(ValueError, match="batch_size"):
        progressive_delayed(build_model("logreg", hash_bits=8), [], batch_size=0)
