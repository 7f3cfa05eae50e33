"""The forgetting guard's reservoir: bounded, seeded, uniform enough, and mixing exact counts."""

from __future__ import annotations

import numpy as np
import pytest

from models.training.replay import Reservoir


def filled(seed: int, n: int = 1_000, capacity: int = 50) -> Reservoir[int]:
    pool: Reservoir[int] = Reservoir(capacity=capacity, seed=seed)
    pool.add(range(n))
    return pool


def test_same_seed_same_sample_and_same_replays() -> None:
    a, b = filled(seed=7), filled(seed=7)
    assert a.items == b.items
    assert a.mix([-1] * 10, ratio=0.5) == b.mix([-1] * 10, ratio=0.5)
    assert filled(seed=8).items != a.items


def test_reservoir_is_bounded_and_counts_what_it_was_offered() -> None:
    pool = filled(seed=0, n=1_000, capacity=50)
    assert len(pool) == 50 and pool.seen == 1_000
    assert len(set(pool.items)) == 50 and all(0 <= x < 1_000 for x in pool.items)


def test_reservoir_keeps_old_and_new_items_alike() -> None:
    # Algorithm R keeps each of n items with probability capacity / n: over many seeds the
    # first and the last half of the stream are equally represented.
    firsts = [sum(x < 500 for x in filled(seed=s).items) for s in range(40)]
    assert 23 <= np.mean(firsts) <= 27


def test_mix_appends_round_ratio_times_batch_replays_after_the_batch() -> None:
    pool = filled(seed=1)
    batch = [-1] * 10
    mixed = pool.mix(batch, ratio=0.25)  # round(2.5) == 2
    assert mixed[:10] == batch and len(mixed) == 12
    assert set(mixed[10:]) <= set(pool.items) and len(set(mixed[10:])) == 2
    assert len(pool.mix(batch, ratio=0.0)) == 10
    assert pool.seen == 1_000  # mixing does not add the batch


def test_mix_replays_fewer_while_the_reservoir_is_small() -> None:
    pool: Reservoir[str] = Reservoir(capacity=100, seed=0)
    assert pool.mix(["x"] * 8, ratio=1.0) == ["x"] * 8
    pool.add(["old1", "old2"])
    assert sorted(pool.mix(["x"] * 8, ratio=1.0)[8:]) == ["old1", "old2"]


def test_reservoir_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Reservoir(capacity=0)
    with pytest.raises(ValueError, match="ratio"):
        filled(seed=0).mix([1], ratio=-0.1)
