"""`python -m bench trainer`: learner speed; the trainer fed through the joiner vs in process.

Three measurements in one run, on one generated stream (``services.simulator.labeled``: a click
comes a log-normal delay after its prediction, median 1.5 s, within the 10 s attribution
window; a non-click is labelled when the window closes):

* **learner** (this process, one torch thread): ``train_samples_per_s`` (``learn_many`` at
  batch 512), ``score_samples_per_s`` (``predict_proba_many``), ``update_ms_p50`` (one
  batch-512 score + update).
* **system**: the stream's predictions (with its features), impressions and clicks are
  produced in timestamp order, keyed by prediction_id (murmur2), to fresh one-partition topics;
  one real ``streamlearn join`` worker (``JOIN_POLICY``) turns them into ``examples``, which
  must be exactly the stream (``joined_examples`` = ``expected_examples``, else the run
  fails). Then a real ``streamlearn train`` process (configured model, per-user cap off)
  fine-tunes the champion (``WARM_EXAMPLES`` of another stream from the same world, learnt in
  process and registered first) on that topic; its gate decides once, over the whole stream, and
  ``system_logloss`` is the challenger's prequential log loss it reports.
  Production is flow-controlled (at most ``2 * CHUNK`` input messages ahead of the worker) so
  the worker's interleaving of its two input topics stays within the allowed lateness.
* **in process**: ``models.training.progressive.progressive_delayed`` over the same stream, from the
  same champion, same batch size, no Kafka, each label revealed when the join contract makes
  it known: a click at its timestamp, a non-click once the watermark (highest timestamp −
  allowed lateness) passes its window end: ``inprocess_logloss``. ``logloss_ratio`` =
  system / in process.
  Context: ``joined_order_logloss`` is the same reference in the order the joiner actually
  wrote (what the trainer saw: any difference from ``system_logloss`` is the trainer's
  plumbing, any difference from ``inprocess_logloss`` the order the joiner's input took);
  ``prediction_time_logloss`` scores each example at its *prediction* time with its label
  revealed after its real delay (river's delayed progressive validation proper).

Why a warm champion: the stream starts empty, so its first ~15 s of labels (window + lateness)
are clicks only, a no-click being known only when its window closes. A cold model learning
those batches is thrown far off, and where it lands depends on exactly which no-clicks the
joiner's interleaving of its two inputs let into the second batch: on the 12k quick stream
(24 s of stream time) that alone moved the loss by up to 5 % between runs. A fine-tuned
champion (the trainer's normal case) moves a few tenths of a percent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from rich.console import Console

from bench.common import percentile, running_stack
from config.settings import KafkaSettings, RedisSettings, RegistrySettings, TrainerSettings, load
from services.local.joiners import JoinerCluster, read_examples, wait_until_drained
from services.local.loop import delete_prefix, free_port, register_champion
from services.local.wait import stop_process
from services.simulator.labeled import join_inputs, labeled_stream
from streams.joiner.policy import JoinPolicy
from streams.joiner.scenario import RawMessage, summarize
from streams.schemas import Example
from streams.topics import ensure_topics

BATCH = 512
WINDOW_MS = 10_000
# Lateness: above the worst event-time skew between the worker's two input topics under the
# flow control below (2 * CHUNK messages ≈ 1,000 predictions ≈ 2 s of stream time), so every
# in-window click meets its open window. The idle timeout exceeds any stall of the feed and
# closes the last windows (window + lateness of quiet after the last message).
JOIN_POLICY = JoinPolicy(
    attribution_window_ms=WINDOW_MS, allowed_lateness_ms=5_000, max_event_lead_ms=60_000,
    idle_timeout_ms=5_000,
)
CHUNK = 1_000
WARM_EXAMPLES = 12_000


def run(quick: bool = False, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    n = 12_000 if quick else 100_000
    cfg = load(TrainerSettings)
    stream = labeled_stream(n, seed=0, window_ms=WINDOW_MS, click_delay_sigma=1.0)
    console.log(f"{n} examples, CTR {np.mean([e.label for e in stream]):.3f}, "
                  f"model {cfg.model} (hash_bits {cfg.hash_bits})")
    figures: dict[str, Any] = {"model": cfg.model, "batch_size": BATCH, "examples": n,
                               "warm_examples": WARM_EXAMPLES}
    figures.update(learner_speed(cfg, stream[: min(n, 20_000)]))
    champion = warm_champion(cfg)
    console.log(f"learner: {figures['train_samples_per_s']:,.0f} train/s, "
                  f"{figures['score_samples_per_s']:,.0f} score/s, "
                  f"update p50 {figures['update_ms_p50']:.1f} ms")
    figures.update(in_process(champion, stream, JOIN_POLICY))
    with running_stack() as stack, tempfile.TemporaryDirectory(prefix="sl-bt-") as tmp:
        kafka, cleanup = fresh_topics(stack.kafka_settings.bootstrap_servers)
        try:
            joined, joining = join(kafka, stream, Path(tmp), console)
            figures.update(joining)
            figures["joined_order_logloss"] = reference(champion, joined)
            figures.update(system(kafka, n, champion, console))
        finally:
            cleanup()
    figures["logloss_ratio"] = figures["system_logloss"] / figures["inprocess_logloss"]
    figures["feed"] = (
        "predictions, impressions and clicks produced to fresh 1-partition topics, joined into "
        "examples by one streamlearn join worker "
        f"(window {WINDOW_MS} ms, lateness {JOIN_POLICY.allowed_lateness_ms} ms), "
        "then learnt by streamlearn train"
    )
    return figures


def learner_speed(cfg: TrainerSettings, stream: list[Example]) -> dict[str, float]:
    """Throughput of the configured learner on one torch thread, batch 512."""
    import torch

    from services.trainer.build import new_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = new_model(cfg)
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


def warm_champion(cfg: TrainerSettings) -> bytes:
    """The configured model after ``WARM_EXAMPLES`` of a stream from the bench stream's world
    (other users' draws, other ids), learnt in prediction order in batches of ``BATCH``.

    Not ``models.training.policies.train_from_scratch``, which shuffles: a champion trained on
    shuffled batches left the ratio more sensitive to the joiner's order (five replayed joined
    orders: up to 1.0133 against 1.0045 in prediction order)."""
    from services.trainer.build import new_model

    warm = labeled_stream(WARM_EXAMPLES, seed=7, world_seed=0, window_ms=WINDOW_MS,
                          click_delay_sigma=1.0, prefix="warm-")
    warm.sort(key=lambda e: e.ts_prediction)
    model = new_model(cfg)
    for i in range(0, len(warm), BATCH):
        part = warm[i : i + BATCH]
        model.learn_many([e.features for e in part], [e.label for e in part])
    return model.save()


def in_process(champion: bytes, stream: list[Example],
               policy: JoinPolicy) -> dict[str, float]:
    """The reference: the same champion and batch size, labels revealed as the join contract
    reveals them, no Kafka."""
    from models import load_model
    from models.training.progressive import progressive_delayed

    lateness = policy.allowed_lateness_ms
    # A click is known at once; a non-click once the watermark passes its window end (a
    # message later than end + lateness), so after the clicks stamped up to then.
    by_label = sorted(stream, key=lambda e: (e.ts_label + (0 if e.label else lateness),
                                             1 - e.label, e.ts_prediction))
    by_prediction = sorted(stream, key=lambda e: e.ts_prediction)
    return {
        "inprocess_logloss": reference(champion, by_label),
        "prediction_time_logloss": progressive_delayed(
            load_model(champion), by_prediction, moment=lambda e: e.ts_prediction,  # type: ignore[attr-defined]
            delay=lambda e: e.ts_label - e.ts_prediction,  # type: ignore[attr-defined]
            batch_size=BATCH,
        ),
    }


def reference(champion: bytes, ordered: list[Example]) -> float:
    """Test-then-train of the champion over ``ordered``, in micro-batches of ``BATCH``."""
    from models import load_model
    from models.training.progressive import progressive_delayed

    return progressive_delayed(load_model(champion), ordered, delay=0, batch_size=BATCH)


def fresh_topics(bootstrap: str) -> tuple[KafkaSettings, Any]:
    """One-partition data topics for this run, and a function that deletes them (and the
    joiner's internal topics) again."""
    tag = f"bench-trainer-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, predictions_topic=f"{tag}-predictions",
        events_topic=f"{tag}-events", examples_topic=f"{tag}-examples", dlq_topic=f"{tag}-dlq",
        late_labels_topic=f"{tag}-late-labels", partitions=1,
    )
    admin = AdminClient({"bootstrap.servers": bootstrap})
    ensure_topics(admin, kafka)
    group = f"{tag}-joiner"

    def cleanup() -> None:
        names = [*kafka.data_topics, kafka.dlq_topic, kafka.late_labels_topic,
                 f"{group}-ticks", f"{group}-state", f"{group}-__assignor-__leader"]
        have = set(admin.list_topics(timeout=10).topics)
        doomed = [t for t in names if t in have]
        if doomed:
            admin.delete_topics(doomed)
        delete_prefix(load(RedisSettings).url, f"{tag}:")

    return kafka, cleanup


