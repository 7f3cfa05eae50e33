"""Dead-letter records: where a rejected message came from, why, and its raw bytes.

Example:
    >>> rec = dlq_record("events", 2, 41, "invalid JSON: unexpected character", b"{oops")
    >>> rec.raw, rec.raw_encoding
    ('{oops', 'utf-8')
    >>> dlq_record("events", 0, 1, "not UTF-8", b"\\xff\\xfe").raw
    '//4='
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import orjson

# Keep a DLQ record well under Kafka's default 1 MiB message limit.
MAX_RAW_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class DlqRecord:
    """One rejected input, as written to the ``dlq`` topic.

    ``raw`` is the original value as text when it is valid UTF-8, else base64
    (``raw_encoding`` says which); values over ``MAX_RAW_BYTES`` are cut (``raw_truncated``).
    """

    source_topic: str
    partition: int
    offset: int
    error: str
    raw: str
    raw_encoding: Literal["utf-8", "base64"] = "utf-8"
    raw_truncated: bool = False
    key: str | None = None
    ts: int = 0


def dlq_record(
    source_topic: str,
    partition: int,
    offset: int,
    error: str,
    raw: bytes | str | None,
    key: bytes | str | None = None,
    now_ms: int | None = None,
) -> DlqRecord:
    """Build the DLQ record for one rejected message (pure; never raises on odd bytes)."""
    data = raw.encode("utf-8") if isinstance(raw, str) else (raw or b"")
    truncated = len(data) > MAX_RAW_BYTES
    data = data[:MAX_RAW_BYTES]
    try:
        text, encoding = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(data).decode("ascii"), "base64"
    key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return DlqRecord(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        error=error,
        raw=text,
        raw_encoding=encoding,  # type: ignore[arg-type]
        raw_truncated=truncated,
        key=key_text,
        ts=now_ms if now_ms is not None else int(time.time() * 1000),
    )


class _Producer(Protocol):
    def produce(self, topic: str, value: bytes, key: bytes | None = ..., **kw: Any) -> None: ...


class DlqWriter:
    """Writes DLQ records through a confluent-kafka producer the caller owns and flushes."""

    def __init__(self, producer: _Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self.written = 0

    def write(self, record: DlqRecord) -> None:
        """Queue one record; keyed by the source key so related rejects stay together."""
        key = record.key.encode("utf-8") if record.key else None
        self._producer.produce(self._topic, value=orjson.dumps(record), key=key)
        self.written += 1

    def reject(
        self,
        source_topic: str,
        partition: int,
        offset: int,
        error: str,
        raw: bytes | str | None,
        key: bytes | str | None = None,
    ) -> DlqRecord:
        """Build and queue the record for one rejected message; returns it."""
        record = dlq_record(source_topic, partition, offset, error, raw, key)
        self.write(record)
        return record
