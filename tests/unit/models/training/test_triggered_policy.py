"""TriggeredPolicy: learns only on a firing, keeps the gate's evidence prequential."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from models import Model, build_model
from models.gate.decision import GateConfig, decide
from models.training.policies import TrainingPolicy
from models.training.step import Evaluation, StepResult
from models.training.triggered import TriggeredPolicy
from models.triggers import Firing, TriggerConfig, Triggers
from streams.schemas import Example
from tests.unit.models.training.factories import DRIFTED_CLICK_RATE, batches, make_examples

FM = {"hash_bits": 12, "seed": 0}
OFF = {"volume_every_labels": 0, "performance_tolerance": 0, "drift_detector": "none"}


def triggers(**cfg: object) -> Triggers:
    return Triggers.from_config({**OFF, **cfg})


def trained(examples: list[Example]) -> Model:
    model = build_model("fm", **FM)
    for batch in batches(examples, 512):
        model.learn_many([e.features for e in batch], [e.label for e in batch])
    return model


def same_scores(a: Model, b: Model, examples: list[Example]) -> bool:
    feats = [e.features for e in examples]
    return bool((a.predict_proba_many(feats) == b.predict_proba_many(feats)).all())


def test_it_is_a_training_policy_recorded_as_stateful() -> None:
    policy: TrainingPolicy = TriggeredPolicy(build_model("fm", **FM))
    assert policy.mode == "stateful"


def test_without_a_firing_the_challenger_never_learns_and_the_gate_is_never_due() -> None:
    champion = trained(make_examples(2_048, seed=1))
    policy = TriggeredPolicy(champion, triggers(volume_every_labels=100_000))
    results = [policy.process(champion, b, now_ms=i) for i, b in
               enumerate(batches(make_examples(4_096, seed=2), 512))]
    assert not any(r.retrained or r.gate_due or r.fired or r.n_trained for r in results)
    assert same_scores(policy.challenger, champion, make_examples(200, seed=3))
    assert len(policy.buffer) == 4_096 and policy.trainings == 0


def test_a_firing_trains_on_the_buffer_after_scoring_and_the_gate_waits_for_fresh_evidence(
) -> None:
    champion = trained(make_examples(2_048, seed=1))
    policy = TriggeredPolicy(champion, triggers(volume_every_labels=1_000), min_evidence=1_024)
    stream = batches(make_examples(5_120, seed=2), 512)
    results: list[StepResult] = []
    for i, batch in enumerate(stream):
        before = policy.challenger.predict_proba_many([e.features for e in batch])
        results.append(policy.process(champion, batch, now_ms=i))
        # Test-then-train: the figures are the challenger's before it learnt anything of it.
        np.testing.assert_array_equal(results[-1].challenger_scores, before)
    # Volume fires at 1,024 labels (batch 1): the challenger learns batches 0-1. Batches 2-3
    # are the gate's evidence (1,024 scored by the trained challenger): due at 3. Volume fired
    # again at 3 (1,024 since the training), held until the gate was asked: learnt at 4.
    assert [len(r.fired) for r in results] == [0, 1, 0, 1, 0, 0, 1, 0, 0, 1]
    assert [r.retrained for r in results] == [False, True, False, False, True,
                                              False, False, True, False, False]
    assert [r.n_trained for r in results] == [0, 1_024, 0, 0, 1_536, 0, 0, 1_536, 0, 0]
    assert [r.gate_due for r in results] == [False, False, False, True, False,
                                             False, True, False, False, True]
    assert policy.trainings == 3 and policy.total_trained == 4_096 == 8 * 512
    assert len(policy.buffer) == 1_024 and policy.held  # batches 8-9 wait for the next one


def test_nothing_is_learnt_twice() -> None:
    champion = build_model("fm", **FM)
    policy = TriggeredPolicy(champion, triggers(volume_every_labels=700), min_evidence=300)
    learnt: list[str] = []
    scored: set[str] = set()
    original = policy.train

    def spy(now_ms: int) -> float:
        learnt.extend(e.prediction_id for e in policy.buffer)
        assert {e.prediction_id for e in policy.buffer} <= scored
        return original(now_ms)

    policy.train = spy  # type: ignore[method-assign]
    for i, batch in enumerate(batches(make_examples(6_000, seed=4), 250)):
        scored |= {e.prediction_id for e in batch}  # fed: process scores it before training
        policy.process(champion, batch, now_ms=i)
    assert len(learnt) == len(set(learnt)) == policy.total_trained > 0


def test_the_buffer_is_bounded_and_counts_what_it_dropped() -> None:
    champion = build_model("fm", **FM)
    policy = TriggeredPolicy(champion, triggers(), buffer_max=1_000)
    for batch in batches(make_examples(2_560, seed=5), 512):
        policy.process(champion, batch, now_ms=0)
    assert len(policy.buffer) == 1_000 and policy.dropped == 1_560
    assert policy.buffer[-1].prediction_id == "s5-2559"


def test_a_new_champion_restarts_the_challenger_and_keeps_the_buffer() -> None:
    champion = trained(make_examples(2_048, seed=1))
    policy = TriggeredPolicy(champion, triggers(volume_every_labels=512), min_evidence=512)
    for i, batch in enumerate(batches(make_examples(1_024, seed=6), 512)):
        result = policy.process(champion, batch, now_ms=i)
    assert result.gate_due and len(policy.buffer) == 512 and policy.held
    assert not same_scores(policy.challenger, champion, make_examples(100, seed=7))
    policy.on_new_champion(champion)  # the gate rejected it
    assert same_scores(policy.challenger, champion, make_examples(100, seed=7))
    assert len(policy.buffer) == 512 and not policy.awaiting_evidence
    # The held firing trains the new replica at the next batch, on what it never learnt.
    result = policy.process(champion, make_examples(512, seed=8), now_ms=3)
    assert result.retrained and result.n_trained == 1_024


def test_the_triggers_follow_the_champion_not_the_rejections() -> None:
    champion = trained(make_examples(2_048, seed=1))
    policy = TriggeredPolicy(champion, triggers(performance_tolerance=0.1,
                                                performance_window=512,
                                                performance_reference=1_024))
    perf = policy.triggers.triggers[0]
    for i, batch in enumerate(batches(make_examples(1_536, seed=2), 512)):
        policy.process(champion, batch, now_ms=i)
    reference = perf.reference  # type: ignore[attr-defined]
    assert reference is not None
    policy.on_new_champion(champion)  # a rejection: the same champion serves on
    policy.process(champion, make_examples(512, seed=3), now_ms=4)
    assert perf.reference == reference  # type: ignore[attr-defined]
    promoted = policy.challenger
    policy.on_new_champion(promoted)  # a promotion: another model's losses from now on
    policy.held = [Firing("performance", "old champion"), Firing("time", "t")]
    policy.evidence = 0  # keep them held through the next batch
    policy.process(promoted, make_examples(512, seed=4), now_ms=5)
    assert perf.reference is None  # type: ignore[attr-defined]  # 512 of 1,024 so far
    assert policy.held == [Firing("time", "t")]  # the old champion's firing is gone


def test_a_drift_fires_the_drift_trigger_and_the_gate_promotes_the_adapted_challenger() -> None:
    champion = trained(make_examples(4_096, seed=1))  # learnt "games is clicked"
    policy = TriggeredPolicy(champion, Triggers.from_config(
        TriggerConfig(volume_every_labels=0, performance_tolerance=0.1,
                      performance_window=512, performance_reference=2_048)),
        min_evidence=1_024, per_user_cap=32, epochs=2)
    stream = (batches(make_examples(4_096, seed=8), 512)
              + batches(make_examples(4_096, seed=9, rates=DRIFTED_CLICK_RATE), 512))
    evaluation, decisions, fired_at = Evaluation(), [], []
    for i, batch in enumerate(stream):
        result = policy.process(champion, batch, now_ms=i)
        evaluation.add(result)
        if result.retrained:
            evaluation.reset()
        fired_at.extend((i, f.kind) for f in result.fired)
        if result.gate_due:
            decision = decide(evaluation.paired(), None, GateConfig(min_examples=1_024))
            decisions.append((i, decision.outcome))
            if decision.outcome == "promote":
                champion = policy.challenger
                policy.on_new_champion(champion)
            elif decision.outcome == "reject":
                policy.on_new_champion(champion)
            evaluation.reset()
    # Quiet before the drift (batch 8); the drift trigger in the first batch after it, the
    # performance one within two (its window of 512 needs one whole drifted batch).
    assert [k for i, k in fired_at if i < 8] == []
    assert (8, "drift") in fired_at and (8, "performance") in fired_at
    # Trained at batch 8 on everything buffered, evidence from batches 9-10, promoted at 10.
    assert decisions[0] == (10, "promote")
    assert policy.counts["drift"] >= 1


def test_state_round_trips_the_counters_and_the_triggers() -> None:
    champion = build_model("fm", **FM)
    cfg = {"volume_every_labels": 512, "time_every_ms": 10_000, "performance_tolerance": 0.1,
           "performance_window": 256, "performance_reference": 600}
    policy = TriggeredPolicy(champion, triggers(**cfg), min_evidence=10_000)
    for i, batch in enumerate(batches(make_examples(2_148, seed=10), 512)):
        policy.process(champion, batch, now_ms=1_000 * i)
    again = TriggeredPolicy(champion, triggers(**cfg), min_evidence=10_000)
    again.load_state(orjson.loads(orjson.dumps(policy.state())))  # as a checkpoint keeps it
    assert again.state() == policy.state()
    assert again.awaiting_evidence and again.counts["volume"] == 2
    assert again.held == [Firing("volume", "volume: 512 labels since the last training "
                                           "(every 512)")]
    volume, clock, perf = again.triggers.triggers
    assert volume.since == 3 * 512 + 100 and clock.last_ms == 0  # type: ignore[attr-defined]
    assert perf.reference == policy.triggers.triggers[2].reference  # type: ignore[attr-defined]
    # A trigger configured differently since does not take another kind's state.
    other = TriggeredPolicy(champion, triggers(time_every_ms=5), min_evidence=10_000)
    other.load_state(policy.state())
    assert other.triggers.triggers[0].last_ms is None  # type: ignore[attr-defined]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        TriggeredPolicy(build_model("fm", **FM), min_evidence=0)
