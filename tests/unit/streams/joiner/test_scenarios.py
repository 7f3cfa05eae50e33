"""The issue's scenario variants end to end through the decoders and the joiner: exact sets."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from streams.joiner import JoinPolicy, PartitionJoiner
from streams.joiner import output as out
from streams.joiner.partitioning import murmur2_partition
from streams.joiner.scenario import (
    VARIANTS,
    ExpectedLateLabel,
    ScenarioError,
    generate,
    summarize,
)
from streams.schemas import Prediction
from tests.unit.streams.joiner.harness import Run, decoded, drain, feed, run_scenario

POLICY = JoinPolicy(
    attribution_window_ms=2_000, allowed_lateness_ms=300, max_event_lead_ms=3_000,
    max_pending=100_000,
)


def assert_exact(run: Run, scenario, label_policy: str) -> None:
    emitted = summarize(run.examples)
    duplicates = [key for key, n in Counter(emitted).items() if n > 1]
    assert duplicates == []
    expected = scenario.expected_by_policy[label_policy]
    missing, extra = sorted(expected - set(emitted)), sorted(set(emitted) - expected)
    assert (missing, extra) == ([], [])
    late = [ExpectedLateLabel(x.prediction_id, x.ts_click, x.reason) for x in run.late_labels]
    assert sorted(late) == sorted(scenario.expected_late_labels)
    assert {(o.message.event_id, o.reason) for o in run.orphans} == {
        (event_id, out.NO_PREDICTION) for event_id in scenario.expected_orphans
    }
    assert len(run.orphans) == len(scenario.expected_orphans)
    assert run.rejected == scenario.garbage_count
    if label_policy == "impression_required":
        assert run.counts[out.UNSHOWN] == scenario.expected_unshown


@pytest.mark.parametrize("label_policy", ["impression_required", "all_served"])
@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_yields_exactly_the_expected_examples(variant, partitions, label_policy):
    policy = JoinPolicy(**{**_fields(POLICY), "policy": label_policy})
    scenario = generate(variant, policy, predictions=2_000, partitions=partitions,
                        mean_gap_ms=10, seed=partitions)
    run = run_scenario(scenario)
    assert_exact(run, scenario, label_policy)


def test_variants_exercise_what_they_are_named_after():
    def counts(variant):
        scenario = generate(variant, POLICY, predictions=2_000, mean_gap_ms=10, seed=3)
        return run_scenario(scenario).counts, scenario

    in_order, _ = counts("in_order")
    assert in_order[out.EXAMPLES_POSITIVE] > 100 and in_order[out.EXAMPLES_NEGATIVE] > 500
    assert in_order[out.EVENTS_HELD] == 0
    shuffled, _ = counts("shuffled")
    assert shuffled[out.EVENTS_HELD] > 100
    duplicates, _ = counts("duplicates")
    assert duplicates[out.DUPLICATE_EVENTS] > 100 and duplicates[out.DUPLICATE_PREDICTIONS] > 100
    late, scenario = counts("late_clicks")
    reasons = Counter(x.reason for x in scenario.expected_late_labels)
    assert reasons[out.AFTER_WINDOW] > 20 and reasons[out.AFTER_CLOSE] > 20
    _, scenario = counts("garbage")
    assert scenario.garbage_count > 200
    orphans, scenario = counts("orphans")
    assert orphans[out.ORPHAN_EVENTS] == len(scenario.expected_orphans) > 10


def test_large_scenario_for_the_kill_test_is_exact():
    # The size the kill -9 integration test needs, over six partitions.
    scenario = generate("everything", POLICY, predictions=20_000, partitions=6, mean_gap_ms=10)
    assert len({m.partition for m in scenario.messages}) == 6
    assert_exact(run_scenario(scenario), scenario, "impression_required")


def test_expected_sets_hold_for_any_topic_interleaving_with_a_wide_policy():
    # What a Kafka consumer sees: each topic in order, the two interleaved arbitrarily.
    base = generate("everything", POLICY, predictions=1_000, mean_gap_ms=10, seed=9)
    wide = JoinPolicy(attribution_window_ms=2_000, allowed_lateness_ms=base.span_ms + 1,
                      max_event_lead_ms=base.span_ms + 1)
    scenario = generate("everything", wide, predictions=1_000, mean_gap_ms=10, seed=9)
    inputs, _ = decoded(scenario, 0)
    predictions = [m for m in inputs if isinstance(m, Prediction)]
    events = [m for m in inputs if not isinstance(m, Prediction)]
    rng = random.Random(4)
    for _ in range(3):
        order = sorted([0] * len(predictions) + [1] * len(events), key=lambda _: rng.random())
        streams = (iter(predictions), iter(events))
        joiner = PartitionJoiner(wide)
        run = drain(joiner, feed(joiner, [next(streams[which]) for which in order]))
        assert set(summarize(run.examples)) == scenario.expected_examples
        assert len(run.examples) == len(scenario.expected_examples)


def test_same_seed_same_scenario_other_seed_other_scenario():
    first = generate("everything", POLICY, predictions=500, partitions=3, seed=1)
    again = generate("everything", POLICY, predictions=500, partitions=3, seed=1)
    other = generate("everything", POLICY, predictions=500, partitions=3, seed=2)
    assert first == again
    assert first.messages != other.messages


def test_messages_sit_in_the_partition_kafka_would_choose():
    scenario = generate("garbage", POLICY, predictions=500, partitions=7)
    for raw in scenario.messages:
        assert raw.partition == murmur2_partition(raw.key, 7)


def test_impossible_knobs_are_refused_not_silently_changed():
    # Predictions lag up to the 3 s lead, but markers are kept 0 ms past a 2 s window.
    tight = JoinPolicy(**{**_fields(POLICY), "done_retention_ms": 0})
    with pytest.raises(ScenarioError, match="too late"):
        generate("shuffled", tight, predictions=2_000, mean_gap_ms=10)
    with pytest.raises(ScenarioError, match="unknown variant"):
        generate("sideways", POLICY)


def _fields(policy: JoinPolicy) -> dict:
    return {name: getattr(policy, name) for name in JoinPolicy.__dataclass_fields__}
