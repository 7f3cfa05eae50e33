"""`python -m bench trainer`: learner throughput, and the trainer through Kafka vs in process.

Three measurements in one run, on one generated stream (``bench.trainer_stream``: labels
arrive 1.5 s after a click, 30 s after a non-click, so the stream is in label order):

* **learner** (this process, one torch thread): ``train_samples_per_s`` (``learn_many`` at
  batch 512), ``score_samples_per_s`` (``predict_proba_many``), ``update_ms_p50`` (one
  batch-512 score + update).
* **system**: the stream is produced to a fresh one-partition ``examples`` topic and a real
  ``streamlearn train`` process (configured model, cold start, per-user cap off) learns it; its
  gate decides once, over the whole stream, and ``system_logloss`` is the challenger's
  prequential log loss it reports (each example scored before it was learnt).
  The joiner is bypassed: the examples it would emit are produced straight to ``examples``
  (its live-rebalance flakiness is being fixed separately); ``feed`` says so.
* **in process**: ``models.progressive.progressive_delayed`` over the same stream in the same
  (label) order, same model and batch size, no Kafka: ``inprocess_logloss``.
  ``logloss_ratio`` = system / in process: 1.0 means the plumbing lost nothing.
  ``prediction_time_logloss`` adds context: the same learner scored at *prediction* time with
  labels revealed after their real delay (what serving's champion would have seen).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from rich.console import Console

from bench.common import percentile, running_stack
from bench.trainer_stream import labeled_stream
from config.settings import KafkaSettings, TrainerSettings, load
from streams.schemas import Example, encode

BATCH = 512


def run(quick: bool = False, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    n = 20_000 if quick else 100_000
    cfg = load(TrainerSettings)
    stream = labeled_stream(n, seed=0)
    console.print(f"{n} examples, CTR {np.mean([e.label for e in stream]):.3f}, "
                  f"model {cfg.model} (hash_bits {cfg.hash_bits})")
    figures: dict[str, Any] = {"model": cfg.model, "batch_size": BATCH, "examples": n}
    figures.update(learner_speed(cfg, stream[: min(n, 20_000)]))
    console.print(f"learner: {figures['train_samples_per_s']:,.0f} train/s, "
                  f"{figures['score_samples_per_s']:,.0f} score/s, "
                  f"update p50 {figures['update_ms_p50']:.1f} ms")
    figures.update(in_process(cfg, stream))
    with running_stack() as stack:
        figures.update(system(stack.kafka_settings, stream, console))
    figures["logloss_ratio"] = figures["system_logloss"] / figures["inprocess_logloss"]
    figures["feed"] = "examples produced directly to the examples topic (joiner bypassed)"
    return figures


def learner_speed(cfg: TrainerSettings, stream: list[Example]) -> dict[str, float]:
    """Throughput of the configured learner on one torch thread, batch 512."""
    import torch

    from models import build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_model(cfg.model, hash_bits=cfg.hash_bits, seed=cfg.seed)
        batches = [stream[i : i + BATCH] for i in range(0, len(stream) - BATCH + 1, BATCH)]
        feats = [[e.features for e in b] for b in batches]
        labels = [[e.label for e in b] for b in batches]
        started = time.perf_counter()
        for x, y in zip(feats, labels, strict=True):
            model.learn_many(x, y)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        for x in feats:
            model.predict_proba_many(x)
        score_s = time.perf_counter() - started
        steps = []
        for x, y in zip(feats, labels, strict=True):
            t0 = time.perf_counter()
            model.predict_proba_many(x)
            model.learn_many(x, y)
            steps.append((time.perf_counter() - t0) * 1000)
    finally:
        torch.set_num_threads(threads)
    done = len(batches) * BATCH
    return {"train_samples_per_s": done / train_s, "score_samples_per_s": done / score_s,
            "update_ms_p50": percentile(steps, 0.5)}


def in_process(cfg: TrainerSettings, stream: list[Example]) -> dict[str, float]:
    """The reference: the same learner, same order and batch size, no Kafka."""
    from models import build_model
    from models.progressive import progressive_delayed

    def fresh() -> Any:
        return build_model(cfg.model, hash_bits=cfg.hash_bits, seed=cfg.seed)

    by_prediction = sorted(stream, key=lambda e: e.ts_prediction)
    return {
        "inprocess_logloss": progressive_delayed(fresh(), stream, delay=0, batch_size=BATCH),
        "prediction_time_logloss": progressive_delayed(
            fresh(), by_prediction, moment=lambda e: e.ts_prediction,  # type: ignore[attr-defined]
            delay=lambda e: e.ts_label - e.ts_prediction,  # type: ignore[attr-defined]
            batch_size=BATCH,
        ),
    }


def system(kafka: KafkaSettings, stream: list[Example], console: Console) -> dict[str, float]:
    """``streamlearn train`` in a subprocess, fed through a fresh one-partition topic."""
    tag = f"bench-trainer-{uuid.uuid4().hex[:8]}"
    topics = {"examples": f"{tag}-examples", "dlq": f"{tag}-dlq"}
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    for future in admin.create_topics([NewTopic(t, num_partitions=1)
                                       for t in topics.values()]).values():
        future.result(timeout=30)
    prefix = f"{tag}:"
    port = _free_port()
    proc = None
    try:
        started = time.perf_counter()
        producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
        for e in stream:
            producer.produce(topics["examples"], value=encode(e), key=e.prediction_id.encode())
            producer.poll(0)
        producer.flush(60)
        console.print(f"produced {len(stream)} examples in {time.perf_counter() - started:.1f} s")
        env = {
            **os.environ,
            "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "STREAMLEARN_KAFKA_EXAMPLES_TOPIC": topics["examples"],
            "STREAMLEARN_KAFKA_DLQ_TOPIC": topics["dlq"],
            "STREAMLEARN_REGISTRY_PREFIX": prefix,
            "STREAMLEARN_TRAINER_GROUP_ID": tag,
            "STREAMLEARN_TRAINER_BATCH_SIZE": str(BATCH),
            "STREAMLEARN_TRAINER_MAX_WAIT_MS": "2000",
            "STREAMLEARN_TRAINER_PER_USER_CAP": str(BATCH),
            "STREAMLEARN_TRAINER_GATE_EVERY_EXAMPLES": str(len(stream)),
            "STREAMLEARN_TRAINER_GATE_WINDOW_MAX": str(len(stream)),
            "STREAMLEARN_TRAINER_SANITY_SIZE": "0",
            "STREAMLEARN_TRAINER_METRICS_PORT": str(port),
        }
        proc = subprocess.Popen([sys.executable, "-m", "services.cli", "train"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        first = last = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            m = _scrape(port)
            trained = m.get('streamlearn_trainer_examples_total{outcome="trained"}', 0.0)
            if trained and first is None:
                first = (time.perf_counter(), trained)
            decided = sum(v for k, v in m.items()
                          if k.startswith("streamlearn_trainer_gate_decisions_total"))
            losses = [v for k, v in m.items() if k.startswith(
                "streamlearn_trainer_prequential_logloss") and 'arm="challenger"' in k]
            if decided >= 1 and losses:
                last, loss = (time.perf_counter(), trained), losses[0]
                break
            if proc.poll() is not None:
                raise RuntimeError(f"streamlearn train exited with {proc.returncode}")
            time.sleep(0.05)
        else:
            raise RuntimeError("the trainer did not get through the stream in 600 s")
        if first is None or last is None:
            raise RuntimeError("the trainer reported no trained examples")
        rate = (last[1] - first[1]) / max(last[0] - first[0], 1e-9)
        console.print(f"system: {rate:,.0f} examples/s end to end, prequential loss {loss:.5f}")
        return {"system_logloss": loss, "system_samples_per_s": rate}
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        admin.delete_topics(list(topics.values()))
        _drop_keys(prefix)


def _drop_keys(prefix: str) -> None:
    import redis

    from config.settings import RedisSettings

    client = redis.Redis.from_url(load(RedisSettings).url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        body = urllib.request.urlopen(url, timeout=2).read().decode()  # noqa: S310
    except OSError:
        return {}
    out = {}
    for line in body.splitlines():
        match = re.match(r"^(streamlearn_trainer_\w+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            out[match[1]] = float(match[2])
    return out
