"""`streamlearn train`: the Kafka, Redis and registry shell around the pure trainer core.

One loop, one thread::

    consume examples (read_committed) → decode (bad ones → DLQ) → MicroBatcher
      → SeenIds (drop redelivered prediction_ids) → policy.process (test-then-train)
      → DriftWatch (feature/score/slice/loss drift metrics, ``services.trainer.drift``)
      → Evaluation → every gate_every_examples (triggered mode: when the policy says the
        gate is due, ``models.triggers``): models.gate.decision.decide → registry
      → every checkpoint_interval_ms: Checkpoint to Redis, *then* commit offsets to Kafka

The checkpoint is the batch outcome made durable; a restart resumes from its offsets with its
challenger and dedup ids, so each example changes the durable challenger exactly once.
The learning itself lives in ``models`` (training, policies, gate); state encoding in
``services.trainer.state``; Redis persistence in ``services.trainer.store``.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

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
from models.errors import ArtifactError, BatchError, ChampionChangedError, VersionExistsError
from models.evaluation.metrics import auc
from models.gate.decision import GateConfig, GateDecision, PairedLosses, decide
from models.learners.base import Model, load_model
from models.learners.factory import build_model
from models.registry import Lineage, Mode, ModelRecord
from models.training.batching import ClickGuard, CohortBuffer, MicroBatcher, SeenIds
from models.training.policies import StatefulPolicy, StatelessPolicy, TrainingPolicy
from models.training.replay import Reservoir
from models.training.step import Evaluation, StepResult, paired_on
from models.training.triggered import TriggeredPolicy
from models.triggers import Triggers
from services.registry.redis import RedisRegistry
from services.trainer.drift import DriftWatch
from services.trainer.metrics import TrainerMetrics
from services.trainer.state import Checkpoint, OffsetLedger, Totals, window_of
from services.trainer.store import StateStore
from streams.dlq import DlqWriter
from streams.schemas import DecodeError, Example, TimeBounds, decode_example

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """An example and where it came from."""

    example: Example
    partition: int
    offset: int

    @property
    def prediction_id(self) -> str:
        return self.example.prediction_id

    @property
    def ts_prediction(self) -> int:
        return self.example.ts_prediction

    @property
    def features(self) -> dict[str, Any]:
        return self.example.features

    @property
    def label(self) -> int:
        return self.example.label

    @property
    def ts_label(self) -> int:
        return self.example.ts_label


def new_model(cfg: TrainerSettings) -> Model:
    """A fresh model as configured (cold start, stateless retrains)."""
    return build_model(cfg.model, **cfg.model_hyperparams())


def build_policy(
    mode: str, champion: Model, cfg: TrainerSettings, challenger: Model | None = None,
    triggers: TriggerSettings | None = None, min_evidence: int = 1_024,
) -> TrainingPolicy:
    """The configured ``StatefulPolicy``, ``StatelessPolicy`` or ``TriggeredPolicy``.

    ``triggers`` (default ``TriggerSettings()``) and ``min_evidence`` (the gate's
    ``min_examples``) are for triggered mode only.
    """
    if mode == "triggered":
        t = triggers or TriggerSettings()
        return TriggeredPolicy(
            champion, Triggers.from_config(t.model_dump()), challenger=challenger,
            min_evidence=min_evidence, buffer_max=t.buffer_max, per_user_cap=cfg.per_user_cap,
            epochs=t.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
        )
    if mode == "stateful":
        return StatefulPolicy(
            champion, challenger=challenger, per_user_cap=cfg.per_user_cap,
            replay_ratio=cfg.replay_ratio, replay_capacity=cfg.replay_capacity, seed=cfg.seed,
        )
    return StatelessPolicy(
        champion, cfg.model, cfg.model_hyperparams(), challenger=challenger,
        window=cfg.stateless_window,
        retrain_every_examples=cfg.stateless_retrain_examples or None,
        retrain_every_ms=cfg.stateless_retrain_ms or None,
        epochs=cfg.stateless_epochs, batch_size=cfg.batch_size,
        per_user_cap=cfg.per_user_cap, seed=cfg.seed,
    )


def gate_config(gate: GateSettings) -> GateConfig:
    """The pure gate's thresholds from settings (same field names)."""
    return GateConfig(**gate.model_dump())


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
        self.kafka, self.cfg, self.gate = kafka, cfg, gate_config(gate)
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
        self.guard = (ClickGuard(cfg.guard_max_ctr, cfg.guard_min_labels)
                      if cfg.guard_min_labels else None)
        self.evaluation = Evaluation(max_examples=cfg.gate_window_max)
        self.sanity: list[Example] = []
        self.seen = SeenIds(cfg.dedup_capacity)
        self.ledger = OffsetLedger()
        self.totals = Totals()
        self.since_gate = 0
        self.champion_version = ""
        self.champion: Model
        self.policy: TrainingPolicy
        self.mode: TrainerMode = cfg.mode
        # In triggered mode with a drift trigger, the trigger's detector is the loss alarm.
        own_detector = not (self.mode == "triggered" and self.triggers.drift_detector != "none")
        self.drift = DriftWatch(drift or DriftSettings(), self.metrics, self.console,
                                loss_detector=own_detector)
        self._trained_lineage: Lineage | None = None  # triggered: as of the last training
        self.last_decision: GateDecision | None = None
        self._dirty = False
        self._last_checkpoint = self._last_poll = self._last_log = time.monotonic()
        self._logged_trained = 0

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- start -----------------------------------------------------------------------------

    def start(self, lock_wait_s: float | None = None) -> None:
        """Take the lease, load (or cold-start) the champion, restore state, assign partitions."""
        wait = lock_wait_s if lock_wait_s is not None else 2 * self.cfg.lock_ttl_ms / 1000
        self.store.acquire(self.owner, self.cfg.lock_ttl_ms, wait)
        self.champion_version, self.champion = self._champion_or_cold_start()
        self.metrics.champion.info({"version": self.champion_version})
        checkpoint = self.store.load()
        self._restore(checkpoint)
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
        for _ in range(10):
            version = self.registry.champion_version()
            if version is not None:
                return version, self.registry.load(version)
            model = new_model(self.cfg)
            try:
                record = self._register(model, None, "cold_start", None)
                self.registry.promote(record.version, "cold start: no champion yet",
                                      expected=None)
                self.console.print(f"[yellow]cold start[/]: registered and promoted "
                                   f"{record.version} ({self.cfg.model}, untrained)")
                return record.version, model
            except (ChampionChangedError, VersionExistsError):
                continue  # someone else (serving) cold-started at the same moment: use theirs
        raise ChampionChangedError("could not settle on a champion after 10 attempts")

    def _restore(self, cp: Checkpoint | None) -> None:
        challenger = None
        if cp is not None:
            self.ledger, self.totals, self.since_gate = cp.ledger, cp.totals, cp.since_gate
            self.seen = SeenIds.from_state(cp.seen, self.cfg.dedup_capacity)
            self.sanity = cp.sanity[: self.cfg.sanity_size]
            if cp.mode == self.mode and cp.champion == self.champion_version:
                challenger = load_model(cp.challenger)  # signature verified by the store
                if cp.evaluation is not None:
                    self.evaluation.add(cp.evaluation)
            else:
                self.since_gate = 0
                self.ledger.reset_lineage()
        self.policy = build_policy(self.mode, self.champion, self.cfg, challenger,
                                   self.triggers, self.gate.min_examples)
        if cp is not None and cp.mode == self.mode:
            self._restore_memory(cp, challenger is not None)
        self.metrics.restored_examples.set(self.totals.trained)
        self.metrics.durable_examples.set(self.totals.trained)

    def _restore_memory(self, cp: Checkpoint, same_challenger: bool) -> None:
        if isinstance(self.policy, TriggeredPolicy):
            self.policy.buffer.extend(cp.memory)
            self.policy.load_state(cp.policy_state)
            if not same_challenger:  # the champion changed meanwhile: a fresh replica
                self.policy.evidence = None
        elif isinstance(self.policy, StatelessPolicy):
            self.policy.window.extend(cp.memory)
        elif isinstance(self.policy, StatefulPolicy) and self.policy.reservoir is not None:
            # Reseeded by how much it saw: a restart draws differently but stays reproducible.
            seed = self.cfg.seed + cp.memory_seen
            pool: Reservoir[Any] = Reservoir(self.cfg.replay_capacity, seed)
            pool.add(cp.memory)
            pool.seen = cp.memory_seen
            self.policy.reservoir = pool

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
        if self.guard is not None:  # users whose click rate no human has: not learnt from
            fresh, n_guarded = self.guard.filter(fresh)
            self.metrics.examples["guarded"].inc(n_guarded)
        started = time.perf_counter()
        try:
            result = self.policy.process(self.champion, [r.example for r in fresh], now)
        except BatchError:  # scoring refuses before anything learns: find the culprits
            fresh = self._drop_unlearnable(fresh)
            result = self.policy.process(self.champion, [r.example for r in fresh], now)
        self.metrics.update_seconds.observe(time.perf_counter() - started)
        fresh_ids = {id(r) for r in fresh}
        for r in batch:  # duplicates and refused examples are done with too
            self.ledger.consumed(r.partition, r.offset, trained=id(r) in fresh_ids)
        self._account(result, len(fresh), n_dup)
        concept_drift = self.drift.observe([r.example for r in fresh], result)
        if isinstance(self.policy, TriggeredPolicy):
            self._account_triggers(result, self.policy)
            concept_drift = concept_drift or any(f.kind == "drift" for f in result.fired)
        frozen = bool(self.sanity) and len(self.sanity) >= self.cfg.sanity_size
        if not frozen:
            self.sanity.extend(r.example for r in fresh[: self.cfg.sanity_size - len(self.sanity)])
        if concept_drift and self.drift.cfg.refresh_sanity_on_alarm and frozen:
            # The old behaviour is no longer what a challenger must keep. The new set starts
            # with the next batch: this one may straddle the change. A set still filling is
            # kept: it is made of examples after an earlier alarm (or of the first ones).
            self.sanity = []
            self._dirty = True
            self.console.print(f"  sanity set refreshed: the next {self.cfg.sanity_size} "
                               "examples form a new one")
        self._maybe_gate(result)

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

    def _account(self, result: StepResult, n_fresh: int, n_dup: int) -> None:
        self.evaluation.add(result)
        if result.retrained:
            self.evaluation.reset()  # a brand-new challenger: earlier figures describe another
            self.since_gate = 0
        self.since_gate += n_fresh
        t = self.totals
        self.totals = replace(t, batches=t.batches + 1, trained=t.trained + n_fresh,
                              duplicates=t.duplicates + n_dup, capped=t.capped + result.n_capped)
        m = self.metrics
        m.batches.inc()
        m.examples["trained"].inc(n_fresh)
        m.examples["duplicate"].inc(n_dup)
        m.examples["capped"].inc(result.n_capped)
        m.examples["replayed"].inc(result.n_replayed)
        if result.n_trained:
            m.train_loss.set(result.train_loss)
        self._dirty = True

    def _account_triggers(self, result: StepResult, policy: TriggeredPolicy) -> None:
        for firing in result.fired:
            self.metrics.trigger_firings[firing.kind].inc()
            self.console.print(f"[magenta]trigger[/] {firing.kind}: {firing.reason}")
            if firing.kind == "drift" and self.triggers.drift_detector != "none":
                self.drift.alarm(self.triggers.drift_detector, firing.reason)
        if policy.held and result.fired and not result.retrained:
            self.console.print(f"  held until the gate has judged the last training "
                               f"({len(policy.buffer)} examples buffered)")
        if result.retrained:
            self.metrics.trigger_trainings.inc()
            self._trained_lineage = self.ledger.lineage(self.kafka.examples_topic)
            self.console.print(f"  challenger learnt {result.n_trained} buffered examples; the "
                               f"gate asks after {policy.min_evidence} fresh ones")
        self.metrics.trigger_buffer.set(len(policy.buffer))

    # -- the gate --------------------------------------------------------------------------

    def _maybe_gate(self, result: StepResult) -> None:
        if self.mode == "triggered":
            if not result.gate_due or not self.evaluation.n:
                return
        elif self.since_gate < self.cfg.gate_every_examples or not self.evaluation.n:
            return
        self.since_gate = 0
        fresh = self.evaluation.paired()
        decision = decide(fresh, self._sanity_pairs(), self.gate)
        self.last_decision = decision
        self.totals = replace(self.totals, decisions=self.totals.decisions + 1)
        self._report_prequential(fresh)  # before the count: a scrape sees both or neither
        self.metrics.decision(decision.outcome, decision.rule)
        colour = {"promote": "green", "reject": "red"}.get(decision.outcome, "yellow")
        self.console.print(f"gate: [{colour}]{decision.outcome}[/] — {decision.reason}")
        if decision.outcome == "keep_training":
            return
        challenger = self.policy.challenger
        # A rejection records its decision with the status change (``reject``); recording it
        # at registration too listed it twice in the registry's decisions.
        record = self._register(challenger, self.champion_version, self.policy.mode,
                                decision if decision.outcome == "promote" else None,
                                self._trained_lineage if self.mode == "triggered" else None)
        if decision.outcome == "promote":
            try:
                self.registry.promote(record.version, decision.reason,
                                      expected=self.champion_version)
                self._switch_champion(record.version, challenger)
                self.console.print(f"[green]✔ promoted[/] {record.version}")
            except ChampionChangedError as exc:
                self.console.print(f"[yellow]not promoted[/]: {exc}")
                self._check_champion(force=True)
        else:
            self.registry.reject(record.version, decision)
            self.policy.on_new_champion(self.champion)  # discard: start over from the champion
            self._new_challenger()
        self.checkpoint()  # the registry moved: make the matching state durable at once

    def _sanity_pairs(self) -> PairedLosses | None:
        return paired_on(self.sanity, self.champion, self.policy.challenger)

    def _register(self, model: Model, parent: str | None, mode: Mode,
                  decision: GateDecision | None, lineage: Lineage | None = None) -> ModelRecord:
        """Put ``model`` in the registry; ``lineage`` defaults to what the ledger says the
        challenger learnt (triggered mode passes it as of its last training: the examples
        scored since are evidence, not training data)."""
        blob = model.save()
        for _ in range(10):
            version = self.registry.next_version(parent, mode)
            record = ModelRecord.for_model(
                model, blob, version=version, parent=parent, mode=mode, created_at=self.now_ms(),
                lineage=lineage or self.ledger.lineage(self.kafka.examples_topic),
            )
            try:
                self.registry.put(record, blob)
            except VersionExistsError:
                continue
            if decision is not None:
                self.registry.record_decision(version, decision)
            return record
        raise VersionExistsError("could not allocate a version name after 10 attempts")

    def _switch_champion(self, version: str, model: Model) -> None:
        self.champion_version, self.champion = version, model
        self.policy.on_new_champion(model)
        self.drift.new_champion()
        self.metrics.champion.info({"version": version})
        self.metrics.forget_versions(version)
        self._new_challenger()

    def _new_challenger(self) -> None:
        self.evaluation.reset()
        self.ledger.reset_lineage()
        self._trained_lineage = None
        self.since_gate = 0
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
        self.sanity = []
        self._dirty = True
        self.checkpoint()
        self.registry.clear_sanity_refresh(at)
        self.console.print(f"sanity set refreshed (request of {at}): the next "
                           f"{self.cfg.sanity_size} examples form the new one")

    def _report_prequential(self, fresh: PairedLosses) -> None:
        m = self.metrics
        m.prequential(self.champion_version, "champion", float(fresh.champion_losses.mean()),
                      _safe_auc(fresh.labels, fresh.champion_scores))
        m.prequential(self.champion_version, "challenger",
                      float(fresh.challenger_losses.mean()),
                      _safe_auc(fresh.labels, fresh.challenger_scores))

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
        memory, memory_seen = self._memory()
        self.store.save(Checkpoint(
            mode=self.mode, champion=self.champion_version,
            challenger=self.policy.challenger.save(), ledger=self._durable_ledger(),
            seen=self.seen.to_state(), totals=self.totals, since_gate=self.since_gate,
            evaluation=window_of(self.evaluation), sanity=self.sanity, memory=memory,
            memory_seen=memory_seen, saved_at=self.now_ms(),
            policy_state=(self.policy.state() if isinstance(self.policy, TriggeredPolicy)
                          else {}),
        ))
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
        self._update_lag()

    def _durable_offsets(self) -> dict[int, int]:
        """Next offsets a restart may read from: not past an example still held for its
        cohort (it is read again then; what was learnt after it is a duplicate by id)."""
        offsets = dict(self.ledger.next_offsets)
        for r in self.cohorts.held():
            if r.offset < offsets.get(r.partition, r.offset + 1):
                offsets[r.partition] = r.offset
        return offsets

    def _durable_ledger(self) -> OffsetLedger:
        if not len(self.cohorts):
            return self.ledger
        ledger = copy.copy(self.ledger)
        ledger.next_offsets = self._durable_offsets()
        return ledger

    def _memory(self) -> tuple[list[Example], int]:
        if isinstance(self.policy, TriggeredPolicy):
            return [cast(Example, e) for e in self.policy.buffer], 0
        if isinstance(self.policy, StatelessPolicy):
            return [cast(Example, e) for e in self.policy.window], 0
        if isinstance(self.policy, StatefulPolicy) and self.policy.reservoir is not None:
            items = [cast(Example, e) for e in self.policy.reservoir.items]
            return items, self.policy.reservoir.seen
        return [], 0

    def _update_lag(self) -> None:
        for tp in self.consumer.assignment():
            try:
                # Cached: librdkafka updates the high watermark from every fetch response,
                # where a broker query costs about 0.4 s per partition.
                _, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            done = self.ledger.next_offsets.get(tp.partition, 0)
            self.metrics.lag.labels(partition=str(tp.partition)).set(max(0, high - done))

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
            ev = self.evaluation
            losses = (f"challenger {ev.challenger_mean:.4f} vs champion {ev.champion_mean:.4f} "
                      f"on {ev.n} fresh" if ev.n else "no fresh examples yet")
            t = self.totals
            self.console.print(
                f"[dim]{time.strftime('%H:%M:%S')}[/] {t.trained} trained ({rate:,.0f}/s), "
                f"{t.duplicates} dup, {t.invalid} invalid, {t.capped} capped; {losses}"
            )

    def close(self) -> None:
        """Flush the DLQ producer, leave the group's consumer, give the lease up."""
        self.producer.flush(10)
        self.consumer.close()
        self.store.release(self.owner)


def _safe_auc(labels: Any, scores: Any) -> float:
    area = auc(labels, scores)
    return 0.5 if area != area else area  # NaN while only one class was seen
