"""The one decision loop (models/training/loop.py): cadence, promotion, rejection, the sanity
set, and one test per rule the trainer service and the benchmark used to disagree on."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models import Model, build_model
from models.drift import LossDriftDetector
from models.errors import BatchError
from models.gate.decision import GateConfig
from models.training.batching import ClickGuard
from models.training.loop import Alarm, Counts, Learner
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
        decision = learner.step(batch, now_ms=1_000 * i).decision
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
    learner = Learner(champion, StatefulPolicy(champion), replace(GATE, min_examples=2_048),
                      gate_every=2_048, sanity_size=0)
    feed(learner, batches(flipped, 512))
    decision = learner.step(make_examples(1_024, seed=5), now_ms=9_000).decision
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
    drifted = batches(make_examples(12_288, seed=2, rates=DRIFTED_CLICK_RATE), 512)
    runs = {}
    for name, drift, stale_after in (("stale", None, 0), ("refreshed", LossDriftDetector(), 0),
                                     ("no alarm", None, 3)):
        learner = Learner(champion, StatefulPolicy(champion), GATE, gate_every=1_024,
                          sanity_size=512, drift=drift, stale_after=stale_after)
        learner.step(old[:512], now_ms=0)  # the sanity set: the old world
        runs[name] = (feed(learner, drifted), learner)
    stale, refreshed = runs["stale"][1], runs["refreshed"][1]
    assert stale.counts.promotions == 0 and "reject:forgetting" in runs["stale"][0]
    assert refreshed.counts.sanity_refreshes >= 1
    assert refreshed.counts.promotions >= 1
    # With no alarm at all, three forgetting rejections in a row of a challenger that does
    # better on the fresh examples re-freeze the set (a shift the detector missed).
    outcomes, unalarmed = runs["no alarm"]
    assert unalarmed.counts.alarms == 0 and unalarmed.counts.sanity_refreshes >= 1
    verdicts = [o for o in outcomes if o != "-"]
    refreshed_at = [i for i in range(2, len(verdicts))
                    if verdicts[i - 2:i + 1] == ["reject:forgetting"] * 3]
    assert refreshed_at and "promote:better" in verdicts[refreshed_at[0]:]
    assert unalarmed.counts.promotions >= 1


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


def _stale_learner(**kwargs: object) -> tuple[Learner, list[list[Example]]]:
    """A learner whose full sanity set is of the old world, and a drifted stream."""
    old = make_examples(4_096, seed=1)
    champion = trained(old)
    learner = Learner(champion, StatefulPolicy(champion), GATE, gate_every=1_000_000,
                      sanity_size=512, drift=LossDriftDetector(), **kwargs)  # type: ignore[arg-type]
    learner.step(old[:512], now_ms=0)
    return learner, batches(make_examples(6_144, seed=2, rates=DRIFTED_CLICK_RATE), 512)


def test_rule_an_alarm_empties_a_full_sanity_set_and_the_next_batch_starts_the_new_one() -> None:
    learner, drifted = _stale_learner()
    for i, batch in enumerate(drifted):
        outcome = learner.step(batch, now_ms=1_000 * (i + 1))
        if outcome.alarm is not None:
            break
    else:
        raise AssertionError("the drift raised no alarm")
    # The alarm's own batch may straddle the change: none of it is in the new set.
    assert outcome.sanity_refreshed and learner.sanity == []
    assert learner.counts.sanity_refreshes == 1 and learner.counts.alarms == 1
    after = drifted[i + 1]
    learner.step(after, now_ms=99_000)
    assert [e.prediction_id for e in learner.sanity] == [e.prediction_id for e in after[:512]]


def test_rule_an_alarm_keeps_a_sanity_set_still_filling() -> None:
    learner, drifted = _stale_learner()
    learner.refresh_sanity()
    learner.step(drifted[0][:100], now_ms=1_000)
    filling = list(learner.sanity)
    learner._sanity(drifted[1][:100], alarm=Alarm("adwin", "test"))
    assert learner.sanity[:100] == filling and len(learner.sanity) == 200


def test_rule_no_refresh_when_switched_off() -> None:
    learner, drifted = _stale_learner(refresh_sanity_on_alarm=False)
    stale = list(learner.sanity)
    alarms = sum(learner.step(b, now_ms=1_000 * i).alarm is not None
                 for i, b in enumerate(drifted))
    assert alarms >= 1 and learner.sanity == stale and learner.counts.sanity_refreshes == 0


def test_rule_keep_training_keeps_the_evidence_except_in_trigger_driven_mode() -> None:
    champion = trained(make_examples(2_048, seed=1))
    gate = GateConfig(min_examples=100_000)  # always keep_training: not enough evidence
    cadenced = Learner(champion, StatefulPolicy(champion), gate, gate_every=512, sanity_size=0)
    outcome = cadenced.step(make_examples(512, seed=2), now_ms=0)
    assert outcome.decision is not None and outcome.decision.outcome == "keep_training"
    assert cadenced.evaluation.n == 512  # the same challenger goes on learning
    triggers = Triggers.from_config(TriggerConfig(volume_every_labels=512,
                                                  performance_tolerance=0,
                                                  drift_detector="none"))
    driven = Learner(champion, TriggeredPolicy(champion, triggers, min_evidence=512), gate,
                     gate_every=None, sanity_size=0)
    verdicts = []
    for i, batch in enumerate(batches(make_examples(2_048, seed=3), 512)):
        decision = driven.step(batch, now_ms=i).decision
        if decision is not None:
            verdicts.append((decision.outcome, driven.evaluation.n))
    # Trained on the 1st batch, judged after the 2nd: the evidence is spent on that verdict.
    assert verdicts and verdicts[0] == ("keep_training", 0)


def test_rule_the_loop_counts_what_it_decides() -> None:
    champion = trained(make_examples(2_048, seed=1))
    bot = [replace(e, label=1, features={**e.features, "user_id": "bot"})
           for e in make_examples(64, seed=4)]
    learner = Learner(champion, StatefulPolicy(champion, per_user_cap=4), GATE, gate_every=32,
                      sanity_size=0, guard=ClickGuard(max_ctr=0.75, min_labels=8))
    first = learner.step(bot[:32], now_ms=0)  # nobody has a record yet: all reach the policy
    second = learner.step(bot[32:], now_ms=1)  # now the bot is known: guarded
    assert (first.guarded, second.guarded, len(second.kept)) == (0, 32, 0)
    c = second.counts
    assert (c.batches, c.examples, c.guarded) == (2, 32, 32)
    assert c.capped == 32 - 4  # the per-user cap let 4 of the bot's first 32 be learnt
    assert c.decisions == 1 and c.promotions + c.rejections <= 1


def test_a_refused_batch_changes_nothing_and_can_be_retried() -> None:
    champion = trained(make_examples(1_024, seed=1))
    guard = ClickGuard(max_ctr=0.75, min_labels=1)
    learner = Learner(champion, StatefulPolicy(champion), GATE, gate_every=10_000,
                      sanity_size=0, guard=guard)
    bad = [replace(e, label=2) for e in make_examples(8, seed=2)]  # not a 0/1 label
    with pytest.raises(BatchError):
        learner.step(bad, now_ms=0)
    assert learner.counts == Counts() and guard.flagged == 0 and learner.evaluation.n == 0
    learner.step(make_examples(8, seed=2), now_ms=1)
    assert learner.counts.examples == 8
