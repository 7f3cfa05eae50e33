"""The natural-label joiner as a Faust worker: a thin shell around ``streams.joiner.core``.

One agent reads ``predictions``, ``events`` and an internal ``ticks`` topic, all co-partitioned;
partition N of each goes to the same ``PartitionJoiner``. Its state lives in a changelogged
Faust table, one row per prediction_id plus one clock row per partition, keyed
``b"<partition>|<prediction_id>"`` so a partition's rows can be found again on restore.

Exactly once as the trainer sees it, in two layers:

1. ``processing_guarantee="exactly_once"``: the examples, late labels, DLQ records, table
   changelog and input offsets of a step commit in one Kafka transaction per partition
   (``commit_interval_ms``). A crash aborts the open transaction; the restarted worker rebuilds
   the table from its read_committed changelog and replays the input from the committed
   offsets.
2. Faust's exactly-once still let one example in 14,000 through twice across kill -9 in our
   test (upstream #517/#177), so on (re)assignment a worker also reads its partition's recent
   ``examples`` back (``streams.joiner_dedup``) and never sends one for a prediction already
   there.

The integration tests kill -9 the worker mid-stream and count every example on a
read_committed consumer instead of trusting either layer.

Why ticks: Faust only lets a table change inside the processing of a message (that is what
ties the change to a partition and a transaction). Closing windows on a quiet partition is
such a change, so a timer writes a wall-clock tick to every partition of the ticks topic and
the agent handles it like any other message.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from confluent_kafka import Producer
from faust.types import EventT

from config.settings import JoinerSettings, KafkaSettings, SchemaSettings
from streams.dlq import dlq_record
from streams.joiner import PartitionJoiner
from streams.joiner import output as out
from streams.joiner.partitioning import murmur2_partition
from streams.joiner.settings import from_settings
from streams.joiner.state import (
    PartitionClock,
    clock_from_dict,
    clock_to_dict,
    decode_record,
    encode_record,
)
from streams.joiner_dedup import EmittedIds, read_emitted
from streams.joiner_metrics import JoinerMetrics, dlq_reason_code
from streams.schemas import DecodeError, TimeBounds, decode_event, decode_prediction, encode

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {
    "key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw",
}
CLOCK_ID = "\0clock"


def table_key(partition: int, prediction_id: str) -> bytes:
    """The table key of one prediction's row (or of the partition clock).

    Example:
        >>> table_key(2, "p9")
        b'2|p9'
    """
    return f"{partition}|{prediction_id}".encode()


def now_ms() -> int:
    """Wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


