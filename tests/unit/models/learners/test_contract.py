"""The contract every model the factory ships must honour (river's ``checks`` idea).

Each test runs once per name in ``MODEL_NAMES``: adding a model to the factory enrols it here.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from models import MODEL_NAMES, BatchError, BlobError, Model, build_model, load_model
from models.evaluation import log_loss
from tests.unit.models.factories import CLICK_RATE, make_batch, make_features, make_stream

PRIOR = 0.05
TORCH = ("logreg", "fm", "deepfm")


@pytest.fixture(params=MODEL_NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def trained(name: str, n_batches: int = 4, seed: int = 0, **hyperparams: object) -> Model:
    """A model after a few batches of the category stream."""
    model = build_model(name, seed=seed, prior_ctr=PRIOR, **hyperparams)
    for batch, labels in make_stream(n_batches, 64, seed=1):
        model.learn_many(batch, labels)
    return model


def assert_probabilities(scores: np.ndarray, n: int) -> None:
    assert scores.dtype == np.float64
    assert scores.shape == (n,)
    assert np.all(np.isfinite(scores))
    assert np.all((scores >= 0.0) & (scores <= 1.0))


def test_cold_model_scores_the_prior(name: str) -> None:
    scores = build_model(name, prior_ctr=PRIOR).predict_proba_many(make_batch(16))
    assert_probabilities(scores, 16)
    np.testing.assert_allclose(scores, PRIOR, atol=0.005)


def test_save_load_round_trip_scores_and_learns_identically(name: str) -> None:
    model = trained(name)
    restored = load_model(model.save())
    probe = make_batch(50, seed=7)
    scores = model.predict_proba_many(probe)
    np.testing.assert_array_equal(restored.predict_proba_many(probe), scores)
    assert restored.describe() == model.describe()
    # Optimiser and encoder state travel too: both keep learning the same way.
    batch, labels = make_stream(1, 64, seed=8)[0]
    assert restored.learn_many(batch, labels) == model.learn_many(batch, labels)
    scores = model.predict_proba_many(probe)
    np.testing.assert_array_equal(restored.predict_proba_many(probe), scores)


def test_scoring_does_not_change_the_model(name: str) -> None:
    model = trained(name, hash_bits=12)
    blob = model.save()
    model.predict_proba_many(make_batch(50, seed=7) + [make_features(new_key=1.5)])
    assert model.save() == blob


def test_learn_many_does_not_mutate_its_input(name: str) -> None:
    model = build_model(name)
    batch, labels = make_stream(1, 64, seed=2)[0]
    batch_before, labels_before = copy.deepcopy(batch), labels.copy()
    label_list = labels.tolist()
    model.learn_many(batch, labels)
    model.learn_many(batch, label_list)
    assert batch == batch_before
    np.testing.assert_array_equal(labels, labels_before)
    assert label_list == labels_before.tolist()


def test_unseen_and_missing_features_score_sensibly(name: str) -> None:
    model = trained(name)
    probe = [
        {},
        make_features(user_id="never-seen-user", item_id="never-seen-item"),
        make_features(item_category="brand-new-category", price=None, hour=None),
        make_features(brand_new_key="x", another_new_key=3.5, flag=False),
        make_features(price=math.nan, hour=10**12),
    ]
    assert_probabilities(model.predict_proba_many(probe), len(probe))
    model.learn_many(probe, [0, 1, 0, 1, 0])
    assert_probabilities(model.predict_proba_many(probe), len(probe))


def test_same_seed_gives_identical_scores(name: str) -> None:
    probe = make_batch(50, seed=7)
    first = trained(name, seed=3).predict_proba_many(probe)
    second = trained(name, seed=3).predict_proba_many(probe)
    np.testing.assert_array_equal(first, second)


def test_clone_is_an_independent_replica(name: str) -> None:
    model = trained(name)
    probe = make_batch(50, seed=7)
    before = model.predict_proba_many(probe)
    replica = model.clone()
    np.testing.assert_array_equal(replica.predict_proba_many(probe), before)
    for batch, labels in make_stream(3, 64, seed=5):
        replica.learn_many(batch, labels)
    np.testing.assert_array_equal(model.predict_proba_many(probe), before)
    assert not np.array_equal(replica.predict_proba_many(probe), before)


def test_learns_a_categorical_signal(name: str) -> None:
    model = build_model(name, prior_ctr=PRIOR, seed=0)
    stream = make_stream(30, 128, seed=11)
    first_batch, first_labels = stream[0]
    # The returned loss is progressive: each example's loss before the update that learns it.
    # Learnt in one update (a torch model with a minibatch as large), that is the prior's.
    prior_first = log_loss(first_labels.astype(np.float64), np.full(len(first_batch), PRIOR))
    one_step = build_model(name, prior_ctr=PRIOR, seed=0,
                           **({"minibatch": len(first_batch)} if name in TORCH else {}))
    if name in TORCH:
        assert one_step.learn_many(first_batch, first_labels) == pytest.approx(prior_first,
                                                                               rel=1e-3)
        # In steps, later steps are scored after earlier ones learnt (the bias among them,
        # set from the first step's click rate): over the first batches, below the prior's.
        first = [model.learn_many(b, y) for b, y in stream[:5]]
        prior = [log_loss(y.astype(np.float64), np.full(len(b), PRIOR)) for b, y in stream[:5]]
        assert sum(first) < sum(prior)
    else:
        assert model.learn_many(first_batch, first_labels) == pytest.approx(prior_first, rel=1e-3)
    for batch, labels in stream[5 if name in TORCH else 1:]:
        assert math.isfinite(model.learn_many(batch, labels))
    held_out, labels = make_stream(1, 2_000, seed=12)[0]
    y = labels.astype(np.float64)
    model_loss = log_loss(y, model.predict_proba_many(held_out))
    base_rate = float(np.mean(list(CLICK_RATE.values())))
    constant_loss = log_loss(y, np.full(y.size, base_rate))  # the best a constant can do
    # Knowing the category is worth about 0.15 nats here; ask for most of it.
    assert model_loss < constant_loss - 0.08, (model_loss, constant_loss)


def test_describe_is_json_and_rebuilds_the_configuration(name: str) -> None:
    model = trained(name, hash_bits=12, seed=4)
    described = json.loads(json.dumps(model.describe()))
    assert described["model"] == name
    fresh = build_model(name, **described["hyperparams"])
    assert fresh.describe()["hyperparams"] == described["hyperparams"]


def test_empty_batch_is_a_no_op(name: str) -> None:
    model = build_model(name)
    assert model.predict_proba_many([]).shape == (0,)
    assert model.learn_many([], []) == 0.0


@pytest.mark.parametrize(
    ("labels", "match"), [([0, 1], "3 feature dicts but 2 labels"), ([0, 1, 2], "0 or 1")]
)
def test_bad_labels_are_refused(name: str, labels: list[int], match: str) -> None:
    with pytest.raises(BatchError, match=match):
        build_model(name).learn_many(make_batch(3), labels)


def test_corrupt_blob_is_refused(name: str) -> None:
    blob = build_model(name, hash_bits=10).save()
    with pytest.raises(BlobError, match="checksum"):
        load_model(blob[:-1])
    with pytest.raises(BlobError, match="magic"):
        load_model(b"XXXX" + blob[4:])


def test_optional_methods_raise_not_implemented_or_work(name: str) -> None:
    model = trained(name)
    try:
        vectors = model.embed_many(make_batch(5))
    except NotImplementedError:
        return
    assert vectors.shape[0] == 5 and np.all(np.isfinite(vectors))


def test_weights_of_one_change_nothing_and_heavier_examples_count_more(name: str) -> None:
    plain, weighted = trained(name), trained(name)
    batch, labels = next(iter(make_stream(1, 64, seed=5)))
    plain.learn_many(batch, labels)
    weighted.learn_many(batch, labels, weights=np.full(len(batch), 3.0))  # scaled to mean 1
    probe = make_batch(32, seed=9)
    assert np.allclose(plain.predict_proba_many(probe), weighted.predict_proba_many(probe))
    # One feature, half clicks: the weights decide which way the model leans.
    x, y = [{"f": "same"}] * 64, [1, 0] * 32
    clicks_count = build_model(name, seed=0, prior_ctr=0.5)
    non_clicks_count = build_model(name, seed=0, prior_ctr=0.5)
    for _ in range(5):
        clicks_count.learn_many(x, y, weights=[4.0, 1.0] * 32)
        non_clicks_count.learn_many(x, y, weights=[1.0, 4.0] * 32)
    up, down = (float(m.predict_proba_many([{"f": "same"}])[0])
                for m in (clicks_count, non_clicks_count))
    assert up > 0.5 > down


@pytest.mark.parametrize("weights", [[-1.0, 1.0], [float("nan"), 1.0], [1.0]])
def test_bad_weights_are_refused(name: str, weights: list[float]) -> None:
    with pytest.raises(BatchError, match="weights"):
        build_model(name).learn_many(make_batch(2), [0, 1], weights=weights)


def test_uncertainty_is_larger_for_what_the_model_has_not_seen(name: str) -> None:
    model = build_model(name, seed=0)
    for _ in range(10):
        model.learn_many([{"f": "seen"}] * 64, [1, 0, 0, 0] * 16)
    try:
        std = model.logit_std_many([{"f": "seen"}, {"f": "new"}, {}])
    except NotImplementedError:
        assert name not in TORCH  # river keeps no measure of it
        return
    assert std.shape == (3,) and np.all(np.isfinite(std)) and np.all(std >= 0)
    assert std[1] > 2 * std[0]
