from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable

import orjson
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from config.settings import KafkaSettings, SchemaSettings
from services.local.roundtrip import roundtrip
from services.local.stack.manager import Stack
from services.local.wait import wait_for
from streams.dlq import DlqWriter
from streams.schemas import DecodeError, decode_event
from streams.topics import TopicError, ensure_topics, existing_topics


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0,
                isolation: str = "read_committed") -> list:
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"test-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    consumer.subscribe([topic])
    got: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is None:
                    got.append(msg)
    finally:
        consumer.close()
    return got


def test_topics_create_is_idempotent(make_topics: Callable[..., KafkaSettings],
                                     admin: AdminClient) -> None:
    settings = make_topics(partitions=3)
    again = ensure_topics(admin, settings)
    assert again.create == ()
    topics = existing_topics(admin)
    for name in (*settings.data_topics, settings.dlq_topic, settings.late_labels_topic):
        assert topics[name] == 3


def test_partition_mismatch_on_the_cluster_is_an_error(
    make_topics: Callable[..., KafkaSettings], admin: AdminClient
) -> None:
    settings = make_topics(partitions=3, create=False)
    # Someone created 'events' by hand with another partition count.
    admin.create_topics([NewTopic(settings.events_topic, num_partitions=5)])[
        settings.events_topic
    ].result(timeout=30)
    wait_for(lambda: settings.events_topic in existing_topics(admin), 10,
             f"{settings.events_topic} to be listed")
    with pytest.raises(TopicError, match="must share a partition count|exists with 5"):
        ensure_topics(admin, settings)
    assert settings.predictions_topic not in existing_topics(admin), "nothing may be created"


def test_dlq_records_garbage_with_its_origin(make_topics: Callable[..., KafkaSettings]) -> None:
    settings = make_topics(partitions=1)
    bootstrap = settings.bootstrap_servers
    producer = Producer({"bootstrap.servers": bootstrap})
    garbage = [b"{not json", b"\xff\xfe\x00binary", orjson.dumps({"type": "click"})]
    for value in garbage:
        producer.produce(settings.events_topic, key=b"k", value=value)
    producer.flush(10)

    writer = DlqWriter(producer, settings.dlq_topic)
    for msg in consume_all(bootstrap, settings.events_topic, len(garbage)):
        result = decode_event(msg.value())
        assert isinstance(result, DecodeError)
        writer.reject(msg.topic(), msg.partition(), msg.offset(), result.reason, msg.value(),
                      msg.key())
    producer.flush(10)

    records = [orjson.loads(m.value()) for m in consume_all(bootstrap, settings.dlq_topic, 3)]
    assert [(r["source_topic"], r["partition"], r["offset"]) for r in records] == [
        (settings.events_topic, 0, 0), (settings.events_topic, 0, 1), (settings.events_topic, 0, 2)
    ]
    assert records[0]["error"].startswith("invalid JSON")
    assert records[0]["raw"] == "{not json"
    assert records[1]["raw_encoding"] == "base64"
    assert base64.b64decode(records[1]["raw"]) == garbage[1]
    assert records[2]["error"] == "field 'prediction_id': missing"


def test_roundtrip_of_a_prediction_and_its_click(
    make_topics: Callable[..., KafkaSettings],
) -> None:
    settings = make_topics()
    hops = roundtrip(settings, SchemaSettings())
    assert [h.topic for h in hops] == [settings.predictions_topic, settings.events_topic]
    # Keyed by prediction_id: both land in the same partition.
    assert hops[0].partition == hops[1].partition
    assert hops[1].message.prediction_id == hops[0].message.prediction_id


def test_transactions_work_on_the_single_broker(
    make_topics: Callable[..., KafkaSettings],
) -> None:
    """The joiner's exactly-once path needs the transaction coordinator to initialise."""
    settings = make_topics(partitions=1)
    producer = Producer({
        "bootstrap.servers": settings.bootstrap_servers,
        "transactional.id": f"test-{uuid.uuid4().hex}",
    })
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(settings.examples_topic, key=b"a", value=b"aborted")
    producer.flush(30)  # on the broker before the abort, not just purged from the queue
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(settings.examples_topic, key=b"c", value=b"committed")
    producer.commit_transaction(30)
    committed = consume_all(settings.bootstrap_servers, settings.examples_topic, 2, timeout_s=5)
    assert [m.value() for m in committed] == [b"committed"]
    everything = consume_all(settings.bootstrap_servers, settings.examples_topic, 2,
                             timeout_s=5, isolation="read_uncommitted")
    assert [m.value() for m in everything] == [b"aborted", b"committed"]


def test_redis_persists_with_aof_every_second(stack: Stack) -> None:
    client = redis.Redis.from_url(stack.redis_settings.url)
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}


def test_broker_heap_is_at_most_512_mib(stack: Stack) -> None:
    from services.local.stack.process import cmdline

    pid = stack.kafka.process.running_pid()
    if pid is None:
        pytest.fail("the Kafka broker under test is not one this stack started")
    flags = [f for f in cmdline(pid).split() if f.startswith("-Xmx")]
    assert flags and int(flags[0][4:-1]) <= 512


def test_consumer_offsets_survive_in_a_group(make_topics: Callable[..., KafkaSettings]) -> None:
    settings = make_topics(partitions=1)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for i in range(10):
        producer.produce(settings.events_topic, key=b"k", value=str(i).encode())
    producer.flush(10)
    group = f"test-{uuid.uuid4().hex}"
    conf = {"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    first = Consumer(conf)
    first.assign([TopicPartition(settings.events_topic, 0)])
    msgs = first.consume(num_messages=4, timeout=10)
    first.commit(message=msgs[-1], asynchronous=False)
    first.close()
    second = Consumer(conf)
    second.subscribe([settings.events_topic])
    rest: list = []
    deadline = time.monotonic() + 20
    while len(rest) < 6 and time.monotonic() < deadline:
        rest += [m for m in second.consume(num_messages=10, timeout=0.5) if m.error() is None]
    second.close()
    assert [m.value() for m in rest] == [str(i).encode() for i in range(4, 10)]
