"""The time index: exact order, and expiry cost counted in index operations (never timed)."""

from __future__ import annotations

import random

import pytest

from streams.joiner import JoinPolicy, PartitionJoiner
from streams.joiner.index import TimeIndex
from streams.joiner.scenario import generate
from tests.unit.streams.joiner.harness import decoded


@pytest.mark.parametrize("seed", range(5))
def test_pops_come_out_in_deadline_then_key_order(seed):
    rng = random.Random(seed)
    entries = []
    for n in range(2_000):
        # Mostly increasing deadlines, some stragglers, many ties.
        deadline = n // 3 - (rng.randrange(50) if rng.random() < 0.2 else 0)
        entries.append((deadline, f"k{rng.randrange(100)}"))
    index = TimeIndex()
    for deadline, key in entries:
        index.push(deadline, key)

    popped = []
    while (entry := index.pop_before(400)) is not None:
        popped.append(entry)
    while (entry := index.pop()) is not None:
        popped.append(entry)

    assert popped == sorted(entries)
    # Only the stragglers (~20%) take the heap; ties with unordered keys do not.
    assert 0 < index.heap_pushes < len(entries) // 4


def test_a_half_served_group_takes_new_entries_in_order():
    index = TimeIndex()
    for key in ("c", "a", "b"):
        index.push(5, key)
    index.push(9, "z")
    assert index.pop() == (5, "a")  # an eviction stops midway through the group
    index.push(5, "aa")
    index.push(3, "x")
    assert [index.pop() for _ in range(5)] == [(3, "x"), (5, "aa"), (5, "b"), (5, "c"), (9, "z")]


def test_a_restored_index_starts_sorted_with_an_empty_heap():
    index = TimeIndex([(5, "b"), (1, "z"), (5, "a")])
    assert [index.pop() for _ in range(3)] == [(1, "z"), (5, "a"), (5, "b")]
    assert index.heap_pushes == 0


def _index_work(predictions: int) -> tuple[float, int]:
    policy = JoinPolicy(attribution_window_ms=1_000, allowed_lateness_ms=100, max_pending=10**6)
    scenario = generate("in_order", policy, predictions=predictions, mean_gap_ms=2, seed=5)
    inputs, _ = decoded(scenario, 0)
    joiner = PartitionJoiner(policy)
    live, done = joiner.indexes
    largest_overhang = 0
    for message in inputs:
        if hasattr(message, "request_id"):
            joiner.on_prediction(message)  # type: ignore[arg-type]
        else:
            joiner.on_event(message)  # type: ignore[arg-type]
        # Entries never pile up: stale ones leave when their deadline passes.
        overhang = len(live) + len(done) - 2 * (joiner.pending + joiner.done_markers)
        largest_overhang = max(largest_overhang, overhang)
    # Each call looks at each index's head once more than it pops: no scan, whatever the state.
    assert live.peeks <= live.pops + len(inputs)
    assert done.peeks <= done.pops + len(inputs)
    assert live.pops <= live.pushes and done.pops <= done.pushes
    work = live.pushes + live.peeks + done.pushes + done.peeks
    return work / len(inputs), largest_overhang


def test_expiry_work_per_message_is_constant_and_small():
    small, small_overhang = _index_work(2_000)
    large, large_overhang = _index_work(16_000)  # 8x the input, ~8x the pending state

    assert large < 6 and small < 6
    assert large == pytest.approx(small, rel=0.1)
    assert small_overhang <= 1 and large_overhang <= 1
