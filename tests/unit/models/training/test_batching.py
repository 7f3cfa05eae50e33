"""Micro-batching by size and age, dedup by prediction_id, and the per-user poisoning guard."""

from __future__ import annotations

import json

import pytest

from models.training.batching import MicroBatcher, SeenIds, cap_per_user
from tests.unit.models.training.factories import make_example


def test_batcher_emits_a_full_batch_at_batch_size() -> None:
    batcher: MicroBatcher[int] = MicroBatcher(batch_size=3, max_wait_ms=10_000)
    emitted = [batcher.add(i, now_ms=i) for i in range(7)]
    assert emitted == [None, None, [0, 1, 2], None, None, [3, 4, 5], None]
    assert len(batcher) == 1 and batcher.flush() == [6] and len(batcher) == 0


def test_batcher_emits_a_partial_batch_once_its_first_item_is_max_wait_old() -> None:
    batcher: MicroBatcher[str] = MicroBatcher(batch_size=512, max_wait_ms=100)
    assert batcher.add("a", now_ms=1_000) is None
    assert batcher.add("b", now_ms=1_099) is None
    assert batcher.add("c", now_ms=1_100) == ["a", "b", "c"]
    # The age counts from the next batch's own first item, not from the previous batch.
    assert batcher.add("d", now_ms=1_150) is None
    assert batcher.deadline_ms == 1_250


def test_idle_batcher_is_closed_by_poll_and_reports_no_deadline_when_empty() -> None:
    batcher: MicroBatcher[str] = MicroBatcher(batch_size=512, max_wait_ms=100)
    assert batcher.deadline_ms is None and batcher.poll(now_ms=10**12) is None
    batcher.add("a", now_ms=0)
    assert batcher.poll(now_ms=99) is None
    assert batcher.poll(now_ms=100) == ["a"]
    assert batcher.flush() == []


@pytest.mark.parametrize(("size", "wait"), [(0, 10), (1, -1)])
def test_batcher_refuses_bad_bounds(size: int, wait: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        MicroBatcher(batch_size=size, max_wait_ms=wait)


def test_dedup_drops_redelivered_and_repeated_ids() -> None:
    seen = SeenIds(capacity=100)
    first = [make_example(prediction_id=p) for p in ("a", "b", "a", "c")]
    fresh, dropped = seen.filter_new(first, now_ms=0)
    assert [e.prediction_id for e in fresh] == ["a", "b", "c"] and dropped == 1
    again = [make_example(prediction_id=p) for p in ("c", "d")]
    fresh, dropped = seen.filter_new(again, now_ms=1)
    assert [e.prediction_id for e in fresh] == ["d"] and dropped == 1
    assert len(seen) == 4


def test_dedup_is_bounded_by_count_forgetting_the_oldest() -> None:
    seen = SeenIds(capacity=1_000)
    for i in range(2_500):
        seen.add(f"p{i}", now_ms=i)
    assert len(seen) == 1_000
    assert "p1499" not in seen and "p1500" in seen and "p2499" in seen


def test_dedup_is_bounded_by_age() -> None:
    seen = SeenIds(capacity=1_000, max_age_ms=50)
    for i in range(100):
        seen.add(f"p{i}", now_ms=i)
    # At t=99 the horizon is 49: ids seen at 49..99 remain.
    assert len(seen) == 51 and "p48" not in seen and "p49" in seen
    seen.expire(now_ms=1_000)
    assert len(seen) == 0


def test_dedup_state_round_trips_through_json_and_keeps_rejecting() -> None:
    seen = SeenIds(capacity=10)
    seen.filter_new([make_example(prediction_id=f"p{i}") for i in range(12)], now_ms=7)
    state = json.loads(json.dumps(seen.to_state()))
    assert state[0] == ["p2", 7] and len(state) == 10
    restored = SeenIds.from_state(state, capacity=10)
    fresh, dropped = restored.filter_new([make_example(prediction_id="p5")], now_ms=8)
    assert fresh == [] and dropped == 1
    # Restoring into a smaller bound keeps the most recent ids.
    assert SeenIds.from_state(state, capacity=3).to_state() == [["p9", 7], ["p10", 7], ["p11", 7]]


@pytest.mark.parametrize("entry", [["p1"], [1, 2], ["p1", "late"]])
def test_dedup_state_refuses_malformed_entries(entry: list[object]) -> None:
    with pytest.raises(ValueError, match=r"\[id, ms\]"):
        SeenIds.from_state([entry])


def test_cap_keeps_the_first_examples_of_each_user_and_counts_the_rest() -> None:
    users = ["bot"] * 50 + ["u1", "u2", "u1", "bot", "u1", "u1"]
    batch = [make_example(user_id=u) for u in users]
    kept, dropped = cap_per_user(batch, cap=3)
    assert dropped == 48 + 1  # the bot sent 51 (48 dropped), u1 sent 4 (1 dropped)
    assert [e.features["user_id"] for e in kept] == ["bot"] * 3 + ["u1", "u2", "u1", "u1"]
    assert kept == [batch[i] for i in (0, 1, 2, 50, 51, 52, 54)]


def test_cap_leaves_examples_without_a_user_alone() -> None:
    batch = [make_example(user_id=None) for _ in range(10)] + [make_example(user_id="u")] * 3
    kept, dropped = cap_per_user(batch, cap=1)
    assert len(kept) == 11 and dropped == 2
    assert cap_per_user(batch, cap=None) == (batch, 0)
    with pytest.raises(ValueError, match="cap"):
        cap_per_user(batch, cap=0)
