"""The two training modes: stateful fine-tuning of a replica, stateless retraining on a window."""

from __future__ import annotations

import numpy as np
import pytest

from models import HyperparameterError, Model, build_model
from models.evaluation.metrics import log_losses
from models.training.policies import (
    StatefulPolicy,
    StatelessPolicy,
    TrainingPolicy,
    train_from_scratch,
)
from models.training.step import Evaluation
from streams.schemas import Example
from tests.unit.models.training.factories import (
    DRIFTED_CLICK_RATE,
    batches,
    make_example,
    make_examples,
)

FM = {"hash_bits": 12, "seed": 0}


def trained(examples: list[Example], **hyperparams: object) -> Model:
    model = build_model("fm", **{**FM, **hyperparams})
    for batch in batches(examples, 512):
        model.learn_many([e.features for e in batch], [e.label for e in batch])
    return model


def scores(model: Model, examples: list[Example]) -> np.ndarray:
    return model.predict_proba_many([e.features for e in examples])


def mean_loss(model: Model, examples: list[Example]) -> float:
    labels = np.array([e.label for e in examples], dtype=np.float64)
    return float(log_losses(labels, scores(model, examples)).mean())


def run(policy: TrainingPolicy, champion: Model, stream: list[list[Example]]) -> Evaluation:
    """The mode-agnostic loop the Kafka adapter runs, minus Kafka."""
    evaluation = Evaluation()
    for i, batch in enumerate(stream):
        result = policy.process(champion, batch, now_ms=1_000 * i)
        if result.retrained:
            evaluation.reset()
        evaluation.add(result)
    return evaluation


def test_stateful_challenger_beats_a_frozen_champion_after_a_drift() -> None:
    champion = trained(make_examples(4_096, seed=1))  # learnt "games is clicked"
    drifted = batches(make_examples(4_096, seed=2, rates=DRIFTED_CLICK_RATE), 512)
    policy = StatefulPolicy(champion, per_user_cap=32)
    per_batch = [policy.process(champion, batch, now_ms=0) for batch in drifted]

    # Same start: the first batch is scored by two identical models.
    np.testing.assert_array_equal(per_batch[0].champion_losses, per_batch[0].challenger_losses)
    # From the third batch on the challenger has adapted: at least 40 % lower loss each batch.
    for result in per_batch[2:]:
        assert result.challenger_losses.mean() < 0.6 * result.champion_losses.mean()
    evaluation = Evaluation()
    for result in per_batch:
        evaluation.add(result)
    assert evaluation.n == 4_096
    # Pinned (deterministic) with the default encoding: user_id crossed with every field.
    assert evaluation.champion_mean == pytest.approx(0.667, abs=0.01)
    assert evaluation.challenger_mean == pytest.approx(0.375, abs=0.01)


def test_replay_limits_forgetting_of_the_old_regime() -> None:
    old = make_examples(4_096, seed=1)
    new = make_examples(8_192, seed=3, rates={"books": 0.3, "shoes": 0.3, "games": 0.0,
                                               "toys": 0.3})
    probe = make_examples(2_000, seed=9)  # the old regime
    losses = {}
    for ratio in (0.0, 1.0):
        cold = build_model("fm", **FM)
        policy = StatefulPolicy(cold, replay_ratio=ratio, replay_capacity=4_096, seed=0)
        run(policy, cold, batches(old, 512) + batches(new, 512))
        losses[ratio] = mean_loss(policy.challenger, probe)
    assert losses[0.0] == pytest.approx(0.699, abs=0.01)
    assert losses[1.0] == pytest.approx(0.520, abs=0.01)  # 26 % less forgotten


def test_stateful_challenger_adopts_a_new_champion() -> None:
    first = trained(make_examples(1_024, seed=1))
    policy = StatefulPolicy(first)
    run(policy, first, batches(make_examples(1_024, seed=2), 256))
    probe = make_examples(100, seed=3)
    promoted = policy.challenger
    policy.on_new_champion(promoted)
    assert policy.challenger is not promoted
    np.testing.assert_array_equal(scores(policy.challenger, probe), scores(promoted, probe))
    before = scores(promoted, probe)
    run(policy, promoted, batches(make_examples(512, seed=4), 256))
    np.testing.assert_array_equal(scores(promoted, probe), before)  # the new champion is frozen
    assert not np.array_equal(scores(policy.challenger, probe), before)


