"""``bench replay``'s run through the real services: ratings as requests to ``streamlearn serve``,
labelled by ``streamlearn join``, learnt by ``streamlearn train``.

``LocalLoop`` starts the three processes on topics, consumer groups and a registry prefix of
this run's own, from a cold start (no champion: serving makes ``ctr-v1.0``, the model
``new_model`` makes in process too). Every ``ROUND_S`` the driver sends the next ratings at a
steady ``rate``: one ``POST /v1/predict`` per rating with its one candidate (a few at a time),
then one ``POST /v1/events`` with an impression per served prediction and a click for each
liked one. The joiner emits one example per prediction (label 1 at the click, 0 when the
window closes); its ``score`` is what serving served. Only the timings differ from the
defaults (``REPLAY_SETTINGS``): every click is sent with its impression, so a 2 s attribution
window loses none and labels arrive within seconds, not the default window's 36 s; the model,
its features, the micro-batch, the gate and its cadence are the defaults. Afterwards the
processes are stopped and the run's topics and registry keys deleted.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from config.settings import KafkaSettings, RedisSettings, RegistrySettings, load
from services.local.demo import start_loop
from services.local.loop import LocalLoop, delete_prefix, delete_topics
from services.simulator.driver import batches
from services.simulator.movielens import Rating
from streams.schemas import Example, decode_example
from streams.topics import ensure_topics, topic_specs

REPLAY_SETTINGS = {
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "2000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "1000",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "3000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
    "STREAMLEARN_TRAINER_MAX_WAIT_MS": "500",
    "STREAMLEARN_TRAINER_CHAMPION_POLL_MS": "500",
    "STREAMLEARN_SERVING_POLL_INTERVAL_S": "1",
}
ROUND_S = 0.25  # one round of predicts, then its events
WORKERS = 4  # predict calls in flight at once
DRAIN_S = 120.0  # how long the last examples may take to appear after the traffic


@dataclass(frozen=True)
class ServicesResult:
    """What the services served and the joiner emitted, per example (joiner order).

    Attributes:
        index: The rating (position in the replayed sequence) of each example.
        labels: The joiner's label of each example.
        scores: What serving served for it (the example's ``score``).
        versions: Model versions that served, in order of first use.
        sent: Ratings sent as predict calls.
        served: Predictions served (a 200 with a prediction).
        failed_calls: Predict or events calls that failed or were refused.
        label_mismatches: Examples whose label is not the rating's (0 when nothing is lost).
        seconds: Duration of the traffic.
    """

    index: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    versions: list[str]
    sent: int
    served: int
    failed_calls: int
    label_mismatches: int
    seconds: float


def run_services(ratings: Sequence[Rating], rate: float, console: Console) -> ServicesResult:
    """Replay ``ratings`` through serve, join and train at ``rate`` ratings per second."""
    base = load(KafkaSettings)
    tag = f"replay-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    kafka = base.model_copy(update={
        name: f"{tag}-{getattr(base, name)}"
        for name in ("predictions_topic", "events_topic", "examples_topic", "dlq_topic",
                     "late_labels_topic")})
    prefix = f"streamlearn-bench:{tag}:"
    signing_key = load(RegistrySettings).signing_key.get_secret_value()
    with tempfile.TemporaryDirectory(prefix="sl-replay-") as tmp:
        loop = LocalLoop(kafka, prefix, signing_key, Path(tmp), REPLAY_SETTINGS, tag=tag)
        ensure_topics(AdminClient({"bootstrap.servers": kafka.bootstrap_servers}), kafka)
        try:
            start_loop(loop, console)
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task(f"services, {rate:g} ratings/s", total=len(ratings))
                started = time.monotonic()
                pending, failed = drive(loop, ratings, rate, bar, task)
                seconds = time.monotonic() - started
            with console.status("waiting for the joiner's last examples…"):
                examples = collect(kafka, set(pending), DRAIN_S)
            loop.check_alive()
        finally:
            loop.stop()
            delete_topics(kafka.bootstrap_servers,
                          [s.name for s in topic_specs(kafka)] + loop.joiner_topics)
            delete_prefix(load(RedisSettings).url, prefix)
    index = np.asarray([pending[e.prediction_id] for e in examples], dtype=np.int64)
    labels = np.asarray([e.label for e in examples], dtype=np.float64)
    expected = np.asarray([ratings[i].label for i in index], dtype=np.float64)
    versions = list(dict.fromkeys(e.model_version for e in examples))
    return ServicesResult(index, labels, np.asarray([e.score for e in examples]), versions,
                          sent=len(ratings), served=len(pending), failed_calls=failed,
                          label_mismatches=int((labels != expected).sum()), seconds=seconds)


def drive(loop: LocalLoop, ratings: Sequence[Rating], rate: float,
          progress: Progress | None = None, task: TaskID | None = None,
          ) -> tuple[dict[str, int], int]:
    """Send every rating at ``rate`` per second, in rounds of ``ROUND_S``.

    Returns:
        The rating index of each served prediction id, and the failed calls.
    """
    per_round = max(1, round(rate * ROUND_S))
    served: dict[str, int] = {}
    failed = 0
    with httpx.Client(base_url=loop.url, timeout=30.0) as http, \
            ThreadPoolExecutor(WORKERS) as pool:

        def predict(i: int) -> tuple[int, Any]:
            try:
                response = http.post("/v1/predict", json=ratings[i].body())
            except httpx.HTTPError:
                return i, None
            return i, response.json() if response.status_code == 200 else None

        next_round = time.monotonic()
        for start in range(0, len(ratings), per_round):
            time.sleep(max(0.0, next_round - time.monotonic()))
            next_round = max(next_round + ROUND_S, time.monotonic() - 1.0)
            loop.check_alive()
            events: list[dict[str, Any]] = []
            for i, body in pool.map(predict, range(start, min(start + per_round, len(ratings)))):
                if not body or not body.get("predictions"):
                    failed += 1
                    continue
                pid = body["predictions"][0]["prediction_id"]
                served[pid] = i
                events.append({"type": "impression", "prediction_id": pid})
                if ratings[i].label:
                    events.append({"type": "click", "prediction_id": pid})
            for chunk in batches(events):
                try:
                    ok = http.post("/v1/events", json={"events": chunk}).status_code == 202
                except httpx.HTTPError:
                    ok = False
                failed += not ok
            if progress is not None and task is not None:
                progress.advance(task, min(per_round, len(ratings) - start))
    return served, failed


def collect(kafka: KafkaSettings, expected: set[str], timeout_s: float) -> list[Example]:
    """The committed examples (read_committed) of ``expected`` prediction ids, in topic order
    per partition, once all of them are there or ``timeout_s`` has passed."""
    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap_servers, "group.id": f"read-{uuid.uuid4().hex}",
        "isolation.level": "read_committed", "enable.auto.commit": False,
    })
    found: dict[str, Example] = {}
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(kafka.examples_topic, p, 0)
                         for p in range(kafka.partitions)])
        while len(found) < len(expected) and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                decoded = decode_example(message.value())
                if isinstance(decoded, Example) and decoded.prediction_id in expected:
                    found.setdefault(decoded.prediction_id, decoded)
    finally:
        consumer.close()
    return list(found.values())
