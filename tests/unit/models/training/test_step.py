"""Test-then-train: both models score before anyone learns; only the challenger learns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from models import Model, build_model
from models.evaluation.metrics import log_losses
from models.gate.decision import GateConfig, decide
from models.training.replay import Reservoir
from models.training.step import Evaluation, LabeledExample, StepResult, step
from tests.unit.models.training.factories import batches, make_example, make_examples


def trained_fm(seed: int = 0) -> Model:
    model = build_model("fm", hash_bits=12, seed=seed)
    for batch in batches(make_examples(1_024, seed=100 + seed), 256):
        model.learn_many([e.features for e in batch], [e.label for e in batch])
    return model


def scores(model: Model, examples: list) -> np.ndarray:
    return model.predict_proba_many([e.features for e in examples])


def test_champion_is_never_mutated_by_steps() -> None:
    champion = trained_fm()
    challenger = champion.clone()
    probe = make_examples(200, seed=5)
    before, blob = scores(champion, probe), champion.save()
    for batch in batches(make_examples(768, seed=6), 256):
        step(champion, challenger, batch, per_user_cap=4, reservoir=Reservoir(100), replay_ratio=1)
    np.testing.assert_array_equal(scores(champion, probe), before)
    assert champion.save() == blob
    assert not np.array_equal(scores(challenger, probe), before)  # while the challenger moved


def test_losses_are_taken_before_the_challenger_learns_the_batch() -> None:
    champion = trained_fm()
    challenger = champion.clone()
    step(champion, challenger, make_examples(256, seed=7))  # the two now differ
    reference = challenger.clone()
    batch = make_examples(256, seed=8)
    result = step(champion, challenger, batch)

    labels = np.array([e.label for e in batch], dtype=np.float64)
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_array_equal(result.challenger_scores, scores(reference, batch))
    np.testing.assert_array_equal(
        result.challenger_losses, log_losses(labels, scores(reference, batch))
    )
    np.testing.assert_array_equal(result.champion_scores, scores(champion, batch))
    assert not np.array_equal(result.champion_losses, result.challenger_losses)
    # ...and then it learnt exactly this batch, once.
    assert result.train_loss == reference.learn_many([e.features for e in batch], labels)
    np.testing.assert_array_equal(scores(challenger, batch), scores(reference, batch))


def test_capped_examples_are_evaluated_but_not_learnt() -> None:
    champion = build_model("fm", hash_bits=12)
    challenger, reference = champion.clone(), champion.clone()
    batch = [make_example(i % 2, user_id="bot") for i in range(40)]
    batch += [make_example(1, user_id=f"u{i}") for i in range(10)]
    result = step(champion, challenger, batch, per_user_cap=5)
    assert (result.n, result.n_trained, result.n_capped, result.n_replayed) == (50, 15, 35, 0)
    kept = batch[:5] + batch[40:]
    reference.learn_many([e.features for e in kept], [e.label for e in kept])
    np.testing.assert_array_equal(scores(challenger, batch), scores(reference, batch))


def test_replayed_examples_are_learnt_never_evaluated() -> None:
    champion = build_model("fm", hash_bits=12)
    challenger = champion.clone()
    reservoir: Reservoir[LabeledExample] = Reservoir(capacity=1_000, seed=3)
    first = step(champion, challenger, make_examples(100, seed=1), reservoir=reservoir,
                 replay_ratio=0.3)
    assert (first.n_trained, first.n_replayed, len(reservoir)) == (100, 0, 100)
    second = step(champion, challenger, make_examples(100, seed=2), reservoir=reservoir,
                  replay_ratio=0.3)
    assert (second.n, second.n_trained, second.n_replayed) == (100, 130, 30)
    assert reservoir.seen == 200


def test_the_champion_cannot_be_its_own_challenger() -> None:
    champion = build_model("logreg", hash_bits=8)
    with pytest.raises(ValueError, match="replica"):
        step(champion, champion, make_examples(4))


def test_an_empty_batch_is_a_no_op() -> None:
    champion = build_model("logreg", hash_bits=8)
    result = step(champion, champion.clone(), [])
    assert (result.n, result.n_trained, result.train_loss) == (0, 0, 0.0)


def test_plain_labeled_examples_work_like_kafka_messages() -> None:
    champion = build_model("logreg", hash_bits=8)
    messages = make_examples(64, seed=4)
    plain = [LabeledExample(e.prediction_id, e.label, e.features) for e in messages]
    a = step(champion, champion.clone(), messages)
    b = step(champion, champion.clone(), plain)
    np.testing.assert_array_equal(a.challenger_losses, b.challenger_losses)


def result_of(champion: list[float], challenger: list[float]) -> StepResult:
    n = len(champion)
    return StepResult(np.array(champion), np.array(challenger), np.full(n, 0.1),
                      np.full(n, 0.2), np.arange(n) % 2.0)


def test_evaluation_pairs_losses_per_example_across_batches() -> None:
    ev = Evaluation()
    assert ev.n == 0 and np.isnan(ev.champion_mean)
    ev.add(result_of([1.0, 2.0], [0.5, 1.5]))
    ev.add(result_of([], []))
    ev.add(result_of([3.0], [2.0]))
    paired = ev.paired()
    assert (ev.n, ev.batches) == (3, 2)
    assert paired.champion_losses.tolist() == [1.0, 2.0, 3.0]
    assert paired.challenger_losses.tolist() == [0.5, 1.5, 2.0]
    assert paired.labels.tolist() == [0.0, 1.0, 0.0]
    assert paired.challenger_scores.tolist() == [0.2] * 3
    assert (ev.champion_mean, ev.challenger_mean) == (2.0, 4.0 / 3)
    ev.reset()
    assert ev.n == 0 and ev.paired().labels.size == 0


def test_evaluation_window_drops_the_oldest_batches_past_its_bound() -> None:
    ev = Evaluation(max_examples=5)
    for value in range(4):
        ev.add(result_of([float(value)] * 2, [0.0] * 2))
    assert ev.n == 4 and ev.paired().champion_losses.tolist() == [2.0, 2.0, 3.0, 3.0]


def test_the_evaluation_window_is_the_gates_input_as_it_is() -> None:
    champion = trained_fm()
    challenger = champion.clone()
    evaluation = Evaluation()
    for batch in batches(make_examples(2_048, seed=9), 512):
        evaluation.add(step(champion, challenger, batch))
    decision = decide(evaluation.paired(), None, GateConfig(min_examples=1_024))
    assert decision.figures["n"] == 2_048


def test_a_challenger_scoring_nan_gets_the_worst_finite_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    champion = build_model("logreg", hash_bits=8)
    challenger = champion.clone()
    monkeypatch.setattr(challenger, "predict_proba_many", lambda b: np.full(len(b), np.nan))
    evaluation = Evaluation()
    evaluation.add(step(champion, challenger, make_examples(8)))
    paired = evaluation.paired()  # the gate refuses non-finite losses; these are finite
    assert np.isnan(paired.challenger_scores).all()
    np.testing.assert_allclose(paired.challenger_losses, -np.log(1e-7))


def test_logged_propensities_reach_the_gate_and_plain_examples_carry_none() -> None:
    @dataclass(frozen=True)
    class Served:  # what the joiner emits: an example with its logged propensity
        prediction_id: str
        label: int
        features: dict
        propensity: float | None

    champion = build_model("logreg", hash_bits=8)
    explored = [Served(f"p{i}", i % 2, {"c": str(i % 2)}, 0.05 if i % 3 else None)
                for i in range(6)]
    ev = Evaluation()
    ev.add(step(champion, champion.clone(), [LabeledExample("q", 1, {"c": "1"})]))
    ev.add(step(champion, champion.clone(), explored))
    p = ev.paired().propensities
    assert p is not None
    assert np.array_equal(p, [np.nan, np.nan, 0.05, 0.05, np.nan, 0.05, 0.05], equal_nan=True)
    plain = step(champion, champion.clone(), [LabeledExample("q", 1, {"c": "1"})])
    assert plain.propensities is None


def test_ips_clip_weights_explored_examples_by_their_clipped_inverse_propensity() -> None:
    @dataclass(frozen=True)
    class Served:
        prediction_id: str
        label: int
        features: dict
        propensity: float | None

    # The ranking showed "shown" always (propensity 1, never clicked) and "explored" rarely
    # (propensity 0.02, clicked): unweighted, both look alike in count; weighted, the rare
    # one stands for the fifty like it the ranking did not show.
    batch = [Served(f"s{i}", 0, {"c": "shown"}, 1.0) for i in range(60)]
    batch += [Served(f"e{i}", 1, {"c": "explored"}, 0.02) for i in range(4)]
    champion = build_model("logreg", hash_bits=8)
    plain, weighted = champion.clone(), champion.clone()
    step(champion, plain, batch)
    step(champion, weighted, batch, ips_clip=10.0)
    probe = [{"c": "explored"}]
    assert weighted.predict_proba_many(probe)[0] > plain.predict_proba_many(probe)[0]

