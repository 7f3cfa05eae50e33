"""Shared benchmark plumbing: the stack, throwaway topics, percentiles."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import KafkaSettings, RedisSettings, StackSettings, load
from services.local.stack.manager import Stack


@contextmanager
def running_stack() -> Iterator[Stack]:
    """The configured stack, started if needed and then stopped again."""
    stack = Stack(load(StackSettings), load(KafkaSettings), load(RedisSettings))
    started = not stack.is_up()
    if started:
        stack.up()
    try:
        yield stack
    finally:
        if started:
            stack.down()


@contextmanager
def scratch_topic(bootstrap: str, partitions: int) -> Iterator[str]:
    """A topic that exists for the duration of the block."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    name = f"bench-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, num_partitions=partitions)])[name].result(timeout=30)
    try:
        yield name
    finally:
        admin.delete_topics([name])[name].result(timeout=30)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank.

    Example:
        >>> percentile([5, 1, 4, 2, 3], 0.5)
        3
        >>> percentile(list(range(1, 101)), 0.99)
        99
    """
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]
