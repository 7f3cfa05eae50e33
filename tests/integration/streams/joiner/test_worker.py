"""The joiner worker on the real broker: exact sets of examples, whatever happens to it."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from config.settings import KafkaSettings
from services.local.joiners import (
    TEST_POLICY,
    JoinerCluster,
    produce,
    read_all,
    read_examples,
    wait_until_drained,
)
from streams.joiner.scenario import Scenario, generate, summarize


def scenario(variant: str, kafka: KafkaSettings, predictions: int = 1_500, **knobs) -> Scenario:
    # p_late_delivery=0: a click the generator delivers after its window closed (in its merged
    # order) may reach the worker before the close on Kafka, which interleaves the two topics
    # as it likes; then label 1 is the right answer and the expectation would be wrong.
    return generate(
        variant, TEST_POLICY, predictions=predictions, partitions=kafka.partitions, seed=11,
        start_ts=int(time.time() * 1000) - 5_000, mean_gap_ms=1, p_late_delivery=0.0,
        predictions_topic=kafka.predictions_topic, events_topic=kafka.events_topic, **knobs,
    )


@pytest.fixture
def cluster(make_topics: Callable[..., KafkaSettings], tmp_path: Path) -> Iterator[JoinerCluster]:
    c = JoinerCluster(make_topics(partitions=3), tmp_path)
    yield c
    c.close()


def assert_exactly_once(s: Scenario, cluster: JoinerCluster) -> None:
    emitted = summarize(read_examples(cluster.kafka))
    duplicates = {k: n for k, n in Counter(emitted).items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} examples emitted twice"
    missing, extra = s.expected_examples - set(emitted), set(emitted) - s.expected_examples
    assert (len(missing), len(extra)) == (0, 0), (
        f"missing {sorted(missing)[:5]} extra {sorted(extra)[:5]}"
    )


@pytest.mark.parametrize("variant", ["in_order", "shuffled", "duplicates", "late_clicks"])
def test_variant_gives_the_expected_examples(variant: str, cluster: JoinerCluster) -> None:
    s = scenario(variant, cluster.kafka)
    produce(cluster.kafka, s.messages)
    cluster.start()
    wait_until_drained(cluster)
    assert_exactly_once(s, cluster)
    if variant == "late_clicks":
        late = [orjson.loads(v) for v in read_all(cluster.kafka, cluster.kafka.late_labels_topic)]
        assert {(x["prediction_id"], x["ts_click"]) for x in late} >= {
            (x.prediction_id, x.ts_click)
            for x in s.expected_late_labels
            if x.reason == "after_window"
        }


def test_garbage_goes_to_the_dlq_with_its_origin(cluster: JoinerCluster) -> None:
    s = scenario("garbage", cluster.kafka)
    produce(cluster.kafka, s.messages)
    cluster.start()
    wait_until_drained(cluster)
    assert_exactly_once(s, cluster)
    dlq = [orjson.loads(v) for v in read_all(cluster.kafka, cluster.kafka.dlq_topic)]
    garbage = [m for m in s.messages if m.garbage and m.topic]
    assert len(dlq) == len(garbage)
    assert {r["source_topic"] for r in dlq} <= {cluster.kafka.predictions_topic,
                                               cluster.kafka.events_topic}
    assert all(r["error"] and r["offset"] >= 0 for r in dlq)


def kill_while_working(cluster: JoinerCluster, rng: random.Random) -> None:
    """SIGKILL w1 at a random moment after it has started handling input (a restarted worker
    first waits for the dead one's session to expire, and a kill before that tests nothing)."""
    deadline = time.monotonic() + 90
    while not (cluster.metric("w1", "streamlearn_joiner_outcomes_total") or 0) > 0:
        assert time.monotonic() < deadline, f"w1 handled nothing in 90 s\n{cluster.logs()}"
        time.sleep(0.2)
    time.sleep(rng.uniform(0.2, 2.5))
    cluster.kill9("w1")


def test_kill_9_at_random_points_then_restart(cluster: JoinerCluster) -> None:
    """≥ 20,000 predictions; the worker is SIGKILLed three times while it is working."""
    s = scenario("everything", cluster.kafka, predictions=20_000)
    rng = random.Random(5)
    messages = list(s.messages)
    cuts = sorted(rng.sample(range(len(messages) // 5, len(messages)), 2))
    cluster.start("w1")
    produce(cluster.kafka, messages[: cuts[0]])
    for start, end in zip(cuts, [*cuts[1:], len(messages)], strict=True):
        kill_while_working(cluster, rng)
        produce(cluster.kafka, messages[start:end])
        cluster.start("w1")
    kill_while_working(cluster, rng)
    cluster.start("w1")
    wait_until_drained(cluster, timeout_s=300)
    assert_exactly_once(s, cluster)


def test_two_workers_with_a_rebalance_mid_stream(cluster: JoinerCluster) -> None:
    s = scenario("everything", cluster.kafka, predictions=6_000)
    half = len(s.messages) // 2
    cluster.start("w1")
    produce(cluster.kafka, s.messages[:half])
    cluster.start("w2")  # joins the group: partitions move while input flows
    produce(cluster.kafka, s.messages[half:])
    wait_until_drained(cluster, timeout_s=240)
    assert_exactly_once(s, cluster)


def test_replay_of_the_same_input_gives_identical_examples(
    make_topics: Callable[..., KafkaSettings], tmp_path: Path
) -> None:
    runs = []
    s = None
    for n in range(2):
        kafka = make_topics(partitions=3)
        s = s or scenario("everything", kafka, predictions=1_500)
        # Same messages, retargeted to this run's topics.
        rename = {s.spec.predictions_topic: kafka.predictions_topic,
                  s.spec.events_topic: kafka.events_topic}
        produce(kafka, [m.__class__(rename.get(m.topic, m.topic), m.partition, m.key, m.value,
                                    m.garbage) for m in s.messages])
        c = JoinerCluster(kafka, tmp_path / f"run{n}")
        c.workdir.mkdir()
        try:
            c.start()
            wait_until_drained(c)
            runs.append(sorted((e.prediction_id, e.label, e.ts_label, e.ts_prediction,
                                orjson.dumps(e.features)) for e in read_examples(kafka)))
        finally:
            c.close()
    assert runs[0] == runs[1] and len(runs[0]) == len(s.expected_examples)