def join(kafka: KafkaSettings, stream: list[Example], workdir: Path,
         console: Console) -> tuple[list[Example], dict[str, Any]]:
    """One ``streamlearn join`` worker turns the stream's inputs into examples; returns them
    in the order it wrote them. Raises unless they are exactly the stream's."""
    messages = join_inputs(stream, kafka.predictions_topic, kafka.events_topic,
                           kafka.partitions)
    group = kafka.examples_topic.removesuffix("-examples") + "-joiner"
    cluster = JoinerCluster(kafka, workdir, JOIN_POLICY, group=group)
    cluster.start("bench")
    try:
        started = time.perf_counter()
        feed(cluster, messages)
        fed = time.perf_counter() - started
        wait_until_drained(cluster, timeout_s=120 + len(stream) / 500)
        drained = time.perf_counter() - started
        joined = read_examples(kafka)
    finally:
        cluster.stop_all()
    expected = set(summarize(stream))
    got = summarize(joined)
    counts = Counter(got)
    lost, unexpected = len(expected - set(got)), len(set(got) - expected)
    duplicates = sum(c - 1 for c in counts.values())
    console.log(f"joiner: {len(messages):,} input messages in {fed:.1f} s "
                  f"({len(messages) / fed:,.0f}/s), drained after {drained:.1f} s; "
                  f"{len(joined):,} examples (expected {len(expected):,})")
    if lost or unexpected or duplicates:
        raise RuntimeError(f"the joiner wrote {len(joined)} examples for {len(expected)} "
                           f"expected: {lost} lost, {unexpected} unexpected, "
                           f"{duplicates} duplicates\n{cluster.logs()}")
    return joined, {"joined_examples": len(joined), "expected_examples": len(expected),
                    "join_input_msgs": len(messages), "join_input_msgs_per_s": len(messages) / fed,
                    "join_drained_s": drained}