class JoinerWorker:
    """Builds the Faust app and handles each message with the pure core."""

    def __init__(
        self,
        kafka: KafkaSettings,
        joiner: JoinerSettings,
        schema: SchemaSettings,
        metrics: JoinerMetrics | None = None,
    ) -> None:
        self.kafka = kafka
        self.settings = joiner
        self.policy = from_settings(joiner)
        self.bounds = TimeBounds(schema.max_past_ms, schema.max_future_ms)
        self.metrics = metrics or JoinerMetrics()
        self.joiners: dict[int, PartitionJoiner] = {}
        self.emitted: dict[int, EmittedIds] = {}
        self.app = self._build_app()

    # -- wiring ----------------------------------------------------------------------------
    def _build_app(self) -> faust.App:
        k, s = self.kafka, self.settings
        state_dir = Path(s.state_dir).resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        app = faust.App(
            s.group_id,
            broker=[f"kafka://{server.strip()}" for server in k.bootstrap_servers.split(",")],
            store=f"{s.store}://",
            datadir=str(state_dir),
            processing_guarantee="exactly_once",
            broker_commit_interval=s.commit_interval_ms / 1000,
            broker_commit_every=10_000,
            topic_partitions=k.partitions,
            topic_replication_factor=k.replication_factor,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            web_enabled=False,
            broker_session_timeout=s.session_timeout_ms / 1000,
            broker_heartbeat_interval=max(1.0, s.session_timeout_ms / 3000),
            table_cleanup_interval=3600.0,
            topic_allow_declare=True,
        )
        self._tick_producer = Producer({"bootstrap.servers": k.bootstrap_servers, "linger.ms": 0})
        source = app.topic(k.predictions_topic, k.events_topic, s.ticks_topic, **RAW)
        self.table = app.Table(
            "joiner-state", default=None, partitions=k.partitions,
            key_type=bytes, value_type=bytes,
        )

        @app.agent(source, name="join")
        async def join(stream: faust.StreamT) -> None:
            async for event in stream.events():
                await self.handle(event)

        @app.timer(interval=s.tick_interval_ms / 1000)
        async def tick() -> None:
            # Outside any message, a send through Faust's exactly-once producer would join a
            # transaction nobody commits; ticks carry no state, so a plain producer does.
            stamp = str(now_ms()).encode()
            for partition in range(k.partitions):
                self._tick_producer.produce(
                    s.ticks_topic, key=b"tick", value=stamp, partition=partition
                )
            self._tick_producer.poll(0)

        async def forget(*_: Any, **__: Any) -> None:
            # Partitions may move; restore from the (recovered) table on next use.
            self.joiners.clear()
            self.emitted.clear()
            # Per-partition gauges belong to whoever owns the partition after the rebalance.
            self.metrics.pending.clear()
            self.metrics.watermark_lag.clear()

        # Strong references: the signal would drop a weakly held local function.
        app.on_partitions_revoked.connect(forget, weak=False)
        app.on_partitions_assigned.connect(forget, weak=False)

        return app

    # -- per message ---------------------------------------------------------------------
    def joiner_for(self, partition: int) -> PartitionJoiner:
        """The partition's joiner, restored from the table on first use after a rebalance."""
        joiner = self.joiners.get(partition)
        if joiner is None:
            prefix = f"{partition}|".encode()
            records, clock = [], PartitionClock()
            for key, value in self.table.items():
                if not key.startswith(prefix) or value is None:
                    continue
                if key == table_key(partition, CLOCK_ID):
                    clock = clock_from_dict(orjson.loads(value))
                else:
                    records.append(decode_record(value))
            joiner = PartitionJoiner.restore(self.policy, records, clock)
            emitted, complete = read_emitted(
                self.kafka.bootstrap_servers, self.kafka.examples_topic, partition,
                self.settings.dedup_horizon_ms,
            )
            if not complete:
                self.metrics.dedup_incomplete.inc()
                log.warning("partition %d: recent examples not fully read; dedup partial",
                            partition)
            self.joiners[partition] = joiner
            self.emitted[partition] = emitted
            log.info("partition %d: restored %d records, %d recent examples",
                     partition, len(records), len(emitted))
        return joiner

    async def handle(self, event: EventT) -> None:
        """Decode one message, step the partition's joiner, write what it emits."""
        msg = event.message
        partition, topic, key, value = msg.partition, msg.topic, msg.key, msg.value
        joiner = self.joiner_for(partition)
        if topic == self.settings.ticks_topic:
            now = now_ms()
            stamp = int(value or b"0")
            if now - stamp > 2 * self.settings.tick_interval_ms:
                # A tick read from a backlog (after a restart or a stall) says nothing about
                # whether the partition is quiet *now*; acting on a burst of them would close
                # every window before the backlog's events are read.
                return
            step = joiner.on_idle(now)
            self.emitted[partition].prune(now)
        else:
            expected = murmur2_partition(key, self.kafka.partitions) if key else partition
            if expected != partition:
                await self._reject(topic, topic, partition, msg.offset, key, value, "misrouted",
                                   f"key hashes to partition {expected}, arrived on {partition}"
                                   ": producers of the data topics must use the murmur2 "
                                   "partitioner (librdkafka: partitioner=murmur2_random)")
                return
            now = now_ms()
            if topic == self.kafka.predictions_topic:
                decoded = decode_prediction(value, key=key, now_ms=now, bounds=self.bounds)
                if isinstance(decoded, DecodeError):
                    await self._reject(topic, topic, partition, msg.offset, key, value,
                                       dlq_reason_code(decoded.reason), decoded.reason)
                    return
                step = joiner.on_prediction(decoded, msg.offset)
            else:
                decoded_event = decode_event(value, key=key, now_ms=now, bounds=self.bounds)
                if isinstance(decoded_event, DecodeError):
                    await self._reject(topic, topic, partition, msg.offset, key, value,
                                       dlq_reason_code(decoded_event.reason),
                                       decoded_event.reason)
                    return
                step = joiner.on_event(decoded_event, msg.offset)
        await self._apply(topic, partition, joiner, step)

    async def _send(self, source_topic: str, topic: str, partition: int, key: bytes | None,
                    value: bytes) -> None:
        """Produce inside the transaction of the message being processed.

        Faust's own ``Topic.send`` under exactly-once picks the transaction by the
        *destination* topic's group; for a topic this app does not consume (examples, dlq,
        late-labels) that is not the transaction that commits the input offsets and the table
        changelog, so a crash could keep one without the other (we lost and duplicated
        examples under kill -9 that way). The transactional id of the source partition ties
        them together.
        """
        group = self.app.assignor.group_for_topic(source_topic)
        transactional_id = f"{self.app.conf.id}-{group}-{partition}"

        await self.app.consumer.transactions.producer.send(
            topic, key, value, partition, None, None, transactional_id=transactional_id
        )

    async def _apply(self, source_topic: str, partition: int, joiner: PartitionJoiner,
                     step: out.Output) -> None:
        m = self.metrics
        now = now_ms()
        emitted = self.emitted[partition]
        for example in step.examples:
            if example.prediction_id in emitted:
                m.duplicates_suppressed.inc()
                continue
            await self._send(source_topic, self.kafka.examples_topic, partition,
                             example.prediction_id.encode(), encode(example))
            emitted.add(example.prediction_id, now)
            m.examples_out[example.label].inc()
            if example.label == 1:
                m.join_latency.observe(max(0, now - example.ts_label) / 1000)
        if self.settings.emit_late_labels:
            for late in step.late_labels:
                await self._send(source_topic, self.kafka.late_labels_topic, partition,
                                 late.prediction_id.encode(), orjson.dumps(late))
        for orphan in step.orphans:
            m.orphans[orphan.reason].inc()
            await self._reject(
                source_topic,
                self.kafka.events_topic if orphan.reason != out.LATE_PREDICTION
                else self.kafka.predictions_topic,
                partition, orphan.offset if orphan.offset is not None else -1,
                orphan.message.prediction_id.encode(), encode(orphan.message),
                orphan.reason, orphan.detail,
            )
        deleted = False
        for prediction_id, record in step.changes:
            row = table_key(partition, prediction_id)
            if record is None:
                deleted = True
                self.table.pop(row, None)
            else:
                self.table[row] = encode_record(record)
        # The clock must never be older than the deletions it justified (a replayed duplicate
        # could reopen a window); between deletions, ticks keep it fresh for restores.
        if deleted or step.orphans or step.counts.get(out.IDLE_ADVANCES):
            self.table[table_key(partition, CLOCK_ID)] = orjson.dumps(clock_to_dict(step.clock))
        if step.changes:
            # Faust queues changelog writes in a buffer that its transaction commit does not
            # drain: a commit could then carry this message's offset without its state (we
            # lost examples under kill -9 that way). Hand them to the transactional producer
            # before the message counts as processed.
            await self.app.producer.buffer.flush()
        for name, n in step.counts.items():
            m.outcomes[name].inc(n)
        m.predictions_in.inc(step.counts.get(out.PREDICTIONS_IN, 0))
        for kind, name in out.EVENTS_IN.items():
            if name in step.counts:
                m.events_in[kind].inc(step.counts[name])
        if out.LATE_CLICKS in step.counts:
            m.late_clicks.inc(step.counts[out.LATE_CLICKS])
        m.pending.labels(partition=str(partition)).set(joiner.pending)
        watermark = joiner.watermark
        if watermark is not None:
            m.watermark_lag.labels(partition=str(partition)).set((now - watermark) / 1000)

    async def _reject(self, source_topic: str, topic: str, partition: int, offset: int,
                      key: bytes | None, value: bytes | None, code: str, reason: str) -> None:
        record = dlq_record(topic, partition, offset, reason, value, key)
        await self._send(source_topic, self.kafka.dlq_topic, partition, key,
                         orjson.dumps(record))
        self.metrics.dlq[code].inc()


