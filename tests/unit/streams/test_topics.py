from __future__ import annotations

from config.settings import KafkaSettings
from streams.topics import plan_topics, topic_specs


def specs(partitions: int = 3) -> list:
    return topic_specs(KafkaSettings(partitions=partitions))


def test_fresh_cluster_creates_all_five_topics_with_retention() -> None:
    plan = plan_topics(specs(), {})
    assert [s.name for s in plan.create] == [
        "predictions", "events", "examples", "dlq", "late-labels",
    ]
    assert all(s.partitions == 3 for s in plan.create)
    assert plan.create[0].config["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert plan.create[3].config["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert plan.errors == ()


def test_existing_matching_topics_are_left_alone() -> None:
    existing = {"predictions": 3, "events": 3, "examples": 3, "dlq": 3, "late-labels": 3}
    plan = plan_topics(specs(), existing)
    assert plan.create == () and plan.errors == ()
    assert plan.existing == ("predictions", "events", "examples", "dlq", "late-labels")


def test_data_topics_with_different_counts_are_an_error_and_nothing_is_created() -> None:
    plan = plan_topics(specs(), {"predictions": 3, "events": 6})
    assert plan.create == ()
    assert any("must share a partition count" in e and "events=6" in e for e in plan.errors)
    assert any("topic 'events' exists with 6 partitions" in e for e in plan.errors)


def test_config_disagreeing_with_existing_data_topic_is_an_error() -> None:
    plan = plan_topics(specs(partitions=6), {"predictions": 3})
    assert plan.errors == ("topic 'predictions' exists with 3 partitions, configuration says 6",)


def test_dlq_partition_mismatch_is_only_a_note() -> None:
    plan = plan_topics(specs(), {"dlq": 1})
    assert plan.errors == ()
    assert plan.notes == ("topic 'dlq' exists with 1 partitions, configuration says 3",)
    assert "dlq" not in [s.name for s in plan.create]
