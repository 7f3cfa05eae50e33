"""A visible round trip through the real broker: a prediction and its click, produced and read
back with the strict decoders. What `make demo` shows until the full demo exists."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from config.settings import KafkaSettings, SchemaSettings
from streams.schemas import (
    DecodeError,
    Event,
    Prediction,
    TimeBounds,
    decode_event,
    decode_prediction,
    encode,
)


@dataclass(frozen=True, slots=True)
class Hop:
    """One message produced and read back."""

    topic: str
    partition: int
    offset: int
    message: Prediction | Event
    ms: float


def _produce(producer: Producer, topic: str, key: str, value: bytes) -> Message:
    delivered: list[Message] = []

    def on_delivery(err: object, msg: Message) -> None:
        if err is not None:
            raise KafkaException(err)
        delivered.append(msg)

    producer.produce(topic, key=key.encode(), value=value, on_delivery=on_delivery)
    producer.flush(10.0)
    if not delivered:
        raise KafkaException(f"no delivery report from {topic} within 10 s")
    return delivered[0]


def _read_back(consumer: Consumer, sent: Message, timeout_s: float = 10.0) -> Message:
    consumer.assign([TopicPartition(sent.topic(), sent.partition(), sent.offset())])
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise KafkaException(msg.error())
        return msg
    raise KafkaException(f"could not read back {sent.topic()}[{sent.partition()}]@{sent.offset()}")


def roundtrip(kafka: KafkaSettings, schema: SchemaSettings) -> list[Hop]:
    """Produce one prediction and one click for it, read both back and decode them."""
    now = int(time.time() * 1000)
    bounds = TimeBounds(schema.max_past_ms, schema.max_future_ms)
    prediction = Prediction(
        prediction_id=uuid.uuid4().hex,
        request_id=uuid.uuid4().hex,
        ts=now,
        user_id="u42",
        item_id="i7",
        features={"device": "mobile", "hour": 13, "category": "shoes", "price": 39.9},
        model_version="ctr-v1.0",
        arm="champion",
        score=0.031,
    )
    click = Event(uuid.uuid4().hex, "click", prediction.prediction_id, now + 4_444)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 0})
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"streamlearn-roundtrip-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            # Re-assigning to the second topic otherwise waits out a 500 ms fetch long-poll.
            "fetch.wait.max.ms": 10,
        }
    )
    hops = []
    try:
        # Metadata for both topics up front, so re-assigning does not wait to learn it.
        consumer.list_topics(timeout=10)
        for topic, message, decode in (
            (kafka.predictions_topic, prediction, decode_prediction),
            (kafka.events_topic, click, decode_event),
        ):
            t0 = time.perf_counter()
            sent = _produce(producer, topic, prediction.prediction_id, encode(message))
            got = _read_back(consumer, sent)
            ms = (time.perf_counter() - t0) * 1000
            decoded = decode(got.value(), key=got.key(), now_ms=now, bounds=bounds)
            if isinstance(decoded, DecodeError):
                raise KafkaException(f"read back an invalid {topic} message: {decoded.reason}")
            if decoded != message:
                raise KafkaException(f"{topic}: read back {decoded}, sent {message}")
            hops.append(Hop(topic, got.partition(), got.offset(), decoded, ms))
    finally:
        consumer.close()
    return hops
