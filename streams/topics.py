"""Topic layout: what should exist, what to create, and what is wrong with what exists.

The three data topics (predictions, events, examples) are keyed by prediction_id and must share
a partition count so that one joiner task sees a prediction and all its events. ``plan_topics`` is
pure; ``ensure_topics`` applies the plan with a confluent-kafka AdminClient.

Example:
    >>> specs = [TopicSpec("predictions", 3, True), TopicSpec("dlq", 3, False)]
    >>> plan = plan_topics(specs, {"predictions": 3})
    >>> [s.name for s in plan.create], plan.existing, plan.errors
    (['dlq'], ('predictions',), ())
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import KafkaSettings
from streams.errors import StreamsError


class TopicError(StreamsError):
    """The cluster's topics contradict the configuration (e.g. co-partitioning broken)."""


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as configured."""

    name: str
    partitions: int
    co_partitioned: bool
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """What ``ensure_topics`` will do; ``errors`` non-empty means it creates nothing."""

    create: tuple[TopicSpec, ...]
    existing: tuple[str, ...]
    errors: tuple[str, ...]
    notes: tuple[str, ...] = ()


def topic_specs(settings: KafkaSettings) -> list[TopicSpec]:
    """The topics streamlearn needs, from configuration."""
    data = {"retention.ms": str(settings.retention_ms)}
    dlq = {"retention.ms": str(settings.dlq_retention_ms)}
    specs = [TopicSpec(name, settings.partitions, True, data) for name in settings.data_topics]
    specs.append(TopicSpec(settings.dlq_topic, settings.partitions, False, dlq))
    specs.append(TopicSpec(settings.late_labels_topic, settings.partitions, False, data))
    return specs


def plan_topics(specs: Sequence[TopicSpec], existing: Mapping[str, int]) -> TopicPlan:
    """Decide which topics to create and which existing ones break the layout.

    Args:
        specs: the configured topics.
        existing: partition count of each topic already on the cluster.
    """
    errors: list[str] = []
    notes: list[str] = []
    found_data = {
        s.name: existing[s.name] for s in specs if s.co_partitioned and s.name in existing
    }
    if len(set(found_data.values())) > 1:
        shown = ", ".join(f"{name}={n}" for name, n in sorted(found_data.items()))
        errors.append(
            f"data topics must share a partition count (they are joined by prediction_id); "
            f"found {shown}"
        )
    for spec in specs:
        have = existing.get(spec.name)
        if have is None or have == spec.partitions:
            continue
        message = (
            f"topic '{spec.name}' exists with {have} partitions, "
            f"configuration says {spec.partitions}"
        )
        (errors if spec.co_partitioned else notes).append(message)
    create = tuple(s for s in specs if s.name not in existing)
    if errors:
        create = ()
    existing_names = tuple(s.name for s in specs if s.name in existing)
    return TopicPlan(create, existing_names, tuple(errors), tuple(notes))


def existing_topics(admin: AdminClient, timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of every topic on the cluster."""
    metadata = admin.list_topics(timeout=timeout_s)
    return {name: len(t.partitions) for name, t in metadata.topics.items()}


def ensure_topics(
    admin: AdminClient, settings: KafkaSettings, timeout_s: float = 30.0
) -> TopicPlan:
    """Create the missing topics (idempotent).

    Raises:
        TopicError: existing topics contradict the configuration; nothing was created.
    """
    plan = plan_topics(topic_specs(settings), existing_topics(admin))
    if plan.errors:
        raise TopicError("; ".join(plan.errors))
    if not plan.create:
        return plan
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=settings.replication_factor,
            config=dict(s.config),
        )
        for s in plan.create
    ]
    for name, future in admin.create_topics(new, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except Exception as err:  # a concurrent creator won the race: checked below
            if "TOPIC_ALREADY_EXISTS" not in str(err) and "already exists" not in str(err):
                raise TopicError(f"could not create topic '{name}': {err}") from err
    # Return only once clients can use the topics, and re-check the layout: a concurrent
    # creator may have won with another partition count.
    wanted = {s.name for s in plan.create}
    deadline = time.monotonic() + timeout_s
    while not wanted <= (found := existing_topics(admin)).keys():
        if time.monotonic() > deadline:
            raise TopicError(f"topics not visible after {timeout_s:.0f} s: {sorted(wanted)}")
        time.sleep(0.1)
    after = plan_topics(topic_specs(settings), found)
    if after.errors:
        raise TopicError("; ".join(after.errors))
    return plan
