from __future__ import annotations

import base64
from typing import Any

import orjson

from streams.dlq import MAX_RAW_BYTES, DlqWriter, dlq_record


class RecordingProducer:
    """A stand-in for the producer interface only; Kafka itself is tested in integration."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self.sent.append((topic, value, key))


def test_record_keeps_utf8_text_and_where_it_came_from() -> None:
    rec = dlq_record("events", 2, 41, "invalid JSON", b'{"a":', key=b"p1", now_ms=5)
    assert (rec.source_topic, rec.partition, rec.offset) == ("events", 2, 41)
    assert rec.error == "invalid JSON"
    assert (rec.raw, rec.raw_encoding, rec.raw_truncated, rec.key, rec.ts) == (
        '{"a":', "utf-8", False, "p1", 5,
    )


def test_binary_raw_is_base64_and_recoverable() -> None:
    blob = bytes(range(256))
    rec = dlq_record("predictions", 0, 1, "not UTF-8", blob)
    assert rec.raw_encoding == "base64"
    assert base64.b64decode(rec.raw) == blob


def test_oversized_raw_is_truncated_and_flagged() -> None:
    rec = dlq_record("events", 0, 1, "too big", b"x" * (MAX_RAW_BYTES + 10))
    assert rec.raw_truncated and len(rec.raw) == MAX_RAW_BYTES


def test_null_value_becomes_empty_raw() -> None:
    assert dlq_record("events", 0, 1, "empty message (null value)", None).raw == ""


def test_writer_serialises_contract_fields() -> None:
    producer = RecordingProducer()
    writer = DlqWriter(producer, "dlq")
    writer.reject("events", 1, 9, "field 'type': missing", b"{}", key=b"p1")
    assert writer.written == 1
    topic, value, key = producer.sent[0]
    body = orjson.loads(value)
    assert topic == "dlq" and key == b"p1"
    assert {"source_topic", "partition", "offset", "error", "raw"} <= body.keys()
    assert (body["source_topic"], body["partition"], body["offset"], body["raw"]) == (
        "events", 1, 9, "{}",
    )
