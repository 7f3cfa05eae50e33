"""Integration fixtures: the real Kafka and Redis of the local stack.

The session fixture starts the stack when it is not up and stops it afterwards if it started
it (set STREAMLEARN_KEEP_STACK=1 to leave it running between runs).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from confluent_kafka.admin import AdminClient

from config.settings import KafkaSettings, RedisSettings, StackSettings, load
from services.local.stack.manager import Stack
from services.registry.redis import RedisRegistry
from streams.topics import ensure_topics, topic_specs

if TYPE_CHECKING:
    from tests.integration.loop_helpers import LoopStack


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


@pytest.fixture
def loop_registry(stack: Stack, request: pytest.FixtureRequest) -> Iterator[RedisRegistry]:
    """A registry under a fresh prefix for a LoopStack test; the test module names its
    ``SIGNING_KEY``. Every key under the prefix is deleted afterwards."""
    from tests.integration.loop_helpers import fresh_registry

    tag = f"test-{request.module.__name__.rsplit('.', 1)[-1]}"
    with fresh_registry(stack.redis_settings.url, request.module.SIGNING_KEY, tag) as registry:
        yield registry


@pytest.fixture
def loop(make_topics: Callable[..., KafkaSettings], loop_registry: RedisRegistry,
         tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LoopStack]:
    """serve/join/train processes on fresh topics with the module's ``SETTINGS`` (env
    overrides), stopped afterwards, the joiner's own topics deleted."""
    from tests.integration.loop_helpers import running_loop

    with running_loop(make_topics(partitions=3), loop_registry, request.module.SIGNING_KEY,
                      tmp_path / "loop", request.module.SETTINGS) as stack:
        yield stack