def ensure_ticks_topic(kafka: KafkaSettings, joiner: JoinerSettings) -> None:
    """Create the internal ticks topic, co-partitioned with the data topics, if missing.

    Raises:
        TopicError: it exists with another partition count.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.topics import TopicError, existing_topics

    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    have = existing_topics(admin).get(joiner.ticks_topic)
    if have is None:
        spec = NewTopic(joiner.ticks_topic, num_partitions=kafka.partitions,
                        replication_factor=kafka.replication_factor,
                        config={"retention.ms": str(3_600_000)})
        try:
            admin.create_topics([spec])[joiner.ticks_topic].result(timeout=30)
        except Exception as err:  # a second worker starting at the same time won the race
            if "already exists" not in str(err) and "TOPIC_ALREADY_EXISTS" not in str(err):
                raise
    elif have != kafka.partitions:
        raise TopicError(
            f"topic '{joiner.ticks_topic}' has {have} partitions, the data topics "
            f"{kafka.partitions}"
        )


def run_worker(worker: JoinerWorker, loglevel: str = "warning") -> None:
    """Run the Faust worker until SIGTERM/SIGINT (blocks)."""
    from faust.worker import Worker

    ensure_ticks_topic(worker.kafka, worker.settings)
    Worker(worker.app, loglevel=loglevel, quiet=True).execute_from_commandline()
