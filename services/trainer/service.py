"""`streamlearn train`: the Kafka, Redis and registry shell around the pure trainer core.

One loop, one thread::

    consume examples (read_committed) → decode (bad ones → DLQ) → CohortBuffer → MicroBatcher
      → SeenIds (drop redelivered prediction_ids)
      → Learner.step (``models.training.loop``: guard → policy → evaluation → drift alarm →
        sanity set → gate) → Outcome
      → apply the outcome: registry (register, promote or reject), metrics, DriftWatch
        (feature/score/slice monitors, ``services.trainer.drift``), console
      → every checkpoint_interval_ms: Checkpoint to Redis, *then* commit offsets to Kafka

Every decision is the ``Learner``'s, the same class ``bench quality`` drives (built from the
same settings by ``services.trainer.build``); this shell only applies its outcomes. The
checkpoint is the batch outcome made durable; a restart resumes from its offsets with its
challenger and dedup ids, so each example changes the durable challenger exactly once. State
encoding lives in ``services.trainer.state``; Redis persistence in ``services.trainer.store``.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from confluent_kafka import (
    OFFSET_STORED,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from rich.console import Console

from config.settings import (
    DriftSettings,
    GateSettings,
    KafkaSettings,
    SchemaSettings,
    TrainerMode,
    TrainerSettings,
    TriggerSettings,
)
from models.errors import ArtifactError, BatchError, ChampionChangedError
from models.gate.decision import GateDecision
from models.learners.base import Model, load_model
from models.registry import Lineage, Mode, ModelRecord
from models.training.batching import CohortBuffer, MicroBatcher, SeenIds
from models.training.loop import Learner, Outcome
from models.training.policies import TrainingPolicy
from models.training.step import Evaluation, Labeled
from services.registry.base import ensure_champion, register
from services.registry.redis import RedisRegistry
from services.trainer.build import build_learner, new_model
from services.trainer.drift import DriftWatch
from services.trainer.metrics import TrainerMetrics
from services.trainer.report import Report
from services.trainer.state import (
    Checkpoint,
    OffsetLedger,
    Received,
    Totals,
    checkpoint_of,
    durable_offsets,
    resume,
)
from services.trainer.store import StateStore
from streams.dlq import DlqWriter
from streams.schemas import DecodeError, TimeBounds, decode_example

log = logging.getLogger(__name__)


class Trainer:
    """The trainer process's state and loop (``start``, then ``run``, then ``close``)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        cfg: TrainerSettings,
        gate: GateSettings,
        schema: SchemaSettings,
        registry: RedisRegistry,
        store: StateStore,
        metrics: TrainerMetrics | None = None,
        console: Console | None = None,
        clock: Callable[[], float] = time.time,
        triggers: TriggerSettings | None = None,
        drift: DriftSettings | None = None,
    ) -> None:
        self.kafka, self.cfg, self.gate_settings = kafka, cfg, gate
        self.drift_cfg = drift or DriftSettings()
        self.triggers = triggers or TriggerSettings()
        self.bounds = TimeBounds(schema.max_past_ms, schema.max_future_ms)
        self.registry, self.store = registry, store
        self.metrics = metrics or TrainerMetrics()
        self.console = console or Console(highlight=False)
        self.clock = clock
        self.owner = f"{uuid.uuid4().hex[:8]}"
        self.consumer = Consumer({
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": cfg.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        })
        self.producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 5})
        self.dlq = DlqWriter(self.producer, kafka.dlq_topic)  # type: ignore[arg-type]
        self.batcher: MicroBatcher[Received] = MicroBatcher(cfg.batch_size, cfg.max_wait_ms)
        # Whole cohorts, in prediction-time order (see CohortBuffer); the CLI resolves -1.
        self.cohorts: CohortBuffer[Received] = CohortBuffer(max(cfg.cohort_wait_ms, 0))
        self.seen = SeenIds(cfg.dedup_capacity)
        self.ledger = OffsetLedger()
        self.totals = Totals()
        self.champion_version = ""
        self.learner: Learner  # the one decision loop, built by ``start``
        self.mode: TrainerMode = cfg.mode
        self.drift = DriftWatch(self.drift_cfg, self.metrics, self.console)
        self.report = Report(self.metrics, self.console, self.drift, cfg.sanity_size)
        self._trained_lineage: Lineage | None = None  # triggered: as of the last training
        self.last_decision: GateDecision | None = None
        self._dirty = False
        self._last_checkpoint = self._last_poll = self._last_log = time.monotonic()
        self._logged_trained = 0

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # The loop's state, read by the shell, its tests and its checkpoint.
    @property
    def champion(self) -> Model:
        return self.learner.champion

    @property
    def policy(self) -> TrainingPolicy:
        return self.learner.policy

    @property
    def evaluation(self) -> Evaluation:
        return self.learner.evaluation

    @property
    def sanity(self) -> list[Labeled]:
        return self.learner.sanity

    # -- start -----------------------------------------------------------------------------

    def start(self, lock_wait_s: float | None = None) -> None:
        """Take the lease, load (or cold-start) the champion, restore state, assign partitions."""
        wait = lock_wait_s if lock_wait_s is not None else 2 * self.cfg.lock_ttl_ms / 1000
        self.store.acquire(self.owner, self.cfg.lock_ttl_ms, wait)
        self.champion_version, champion = self._champion_or_cold_start()
        self.metrics.champion.info({"version": self.champion_version})
        self._restore(self.store.load(), champion)
        metadata = self.consumer.list_topics(self.kafka.examples_topic, timeout=30)
        partitions = sorted(metadata.topics[self.kafka.examples_topic].partitions)
        stored = self.ledger.next_offsets
        # Resume from the checkpoint's offsets; without one, from the group's committed ones,
        # else from the beginning (auto.offset.reset).
        topic = self.kafka.examples_topic
        self.consumer.assign(
            [TopicPartition(topic, p, stored.get(p, OFFSET_STORED)) for p in partitions]
        )
        self.console.print(
            f"trainer [bold]{self.cfg.group_id}[/] ({self.mode}, {self.cfg.model}) on "
            f"{self.kafka.examples_topic} ({len(partitions)} partitions); champion "
            f"[bold]{self.champion_version}[/]; resumed at {self.totals.trained} examples"
        )

    def _champion_or_cold_start(self) -> tuple[str, Model]:
        """The champion; with none yet, the configured model, untrained, registered and
        promoted (``ensure_champion``: whichever of serving and the trainer comes first)."""
        version = ensure_champion(self.registry, lambda: new_model(self.cfg),
                                  reason="cold start: no champion yet")
        return version, self.registry.load(version)

    def _restore(self, cp: Checkpoint | None, champion: Model) -> None:
        challenger, same = None, False
        if cp is not None:
            self.ledger, self.totals = cp.ledger, cp.totals
            self.seen = SeenIds.from_state(cp.seen, self.cfg.dedup_capacity)
            same = cp.mode == self.mode and cp.champion == self.champion_version
            if same:
                challenger = load_model(cp.challenger)  # signature verified by the store
            else:
                self.ledger.reset_lineage()
        cold = self.registry.get(self.champion_version).mode == "cold_start"
        self.learner = build_learner(self.cfg, self.gate_settings, champion=champion,
                                     challenger=challenger, triggers=self.triggers,
                                     drift=self.drift_cfg, cold=cold)
        if cp is not None:
            resume(self.learner, cp, same_mode=cp.mode == self.mode, same_challenger=same,
                   seed=self.cfg.seed, replay_capacity=self.cfg.replay_capacity)
        self.metrics.restored_examples.set(self.totals.trained)
        self.metrics.durable_examples.set(self.totals.trained)

    # -- the loop --------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Consume, train and checkpoint until ``should_stop()``; then flush and checkpoint."""
        try:
            while not should_stop():
                self.poll_once()
            leftover = self.batcher.flush()
            if leftover:
                self._on_batch(leftover)
            self.checkpoint()
        finally:
            self.close()

    def poll_once(self, timeout_s: float = 0.2) -> None:
        """One consume call and whatever it completes (batches, gate, checkpoint, logs)."""
        deadline = self.batcher.deadline_ms
        if deadline is not None:
            timeout_s = min(timeout_s, max(0.0, (deadline - self.now_ms()) / 1000))
        messages = self.consumer.consume(self.cfg.batch_size, timeout=timeout_s)
        for message in messages:
            received = self._decode(message)
            if received is not None:
                self.cohorts.add(received)
        for received in self.cohorts.release(self.now_ms()):
            batch = self.batcher.add(received, self.now_ms())
            if batch:
                self._on_batch(batch)
                self._maybe_checkpoint()  # the batcher is empty: offsets are consistent
        batch = self.batcher.poll(self.now_ms())
        if batch:
            self._on_batch(batch)
        if not len(self.batcher):
            self._maybe_checkpoint()
        self._housekeeping()

    def _decode(self, message: Message) -> Received | None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            log.warning("consumer error: %s", error)
            return None
        partition, offset = message.partition() or 0, message.offset() or 0
        decoded = decode_example(message.value(), key=message.key(), now_ms=self.now_ms(),
                                 bounds=self.bounds)
        if isinstance(decoded, DecodeError):
            self._reject(partition, offset, decoded.reason, message.value(), message.key())
            return None
        return Received(decoded, partition, offset)

    def _reject(self, partition: int, offset: int, reason: str, raw: Any, key: Any,
                code: str = "schema") -> None:
        self.dlq.reject(self.kafka.examples_topic, partition, offset, reason, raw, key)
        self.ledger.consumed(partition, offset, trained=False)
        self.totals = replace(self.totals, invalid=self.totals.invalid + 1)
        self.metrics.examples["invalid"].inc()
        self.metrics.dlq[code].inc()
        self._dirty = True

    def _on_batch(self, batch: list[Received]) -> None:
        now = self.now_ms()
        fresh, n_dup = self.seen.filter_new(batch, now)
        started = time.perf_counter()
        try:
            outcome = self.learner.step([r.example for r in fresh], now)
        except BatchError:  # scoring refuses before anything learns: find the culprits
            fresh = self._drop_unlearnable(fresh)
            outcome = self.learner.step([r.example for r in fresh], now)
        self.metrics.update_seconds.observe(time.perf_counter() - started)
        kept = {id(e) for e in outcome.kept}
        for r in batch:  # duplicates, guarded and refused examples are done with too
            self.ledger.consumed(r.partition, r.offset, trained=id(r.example) in kept)
        self._apply(outcome, n_dup)

    def _drop_unlearnable(self, fresh: list[Received]) -> list[Received]:
        """Route to the DLQ the examples a model refuses to encode (the decoder already
        checks feature types, so this is a backstop), so one cannot fail the whole batch."""
        kept = []
        for r in fresh:
            try:
                self.champion.predict_proba_many([r.example.features])
                kept.append(r)
            except BatchError as exc:
                self._reject(r.partition, r.offset, f"model refused the example: {exc}",
                             None, r.prediction_id, code="batch")
        return kept

    # -- applying the loop's outcome -------------------------------------------------------

    def _apply(self, outcome: Outcome, n_dup: int) -> None:
        """Registry, checkpoint and report for one ``Learner.step``; decides nothing."""
        result, t = outcome.result, self.totals
        self.totals = replace(t, batches=t.batches + 1, trained=t.trained + len(outcome.kept),
                              duplicates=t.duplicates + n_dup, capped=t.capped + result.n_capped,
                              decisions=t.decisions + (outcome.decision is not None))
        self._dirty = True
        self.report.batch(outcome, n_dup, self.policy)
        if result.retrained and self.mode == "triggered":
            self._trained_lineage = self.ledger.lineage(self.kafka.examples_topic)
        decision, judged = outcome.decision, outcome.judged
        if decision is None or judged is None:
            return
        self.last_decision = decision
        self.report.decision(self.champion_version, outcome)
        if decision.outcome == "keep_training":
            return
        # A rejection records its decision with the status change (``reject``); recording it
        # at registration too listed it twice in the registry's decisions.
        record = self._register(judged, self.champion_version, self.policy.mode,
                                decision if decision.outcome == "promote" else None,
                                self._trained_lineage if self.mode == "triggered" else None)
        if decision.outcome == "promote":
            try:
                self.registry.promote(record.version, decision.reason,
                                      expected=self.champion_version)
                self._switch_champion(record.version, judged, adopted=True)
                self.console.print(f"[green]✔ promoted[/] {record.version}")
            except ChampionChangedError as exc:
                self.console.print(f"[yellow]not promoted[/]: {exc}")
                self._check_champion(force=True)
        else:
            self.registry.reject(record.version, decision)
            self._new_challenger()
        self.checkpoint()  # the registry moved: make the matching state durable at once

    def _register(self, model: Model, parent: str | None, mode: Mode,
                  decision: GateDecision | None, lineage: Lineage | None = None) -> ModelRecord:
        """Put ``model`` in the registry; ``lineage`` defaults to what the ledger says the
        challenger learnt (triggered mode passes it as of its last training: the examples
        scored since are evidence, not training data)."""
        return register(self.registry, model, parent=parent, mode=mode, now_ms=self.now_ms(),
                        lineage=lineage or self.ledger.lineage(self.kafka.examples_topic),
                        decision=decision)

    def _switch_champion(self, version: str, model: Model, adopted: bool = False) -> None:
        """``version`` serves now; ``adopted``: the loop already made it its champion."""
        self.champion_version = version
        if not adopted:
            self.learner.adopt(model)
        self.metrics.champion.info({"version": version})
        self.metrics.forget_versions(version)
        self._new_challenger()

    def _new_challenger(self) -> None:
        self.ledger.reset_lineage()
        self._trained_lineage = None
        self._dirty = True

    def _check_champion(self, force: bool = False) -> None:
        """Follow a champion promoted (or rolled back) elsewhere: the next challenger is its
        replica. A champion whose artifact fails verification is refused; we keep ours."""
        version = self.registry.champion_version()
        if version is None or (version == self.champion_version and not force):
            return
        try:
            model = self.registry.load(version)
        except ArtifactError as exc:
            self.console.print(f"[red]champion {version} refused[/]: {exc}")
            return
        self.console.print(f"new champion [bold]{version}[/] (was {self.champion_version}): "
                           "the challenger restarts from it")
        self._switch_champion(version, model)

    def _maybe_refresh_sanity(self) -> None:
        """Act on ``streamlearn models refresh-sanity``: drop the frozen sanity set; the next
        ``sanity_size`` fresh examples become the new one. The request is cleared only once a
        checkpoint holds the emptied set, so a crash in between repeats the refresh."""
        if len(self.batcher):
            return  # checkpoints are taken between batches; the next poll acts on it
        at = self.registry.sanity_refresh_requested()
        if at is None:
            return
        self.learner.refresh_sanity()
        self._dirty = True
        self.checkpoint()
        self.registry.clear_sanity_refresh(at)
        self.console.print(f"sanity set refreshed (request of {at}): the next "
                           f"{self.cfg.sanity_size} examples form the new one")

    # -- durability ------------------------------------------------------------------------

    def _maybe_checkpoint(self) -> None:
        due = (time.monotonic() - self._last_checkpoint) * 1000 >= self.cfg.checkpoint_interval_ms
        if self._dirty and due:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Make the state durable in Redis, then commit the same offsets to Kafka."""
        if not self._dirty:
            return
        started = time.perf_counter()
        self.producer.flush(30)  # DLQ records are durable before their offsets are passed
        self.store.save(checkpoint_of(
            self.learner, mode=self.mode, champion=self.champion_version,
            ledger=self._durable_ledger(), seen=self.seen.to_state(), totals=self.totals,
            saved_at=self.now_ms()))
        offsets = [TopicPartition(self.kafka.examples_topic, p, o)
                   for p, o in sorted(self._durable_offsets().items())]
        if offsets:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:  # Redis holds the truth; Kafka's copy is for lag
                log.warning("offset commit failed (the checkpoint is durable): %s", exc)
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)
        self.metrics.durable_examples.set(self.totals.trained)
        self.report.lag(self.consumer, self.ledger.next_offsets)

    def _durable_offsets(self) -> dict[int, int]:
        return durable_offsets(self.ledger.next_offsets, self.cohorts.held())

    def _durable_ledger(self) -> OffsetLedger:
        if not len(self.cohorts):
            return self.ledger
        ledger = copy.copy(self.ledger)
        ledger.next_offsets = self._durable_offsets()
        return ledger

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if (now - self._last_poll) * 1000 >= self.cfg.champion_poll_ms:
            self._last_poll = now
            self.store.refresh(self.owner, self.cfg.lock_ttl_ms)
            self._check_champion()
            self._maybe_refresh_sanity()
        if now - self._last_log >= self.cfg.log_interval_s:
            rate = (self.totals.trained - self._logged_trained) / (now - self._last_log)
            self._last_log, self._logged_trained = now, self.totals.trained
            self.report.progress(self.totals, self.evaluation, rate)

    def close(self) -> None:
        """Flush the DLQ producer, leave the group's consumer, give the lease up."""
        self.producer.flush(10)
        self.consumer.close()
        self.store.release(self.owner)
