"""The natural-label joiner as a Faust worker: a thin shell around ``streams.joiner.core``.

One agent reads ``predictions``, ``events`` and an internal ``ticks`` topic, all co-partitioned;
partition N of each goes to the same ``PartitionJoiner``.

Exactly once as the trainer sees it:

1. ``processing_guarantee="exactly_once"``: Faust consumes with read_committed and commits the
   input offsets of partition N in a Kafka transaction of its own (``commit_interval_ms``).
   Every output of a message from partition N — examples, late labels, DLQ records and the
   state rows below — is sent inside that same transaction (``_write``: a batch's outputs under
   one hold of the transaction's lock, so no commit falls between a message's outputs and its
   state), so a crash aborts them together with the offsets and the input is replayed.
2. **State is ours, not a Faust table.** Each pending prediction is one row of a compacted
   changelog topic (``state_topic``, key ``b"<partition>|<prediction_id>"``, plus one clock row
   per partition) written in the transaction above. When a partition is (re)assigned the worker
   rebuilds its joiner from that topic read with read_committed, i.e. exactly the state after
   the last committed offset. A Faust table did not: kill -9 runs lost examples with it, one
   recovery crashed with ConsistencyError when a rebalance hit an open transaction, and its
   in-memory store is never reset at a rebalance, so it keeps writes of aborted transactions
   (replayed input can then find its own effects and emit nothing).
3. **Revocation aborts.** Faust drops a revoked partition's acknowledged offsets before its
   revocation commit, so that commit leaves the partition's transaction open, and the next
   generation would commit it together with the replay of the same input (duplicates). The
   worker aborts the open transactions of revoked partitions instead; whoever owns a partition
   next replays from its committed offset and state.
4. On (re)assignment a worker also reads its partition's recent ``examples`` back
   (``streams.joiner.worker.readback``) and never sends one for a prediction already there.

The integration tests kill -9 the worker mid-stream and move partitions between live workers,
and count every example on a read_committed consumer instead of trusting any layer.

Why ticks: a window closing on a quiet partition is a change of state and of output, which must
belong to a partition's transaction like any other; so a timer writes a wall-clock tick to
every partition of the ticks topic and the agent handles it like any other message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from confluent_kafka import Producer
from faust.exceptions import ProducerSendError
from faust.types import EventT

from config.settings import JoinerSettings, KafkaSettings, SchemaSettings
from streams.dlq import dlq_record
from streams.joiner import JoinerError, PartitionJoiner
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
from streams.joiner.worker.metrics import JoinerMetrics, dlq_reason_code
from streams.joiner.worker.readback import EmittedIds, read_emitted, read_state
from streams.schemas import DecodeError, TimeBounds, decode_event, decode_prediction, encode

log = logging.getLogger(__name__)

RAW: dict[str, Any] = {
    "key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw",
}
CLOCK_ID = "\0clock"
# An output waiting to be written: (topic, key, value); value None deletes a state row.
Record = tuple[str, bytes | None, bytes | None]


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
            store="memory://",
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

        @app.agent(source, name="join")
        async def join(stream: Any) -> None:  # faust.Stream: StreamT lacks take_events
            async for events in stream.take_events(s.batch_max, within=s.batch_within_ms / 1000):
                await self.handle_batch(list(events))

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

        async def revoked(*args: Any, **__: Any) -> None:
            # Called as (app, revoked topic-partitions, signal=...).
            tps = next((a for a in args if isinstance(a, set)), set())
            await self._abort_open_transactions({tp.partition for tp in tps})
            forget()

        async def assigned(*_: Any, **__: Any) -> None:
            forget()

        def forget() -> None:
            # Partitions may move; restore from the committed state on next use.
            self.joiners.clear()
            self.emitted.clear()
            # Per-partition gauges belong to whoever owns the partition after the rebalance.
            self.metrics.pending.clear()
            self.metrics.watermark_lag.clear()

        # Strong references: the signal would drop a weakly held local function.
        app.on_partitions_revoked.connect(revoked, weak=False)
        app.on_partitions_assigned.connect(assigned, weak=False)

        return app

    # -- per message ---------------------------------------------------------------------
    async def joiner_for(self, partition: int) -> PartitionJoiner:
        """The partition's joiner, restored from the committed state on first use after a
        (re)assignment.

        Raises:
            JoinerError: the committed state could not be read to its end (the worker stops;
                its supervisor restarts it) or is inconsistent.
        """
        joiner = self.joiners.get(partition)
        if joiner is None:
            k = self.kafka
            loop = asyncio.get_running_loop()
            # Blocking reads on the event loop would starve the group heartbeat (a long one
            # gets the worker evicted and the rebalance starts over): read in threads.
            rows, complete = await loop.run_in_executor(
                None, read_state, k.bootstrap_servers, self.settings.state_topic, partition,
            )
            if not complete:
                raise JoinerError(f"partition {partition}: committed state not read to its end "
                                  f"in time ('{self.settings.state_topic}')")
            records, clock = [], PartitionClock()
            clock_key = table_key(partition, CLOCK_ID)
            for key, value in rows.items():
                if key == clock_key:
                    clock = clock_from_dict(orjson.loads(value))
                else:
                    records.append(decode_record(value))
            joiner = PartitionJoiner.restore(self.policy, records, clock)
            emitted, complete = await loop.run_in_executor(
                None, read_emitted, k.bootstrap_servers, k.examples_topic, partition,
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

    async def handle_batch(self, events: list[EventT]) -> None:
        """Step the joiners through a batch of messages, then write each partition's outputs.

        Faust acknowledges the batch only after this returns, so its offsets can never be
        committed ahead of what it wrote.
        """
        outbox: dict[int, list[Record]] = {}
        for event in events:
            partition = event.message.partition
            await self.handle(event, outbox.setdefault(partition, []))
        for partition, records in outbox.items():
            if records:
                await self._write(partition, records)

    async def handle(self, event: EventT, outbox: list[Record]) -> None:
        """Decode one message and step its partition's joiner; outputs go to ``outbox``."""
        msg = event.message
        partition, topic, key, value = msg.partition, msg.topic, msg.key, msg.value
        joiner = await self.joiner_for(partition)
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
                self._reject(outbox, topic, partition, msg.offset, key, value, "misrouted",
                             f"key hashes to partition {expected}, arrived on {partition}"
                             ": producers of the data topics must use the murmur2 "
                             "partitioner (librdkafka: partitioner=murmur2_random)")
                return
            now = now_ms()
            if topic == self.kafka.predictions_topic:
                decoded = decode_prediction(value, key=key, now_ms=now, bounds=self.bounds)
                if isinstance(decoded, DecodeError):
                    self._reject(outbox, topic, partition, msg.offset, key, value,
                                 dlq_reason_code(decoded.reason), decoded.reason)
                    return
                step = joiner.on_prediction(decoded, msg.offset)
            else:
                decoded_event = decode_event(value, key=key, now_ms=now, bounds=self.bounds)
                if isinstance(decoded_event, DecodeError):
                    self._reject(outbox, topic, partition, msg.offset, key, value,
                                 dlq_reason_code(decoded_event.reason), decoded_event.reason)
                    return
                step = joiner.on_event(decoded_event, msg.offset)
        self._collect(outbox, partition, joiner, step)

    def _transactional_id(self, partition: int) -> str:
        # Faust's id for the transaction that commits this partition's input offsets (the
        # three input topics form one topic group).
        group = self.app.assignor.group_for_topic(self.kafka.predictions_topic)
        return f"{self.app.conf.id}-{group}-{partition}"

    async def _abort_open_transactions(self, partitions: set[int]) -> None:
        """Abort the open transactions of revoked partitions (see the module docstring, 3)."""
        producer = self.app.consumer.transactions.producer
        open_ids = getattr(producer, "_transaction_producers", {})
        for partition in sorted(partitions):
            transactional_id = self._transactional_id(partition)
            if transactional_id in open_ids:
                await producer.abort_transaction(transactional_id)
                log.info("partition %d revoked: open transaction aborted", partition)

    async def _write(self, partition: int, records: list[Record]) -> None:
        """Send ``records`` inside the transaction that commits ``partition``'s input offsets,
        all of them under one hold of its lock, so a commit never falls between them.

        Faust's own ``Topic.send`` under exactly-once picks the transaction by the
        *destination* topic's group; for a topic this app does not consume (examples, dlq,
        late-labels, state) that is not the transaction that commits the input offsets, so a
        crash could keep one without the other (we lost and duplicated examples under kill -9
        that way). Faust's driver has no public way to hold a transaction across several
        sends; its lock and producer per transactional id are used directly.

        Raises:
            ProducerSendError: no open transaction for the partition (it was revoked).
        """
        driver: Any = self.app.consumer.transactions.producer  # faust's aiokafka Producer
        transactional_id = self._transactional_id(partition)
        producer = driver._transaction_producers.get(transactional_id)
        if producer is None:
            raise ProducerSendError(f"no transaction producer for {transactional_id}")
        async with driver._trn_locks[transactional_id]:
            for topic, key, value in records:
                await producer.send(topic, value, key=key, partition=partition)

    def _collect(self, outbox: list[Record], partition: int, joiner: PartitionJoiner,
                 step: out.Output) -> None:
        """Queue what ``step`` emits and changes, in that order, and count it."""
        m = self.metrics
        now = now_ms()
        emitted = self.emitted[partition]
        for example in step.examples:
            if example.prediction_id in emitted:
                m.duplicates_suppressed.inc()
                continue
            outbox.append((self.kafka.examples_topic, example.prediction_id.encode(),
                           encode(example)))
            emitted.add(example.prediction_id, now)
            m.examples_out[example.label].inc()
            if example.label == 1:
                m.join_latency.observe(max(0, now - example.ts_label) / 1000)
        if self.settings.emit_late_labels:
            for late in step.late_labels:
                outbox.append((self.kafka.late_labels_topic, late.prediction_id.encode(),
                               orjson.dumps(late)))
        for orphan in step.orphans:
            m.orphans[orphan.reason].inc()
            self._reject(
                outbox,
                self.kafka.events_topic if orphan.reason != out.LATE_PREDICTION
                else self.kafka.predictions_topic,
                partition, orphan.offset if orphan.offset is not None else -1,
                orphan.message.prediction_id.encode(), encode(orphan.message),
                orphan.reason, orphan.detail,
            )
        state = self.settings.state_topic
        deleted = False
        for prediction_id, record in step.changes:
            row = table_key(partition, prediction_id)
            if record is None:
                deleted = True
                outbox.append((state, row, None))
            else:
                outbox.append((state, row, encode_record(record)))
        # The clock must never be older than the deletions it justified (a replayed duplicate
        # could reopen a window); between deletions, ticks keep it fresh for restores.
        if deleted or step.orphans or step.counts.get(out.IDLE_ADVANCES):
            outbox.append((state, table_key(partition, CLOCK_ID),
                           orjson.dumps(clock_to_dict(step.clock))))
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

    def _reject(self, outbox: list[Record], topic: str, partition: int, offset: int,
                key: bytes | None, value: bytes | None, code: str, reason: str) -> None:
        record = dlq_record(topic, partition, offset, reason, value, key)
        outbox.append((self.kafka.dlq_topic, key, orjson.dumps(record)))
        self.metrics.dlq[code].inc()


