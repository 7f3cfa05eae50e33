"""One loop: a recorded example stream through `streamlearn train` and through the decision loop
in process gives the same gate decisions, in the same order, with the same reasons.

The stream is recorded once (``labeled_stream``: users with a favourite category, whose tastes
change halfway), produced to a one-partition ``examples`` topic so the service reads it in the
recorded order, and learnt by the real `streamlearn train` process from a cold start. The same
examples, in batches of the same size, go through ``build_learner`` of the same settings in
this process. The service prints each decision as ``gate: <outcome> — <reason>``; the reasons
carry the gate's figures, so equal lines mean equal evidence, not only equal verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Producer

from config.settings import GateSettings, KafkaSettings, TrainerSettings
from services.local.wait import wait_for
from services.registry.redis import RedisRegistry
from services.simulator.labeled import labeled_stream
from services.trainer.build import build_learner
from streams.schemas import encode
from tests.integration.loop_helpers import running_loop, scrape

SIGNING_KEY = "one-loop-test-key"
BATCH = 512
# The loop's settings, as the service reads them from the environment.
TRAINER = {"mode": "stateful", "batch_size": BATCH, "max_wait_ms": 120_000,
           "cohort_wait_ms": 0, "gate_every_examples": 1_024, "sanity_size": 512,
           "checkpoint_interval_ms": 1_000}
GATE = {"min_examples": 512}
DECISION = re.compile(r"^gate: (promote|keep_training|reject) — (.*)$", re.MULTILINE)


def recorded_stream() -> list:
    """12 batches before the users' tastes change and 12 after, in label order (a short
    attribution window, so no batch is all clicks)."""
    timing = {"window_ms": 1_000, "click_delay_ms": 300}
    before = labeled_stream(12 * BATCH, seed=1, world_seed=1, prefix="a", **timing)
    after = labeled_stream(12 * BATCH, seed=2, world_seed=2, prefix="b",
                           t0_ms=before[-1].ts_label + 1, **timing)
    return before + after


def in_process(stream: list) -> list[tuple[str, str]]:
    cfg, gate = TrainerSettings(**TRAINER), GateSettings(**GATE)
    learner = build_learner(cfg, gate)  # the cold start, as the service's (new_model)
    decisions = []
    for i in range(0, len(stream), BATCH):
        d = learner.step(stream[i:i + BATCH], now_ms=stream[i].ts_label).decision
        if d is not None:
            decisions.append((d.outcome, d.reason))
    return decisions


def test_the_service_and_the_loop_in_process_take_the_same_decisions(
    make_topics: Callable[..., KafkaSettings], loop_registry: RedisRegistry, tmp_path: Path,
) -> None:
    stream = recorded_stream()
    expected = in_process(stream)
    assert len(expected) == len(stream) // 1_024
    assert {o for o, _ in expected} == {"promote", "keep_training", "reject"}

    kafka = make_topics(partitions=1)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
    for e in stream:
        producer.produce(kafka.examples_topic, encode(e), key=e.prediction_id.encode())
    assert producer.flush(30) == 0

    env = {**{f"STREAMLEARN_TRAINER_{k.upper()}": str(v) for k, v in TRAINER.items()},
           **{f"STREAMLEARN_GATE_{k.upper()}": str(v) for k, v in GATE.items()},
           "COLUMNS": "400"}  # the console wraps at its width: one decision, one line
    with running_loop(kafka, loop_registry, SIGNING_KEY, tmp_path / "loop", env) as loop:
        loop.start("train")
        port = loop.trainer_metrics_port
        trained = 'streamlearn_trainer_examples_total{outcome="trained"}'
        guarded = 'streamlearn_trainer_examples_total{outcome="guarded"}'

        def consumed() -> bool:
            loop.check_alive()
            m = scrape(port, "streamlearn_trainer_examples_total") or {}
            return m.get(trained, 0) + m.get(guarded, 0) >= len(stream)

        wait_for(consumed, 180, "the trainer to learn the whole stream")
        wait_for(lambda: len(DECISION.findall(loop.logs())) >= len(expected), 30,
                 "the last gate decision to be printed")
        logged = DECISION.findall(loop.logs())
    assert logged == expected
    # What the service promoted is in the registry: one version per promotion after cold start.
    promoted = sum(o == "promote" for o, _ in expected)
    assert len(loop_registry.history()) == 1 + promoted
