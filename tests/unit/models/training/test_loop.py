"""The trainer's decision loop without I/O: gate cadence, promotion, rejection, stale sanity set."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models import Model, build_model
from models.drift import LossDriftDetector
from models.gate.decision import GateConfig
from models.training.loop import Learner
from models.training.policies import StatefulPolicy
from models.training.triggered import TriggeredPolicy
from models.triggers import TriggerConfig, Triggers
from streams.schemas import Example
from tests.unit.models.training.factories import DRIFTED_CLICK_RATE, batches, make_examples

FM = {"hash_bits": 12, "seed": 0}
GATE = GateConfig(min_examples=1024)


def trained(examples: list[Example]) -> Model:
    model = build_model("fm", **FM)
    for batch in batches(examples, 512):
        model.learn_many([e.features for e in batch], [e.label for e in batch])
    return model


def feed(learner: Learner, stream: list[list[Example]]) -> list[str]:
    out = []
    for i, batch in enumerate(stream):
        decision = learner.step(batch, now_ms=1_000 * i)
        out.append("-" if decision is None else f"{decision.outcome}:{decision.rule}")
    return out


def test_gate_every_sets_the_cadence_and_min_examples_holds_the_first() -> None:
    champion = trained(make_examples(4_096, seed=1))
    learner = Learner(champion, StatefulPolicy(champion), GATE, gate_every=512, sanity_size=0)
    outcomes = feed(learner, batches(make_examples(2_048, seed=2), 256))
    assert outcomes[0::2] == ["-"] * 4  # every second batch of 256 reaches 512
    assert outcomes[1] == "keep_training:min_examples"
    assert all(o != "-" for o in outcomes[1::2])
    assert learner.counts.decisions == 4 and learner.counts.examples == 2_048


def test_a_drifted_world_gets_an_adapted_champion() -> None:
    champion = trained(make_examples(4_096, seed=1))
    learner = Learner(champion, StatefulPolicy(champion), GATE, gate_every=1_024,
                      sanity_size=0)
    outcomes = feed(learner, batches(make_examples(4_096, seed=2, rates=DRIFTED_CLICK_RATE),
                                     512))
    assert "promote:better" in outcomes
    assert learner.counts.promotions >= 1 and learner.champion is not champion
    # The next challenger is a replica of the new champion.
    probe = [e.features for e in make_examples(50, seed=3)]
    if outcomes[-1] == "promote:better":
        np.testing.assert_array_equal(learner.policy.challenger.predict_proba_many(probe),
                                      learner.champion.predict_proba_many(probe))


def test_a_rejected_challenger_starts_over_from_the_champion() -> None:
    champion = trained(make_examples(4_096, seed=1))
    # A challenger poisoned by labels that say the opposite of the world it is judged on.
    flipped = [replace(e, label=1 - e.label) for e in make_examples(1_024, seed=4)]
    learner = Learner(champion, StatefulPolicy(champion), GATE, gate_every=2_048,
                      sanity_size=0)
    feed(learner, batches(flipped, 512))
    decision = learner.step(make_examples(1_024, seed=5), now_ms=9_000)
    assert decision is not None and decision.outcome == "reject", decision
    probe = [e.features for e in make_examples(50, seed=3)]
    np.testing.assert_array_equal(learner.policy.challenger.predict_proba_many(probe),
                                  champion.predict_proba_many(probe))
    assert learner.champion is champion and learner.counts.rejections == 1


def test_a_calibration_drift_refreshes_a_stale_sanity_set() -> None:
    """After the drift, a sanity set of the old world calls every adapted challenger
    'forgetting'; the drift alarm re-freezes it from the new world's examples."""
    old = make_examples(4_096, seed=1)
    champion = trained(old)
    drifted = batches(make_examples(6_144, seed=2, rates=DRIFTED_CLICK_RATE), 512)
    runs = {}
    for name, drift in (("stale", None), ("refreshed", LossDriftDetector())):
        learner = Learner(champion, StatefulPolicy(champion), GATE, gate_every=1_024,
                          sanity_size=512, drift=drift)
        learner.step(old[:512], now_ms=0)  # the sanity set: the old world
        runs[name] = (feed(learner, drifted), learner)
    stale, refreshed = runs["stale"][1], runs["refreshed"][1]
    assert stale.counts.promotions == 0 and "reject:forgetting" in runs["stale"][0]
    assert refreshed.counts.sanity_refreshes >= 1
    assert refreshed.counts.promotions >= 1


def test_without_a_cadence_the_policy_says_when_the_gate_is_due() -> None:
    champion = trained(make_examples(2_048, seed=1))
    triggers = Triggers.from_config(TriggerConfig(volume_every_labels=1_024,
                                                  performance_tolerance=0,
                                                  drift_detector="none"))
    policy = TriggeredPolicy(champion, triggers, min_evidence=1_024)
    learner = Learner(champion, policy, GATE, gate_every=None, sanity_size=0)
    outcomes = feed(learner, batches(make_examples(4_096, seed=2, rates=DRIFTED_CLICK_RATE),
                                     512))
    # Fires on the 2nd batch (1,024 labels) and trains; two batches of evidence later the gate.
    assert outcomes[:3] == ["-", "-", "-"]
    assert outcomes[3] != "-"
    assert sum(o != "-" for o in outcomes) == learner.counts.decisions >= 1
