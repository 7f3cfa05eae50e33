"""``Model.forget``: what a model keeps when a drift alarm races a replica that forgot."""

from __future__ import annotations

import numpy as np
import pytest

from models import build_model
from models.errors import HyperparameterError
from models.learners.torch_models import FMConfig, TorchModel
from tests.unit.models.factories import make_batch

BATCH = make_batch(512, seed=1)
LABELS = np.array([int(x["item_category"] == "games") for x in BATCH])


def learnt(name: str) -> TorchModel:
    model = build_model(name, hash_bits=10, seed=0)
    assert isinstance(model, TorchModel)
    for _ in range(3):
        model.learn_many(BATCH, LABELS)
    return model


def logits(model: TorchModel) -> np.ndarray:
    p = model.predict_proba_many(BATCH)
    return np.log(p / (1 - p)) - float(model.net.bias.detach())


def test_keep_scales_what_logreg_learnt_and_restarts_its_steps() -> None:
    model = learnt("logreg")
    half = model.clone()
    half.forget(0.5)
    assert np.allclose(logits(half), 0.5 * logits(model), atol=1e-5)
    assert float(half.net.bias.detach()) == float(model.net.bias.detach())  # calibration stays
    assert float(half._acc_table.max()) == pytest.approx(half.config.accumulator_init)
    fresh = model.clone()
    fresh.forget(0.0)
    assert np.allclose(logits(fresh), 0.0, atol=1e-6)  # everyone scores the bias
    fresh.learn_many(BATCH, LABELS)  # full-size steps again: it separates at once
    p = fresh.predict_proba_many(BATCH)
    assert p[LABELS == 1].mean() > p[LABELS == 0].mean() + 0.05


def test_a_forgotten_fm_keeps_latent_vectors_that_can_learn() -> None:
    model = learnt("fm")
    model.forget(0.0)
    assert float(model.net.table[:, 0].abs().max()) == 0.0  # linear weights gone
    assert isinstance(model.config, FMConfig)
    assert float(model.net.table[:, 1:].std()) == pytest.approx(model.config.init_std, rel=0.1)
    before = model.net.table[:, 1:].clone()
    model.learn_many(BATCH, LABELS)
    assert not bool((model.net.table[:, 1:] == before).all())


def test_a_river_model_forgets_everything() -> None:
    model = build_model("river_logreg")
    model.learn_many(BATCH, LABELS)
    model.forget(0.3)
    prior = build_model("river_logreg").predict_proba_many(BATCH[:4])
    assert np.allclose(model.predict_proba_many(BATCH[:4]), prior)
    model.forget(1.0)  # keep everything: nothing changes


@pytest.mark.parametrize("keep", [-0.1, 1.5, float("nan")])
def test_keep_outside_zero_one_is_refused(keep: float) -> None:
    with pytest.raises(HyperparameterError, match="keep must be in"):
        learnt("logreg").forget(keep)