def ensure_internal_topics(kafka: KafkaSettings, joiner: JoinerSettings) -> None:
    """Create the worker group's own topics, co-partitioned with the data topics, if missing.

    ``ticks_topic`` keeps an hour (ticks older than two intervals are skipped anyway);
    ``state_topic`` is compacted: the latest row per pending prediction, tombstones for closed
    ones. Returns once both are visible to clients.

    Raises:
        TopicError: one exists with another partition count, or does not appear in time.
    """
    from confluent_kafka.admin import AdminClient, NewTopic

    from streams.topics import TopicError, existing_topics

    configs = {
        joiner.ticks_topic: {"retention.ms": str(3_600_000)},
        joiner.state_topic: {"cleanup.policy": "compact", "segment.ms": str(600_000)},
    }
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    have = existing_topics(admin)
    for name, config in configs.items():
        if name not in have:
            spec = NewTopic(name, num_partitions=kafka.partitions,
                            replication_factor=kafka.replication_factor, config=config)
            try:
                admin.create_topics([spec])[name].result(timeout=30)
            except Exception as err:  # a second worker starting at the same time won the race
                if "already exists" not in str(err) and "TOPIC_ALREADY_EXISTS" not in str(err):
                    raise
        elif have[name] != kafka.partitions:
            raise TopicError(
                f"topic '{name}' has {have[name]} partitions, the data topics {kafka.partitions}"
            )
    deadline = time.monotonic() + 30
    while not all(existing_topics(admin).get(name) == kafka.partitions for name in configs):
        if time.monotonic() > deadline:
            raise TopicError(f"topics {sorted(configs)} not visible after 30 s")
        time.sleep(0.1)


def run_worker(worker: JoinerWorker, loglevel: str = "warning") -> None:
    """Run the Faust worker until SIGTERM/SIGINT (blocks)."""
    from faust.worker import Worker

    ensure_internal_topics(worker.kafka, worker.settings)
    Worker(worker.app, loglevel=loglevel, quiet=True).execute_from_commandline()