def feed(cluster: JoinerCluster, messages: list[RawMessage]) -> None:
    """Produce ``messages`` in order, never more than two chunks ahead of what the worker has
    consumed (a condition on its counters, polled; no fixed sleeps)."""
    producer = Producer({"bootstrap.servers": cluster.kafka.bootstrap_servers,
                         "linger.ms": 5, "partitioner": "murmur2_random"})
    for start in range(0, len(messages), CHUNK):
        deadline = time.monotonic() + 120
        while _consumed(cluster) < start - CHUNK:
            proc, _ = cluster.procs["bench"]
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the joiner stopped consuming at {_consumed(cluster)} of "
                                   f"{start} messages\n{cluster.logs()}")
            time.sleep(0.05)
        for m in messages[start : start + CHUNK]:
            producer.produce(m.topic, key=m.key, value=m.value, partition=m.partition)
        producer.flush(30)


def _consumed(cluster: JoinerCluster) -> float:
    predictions = cluster.metric("bench", "streamlearn_joiner_predictions_in_total") or 0.0
    return predictions + (cluster.metric("bench", "streamlearn_joiner_events_in_total") or 0.0)


def system(kafka: KafkaSettings, n: int, champion: bytes,
           console: Console) -> dict[str, float]:
    """``streamlearn train`` in a subprocess over the joiner's ``examples`` topic (``n``),
    fine-tuning ``champion`` (registered first under the run's prefix)."""
    from models import load_model

    tag = kafka.examples_topic.removesuffix("-examples")
    prefix = f"{tag}:"
    port = free_port()
    proc = None
    registry = load(RegistrySettings)
    register_champion(load(RedisSettings).url, prefix,
                      registry.signing_key.get_secret_value(), load_model(champion),
                      f"bench trainer: {WARM_EXAMPLES:,} examples of the stream's world")
    try:
        env = {
            **os.environ,
            "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "STREAMLEARN_KAFKA_EXAMPLES_TOPIC": kafka.examples_topic,
            "STREAMLEARN_KAFKA_DLQ_TOPIC": kafka.dlq_topic,
            "STREAMLEARN_REGISTRY_PREFIX": prefix,
            "STREAMLEARN_TRAINER_GROUP_ID": f"{tag}-trainer",
            "STREAMLEARN_TRAINER_BATCH_SIZE": str(BATCH),
            "STREAMLEARN_TRAINER_MAX_WAIT_MS": "2000",
            "STREAMLEARN_TRAINER_PER_USER_CAP": str(BATCH),
            "STREAMLEARN_TRAINER_GUARD_MIN_LABELS": "0",  # like the cap: as the reference learns
            "STREAMLEARN_TRAINER_GATE_EVERY_EXAMPLES": str(n),
            "STREAMLEARN_TRAINER_GATE_WINDOW_MAX": str(n),
            "STREAMLEARN_TRAINER_SANITY_SIZE": "0",
            # One learner against the same learner in process: no race after a drift alarm.
            "STREAMLEARN_DRIFT_FORGET_ON_DRIFT": "1",
            "STREAMLEARN_TRAINER_METRICS_PORT": str(port),
            # Arrival order, as the references: this bench checks the trainer's plumbing and
            # speed against the same learner in process (the stream's timestamps are minutes
            # old, so cohorts would mix arrival and prediction order). Cohorts' effect on
            # learning is bench quality's.
            "STREAMLEARN_TRAINER_COHORT_WAIT_MS": "0",
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
        console.log(f"system: {rate:,.0f} examples/s end to end, prequential loss {loss:.5f}")
        return {"system_logloss": loss, "system_samples_per_s": rate}
    finally:
        if proc is not None:
            stop_process(proc, timeout_s=60)


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
