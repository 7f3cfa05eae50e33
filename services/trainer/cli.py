"""`streamlearn train [--mode stateful|stateless|triggered]`, `streamlearn retrain --from-scratch`.

``train`` runs the micro-batch trainer (``services.trainer.service``) until SIGTERM or Ctrl-C, then
trains what it holds, checkpoints and exits 0. ``retrain --from-scratch`` is the manual
one-off of stage 1: a fresh model trained over the most recent examples on the topic, judged
by the gate against the champion on a held-out tail, registered as a new major version and
promoted if the gate says so (or with ``--promote``).

``models`` (torch, river) is imported inside the commands, as in ``services.registry.cli``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, get_args

from rich.console import Console

from config.settings import (
    DriftSettings,
    GateSettings,
    JoinerSettings,
    KafkaSettings,
    RedisSettings,
    RegistrySettings,
    SchemaSettings,
    TrainerMode,
    TrainerSettings,
    TriggerSettings,
    load,
)

if TYPE_CHECKING:
    from streams.schemas import Example


def add_train_arguments(train: argparse.ArgumentParser, retrain: argparse.ArgumentParser) -> None:
    """The options of ``train`` and ``retrain``."""
    train.add_argument("--mode", choices=get_args(TrainerMode),
                       help="override trainer.mode (default from config: stateful); triggered "
                            "trains and asks the gate only when a trigger fires (triggers:)")
    train.add_argument("--metrics-port", type=int, help="Prometheus port (0 = none)")
    retrain.add_argument("--from-scratch", action="store_true", required=True,
                         help="train a fresh model (the only retrain there is, for now)")
    retrain.add_argument("--window", type=int,
                         help="most recent examples to use (default trainer.stateless_window)")
    retrain.add_argument("--holdout", type=float, default=0.1,
                         help="fraction of the newest examples kept out for the gate")
    retrain.add_argument("--promote", action="store_true",
                         help="promote whatever the gate says (forced)")


def cmd_train(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from services.registry.metrics import RegistryMetrics
    from services.registry.redis import connect
    from services.trainer.metrics import TrainerMetrics
    from services.trainer.service import Trainer
    from services.trainer.store import StateStore

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(highlight=False)
    overrides: dict[str, Any] = {"mode": args.mode} if args.mode else {}
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    cfg = load(TrainerSettings, **overrides)
    if cfg.cohort_wait_ms < 0:  # as long as the joiner may take to label a prediction
        joiner = load(JoinerSettings)
        cfg = cfg.model_copy(update={"cohort_wait_ms": joiner.attribution_window_ms
                                     + joiner.allowed_lateness_ms + 1_000})
    registry_cfg = load(RegistrySettings)
    metrics = TrainerMetrics()
    registry = connect(load(RedisSettings), registry_cfg, RegistryMetrics(metrics.registry))
    store = StateStore(registry.client, registry_cfg.prefix, cfg.group_id,
                       registry_cfg.signing_key.get_secret_value().encode())
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    trainer = Trainer(load(KafkaSettings), cfg, load(GateSettings), load(SchemaSettings),
                      registry, store, metrics, console, triggers=load(TriggerSettings),
                      drift=load(DriftSettings))
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    trainer.start()
    console.print(f"metrics on :{cfg.metrics_port or '-'}; SIGTERM or Ctrl-C stops cleanly")
    trainer.run(lambda: bool(stopping))
    console.print(f"stopped after {trainer.totals.trained} examples learnt (durable)")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from models.gate.decision import PairedLosses, decide
    from models.training.policies import train_from_scratch
    from services.registry import connect, register
    from services.trainer.build import gate_config, new_model

    console = Console(highlight=False)
    cfg = load(TrainerSettings)
    kafka = load(KafkaSettings)
    registry = connect(load(RedisSettings), load(RegistrySettings))
    window = args.window or cfg.stateless_window
    with console.status(f"reading up to {window} recent examples from {kafka.examples_topic}…"):
        examples = read_recent(kafka, load(SchemaSettings), window)
    n_holdout = int(len(examples) * args.holdout)
    train, holdout = examples[: len(examples) - n_holdout], examples[len(examples) - n_holdout:]
    if not train:
        console.print(f"[red]no examples[/] on {kafka.examples_topic}: nothing to train on")
        return 1
    model = new_model(cfg)
    started = time.perf_counter()
    loss = train_from_scratch(model, train, batch_size=cfg.batch_size,
                              epochs=cfg.stateless_epochs, seed=cfg.seed)
    console.print(f"trained {cfg.model} from scratch on {len(train)} examples "
                  f"({cfg.stateless_epochs} epochs, {time.perf_counter() - started:.1f} s), "
                  f"last-epoch loss {loss:.4f}")
    champion_version = registry.champion_version()
    decision = None
    if champion_version is not None and holdout:
        import numpy as np

        feats = [e.features for e in holdout]
        fresh = PairedLosses.from_scores(
            np.asarray([float(e.label) for e in holdout]),
            registry.load(champion_version).predict_proba_many(feats),
            model.predict_proba_many(feats),
        )
        decision = decide(fresh, None, gate_config(load(GateSettings)))
        console.print(f"gate on {len(holdout)} held-out examples: {decision.outcome} — "
                      f"{decision.reason}")
    promote = args.promote or champion_version is None or (
        decision is not None and decision.outcome == "promote")
    rejected = not promote and decision is not None and decision.outcome == "reject"
    # A rejection records its decision with the status change (``reject``), not twice.
    version = register(registry, model, parent=champion_version, mode="manual",
                       now_ms=int(time.time() * 1000),
                       decision=None if rejected else decision).version
    console.print(f"registered [bold]{version}[/] (manual, from scratch)")
    if promote:
        registry.promote(version, "manual retrain from scratch", force=True)
        console.print(f"[green]✔[/] champion: {champion_version or 'none'} → {version}")
    elif rejected and decision is not None:
        registry.reject(version, decision)
        console.print(f"[red]rejected[/] {version}; champion stays {champion_version}")
    return 0


def read_recent(kafka: KafkaSettings, schema: SchemaSettings, window: int) -> list[Example]:
    """The last ``window`` distinct examples on the topic (read_committed, no group commits).

    Reads every partition from the beginning up to its end at the time of the call; memory
    stays bounded by ``window``. Invalid messages are skipped (the trainer DLQs them).
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from streams.schemas import DecodeError, TimeBounds, decode_example

    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap_servers, "group.id": "streamlearn-retrain",
        "enable.auto.commit": False, "isolation.level": "read_committed",
    })
    bounds = TimeBounds(schema.max_past_ms, schema.max_future_ms)
    recent: OrderedDict[str, Example] = OrderedDict()
    try:
        topic = kafka.examples_topic
        parts = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        todo = {p for p, end in ends.items() if end > 0}
        idle_since = time.monotonic()
        while todo and time.monotonic() - idle_since < 3.0:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error():
                    continue
                idle_since = time.monotonic()
                if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                    todo.discard(message.partition() or 0)
                decoded = decode_example(message.value(), key=message.key(),
                                         now_ms=int(time.time() * 1000), bounds=bounds)
                if isinstance(decoded, DecodeError):
                    continue
                recent.pop(decoded.prediction_id, None)
                recent[decoded.prediction_id] = decoded
                while len(recent) > window:
                    recent.popitem(last=False)
    finally:
        consumer.close()
    return sorted(recent.values(), key=lambda e: e.ts_label)
