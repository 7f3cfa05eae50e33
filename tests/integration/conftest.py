"""Integration fixtures: the real Kafka and Redis of the local stack.

The session fixture starts the stack when it is not up and stops it afterwards if it started
it (set STREAMLEARN_KEEP_STACK=1 to leave it running between runs).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka.admin import AdminClient

from config.settings import KafkaSettings, RedisSettings, StackSettings, load
from services.stack.manager import Stack
from streams.topics import ensure_topics, topic_specs


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The running local stack (started here when absent)."""
    s = Stack(load(StackSettings), load(KafkaSettings), load(RedisSettings))
    started = not s.is_up()
    if started:
        s.up()
    yield s
    if started and not os.environ.get("STREAMLEARN_KEEP_STACK"):
        s.down()


@pytest.fixture(scope="session")
def admin(stack: Stack) -> AdminClient:
    return AdminClient({"bootstrap.servers": stack.kafka_settings.bootstrap_servers})


@pytest.fixture
def make_topics(stack: Stack, admin: AdminClient) -> Iterator[Callable[..., KafkaSettings]]:
    """Factory: KafkaSettings with fresh, test-unique topic names, created on the broker.

    Topics are deleted after the test so repeated runs do not pile them up.
    """
    created: list[str] = []

    def make(partitions: int = 3, create: bool = True) -> KafkaSettings:
        tag = f"t{uuid.uuid4().hex[:10]}"
        settings = KafkaSettings(
            bootstrap_servers=stack.kafka_settings.bootstrap_servers,
            predictions_topic=f"{tag}-predictions",
            events_topic=f"{tag}-events",
            examples_topic=f"{tag}-examples",
            dlq_topic=f"{tag}-dlq",
            late_labels_topic=f"{tag}-late-labels",
            partitions=partitions,
        )
        created.extend(spec.name for spec in topic_specs(settings))
        if create:
            ensure_topics(admin, settings)
        return settings

    yield make
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            try:
                future.result(timeout=30)
            except Exception:  # noqa: BLE001, S110 - a topic the test never created
                pass