def test_both_policies_resume_from_a_restored_challenger() -> None:
    champion = build_model("fm", **FM)
    saved = trained(make_examples(512, seed=1))
    stateful = StatefulPolicy(champion, challenger=saved)
    stateless = StatelessPolicy(champion, "fm", FM, challenger=saved)
    assert stateful.challenger is saved and stateful.mode == "stateful"
    assert stateless.challenger is saved and stateless.mode == "stateless"


def test_stateless_retrain_uses_only_the_window() -> None:
    champion = build_model("fm", **FM)
    stream = make_examples(2_500, seed=5)
    policy = StatelessPolicy(champion, "fm", FM, window=1_000, retrain_every_examples=2_500,
                             epochs=2, batch_size=256, seed=11)
    results = [policy.process(champion, batch, now_ms=0) for batch in batches(stream, 500)]
    assert [r.retrained for r in results] == [False] * 4 + [True]
    assert results[-1].n_trained == 1_000 and policy.retrains == 1
    assert list(policy.window) == stream[1_500:]

    expected = build_model("fm", **FM)
    loss = train_from_scratch(expected, stream[1_500:], batch_size=256, epochs=2, seed=11)
    probe = make_examples(200, seed=6)
    np.testing.assert_array_equal(scores(policy.challenger, probe), scores(expected, probe))
    assert results[-1].train_loss == loss


def test_stateless_challenger_is_a_scored_only_replica_until_the_first_retrain() -> None:
    champion = trained(make_examples(1_024, seed=1))
    policy = StatelessPolicy(champion, "fm", FM, window=10_000, retrain_every_examples=1_000)
    first = policy.process(champion, make_examples(600, seed=2), now_ms=0)
    assert not first.retrained and first.n_trained == 0
    np.testing.assert_array_equal(first.champion_losses, first.challenger_losses)
    before = policy.challenger
    second = policy.process(champion, make_examples(600, seed=3), now_ms=0)
    # The retrain happens after the batch was scored by the previous challenger.
    assert second.retrained and policy.challenger is not before
    np.testing.assert_array_equal(second.champion_losses, second.challenger_losses)
    third = policy.process(champion, make_examples(600, seed=4), now_ms=0)
    assert not np.array_equal(third.champion_losses, third.challenger_losses)


def test_stateless_schedule_by_time_with_the_callers_clock() -> None:
    champion = build_model("logreg", hash_bits=8)
    policy = StatelessPolicy(champion, "logreg", {"hash_bits": 8}, window=100,
                             retrain_every_ms=1_000)
    due = [policy.process(champion, make_examples(5, seed=t), now_ms=t).retrained
           for t in (5_000, 5_500, 5_999, 6_000, 6_999, 7_000)]
    assert due == [False, False, False, True, False, True]


def test_stateless_caps_users_before_the_window_and_adopts_champions() -> None:
    champion = build_model("logreg", hash_bits=8)
    policy = StatelessPolicy(champion, "logreg", {"hash_bits": 8}, window=100, per_user_cap=2)
    result = policy.process(champion, [make_example(user_id="bot") for _ in range(10)], now_ms=0)
    assert result.n == 10 and result.n_capped == 8 and len(policy.window) == 2
    promoted = build_model("logreg", hash_bits=8, prior_ctr=0.2)
    policy.on_new_champion(promoted)
    probe = make_examples(10)
    np.testing.assert_array_equal(scores(policy.challenger, probe), scores(promoted, probe))
    assert policy.mode == "stateless" and len(policy.window) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"window": 0}, ValueError),
        ({"epochs": 0}, ValueError),
        ({"retrain_every_ms": 0}, ValueError),
        ({"name": "svm"}, HyperparameterError),
        ({"hyperparams": {"factors": 4}}, HyperparameterError),  # logreg has no factors
    ],
)
def test_stateless_refuses_a_bad_configuration_up_front(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    args: dict[str, object] = {"name": "logreg", "hyperparams": {}, **kwargs}
    with pytest.raises(error):
        StatelessPolicy(build_model("logreg", hash_bits=8), **args)  # type: ignore[arg-type]
