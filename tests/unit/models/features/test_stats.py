"""Running statistics and the reservoir sketch against numpy on known distributions."""

from __future__ import annotations

import numpy as np
import pytest

from models.features.stats import ReservoirSketch, RunningStats, splitmix64


def test_running_stats_match_numpy_over_uneven_batches() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(40.0, 12.0, size=10_000)
    stats = RunningStats()
    for chunk in np.split(values, [1, 2, 7, 500, 501, 4_000, 9_999]):
        stats.update(chunk)
    assert stats.count == values.size
    assert stats.mean == pytest.approx(np.mean(values), rel=1e-12)
    assert stats.variance == pytest.approx(np.var(values), rel=1e-10)


def test_running_stats_state_round_trip() -> None:
    stats = RunningStats()
    stats.update(np.array([1.0, 5.0, 9.0]))
    again = RunningStats.from_state(stats.to_state())
    assert again.to_state() == stats.to_state()


def test_standardise_is_zero_until_spread_is_known_and_clipped_after() -> None:
    stats = RunningStats()
    assert stats.standardise(np.array([100.0]), clip=5.0).tolist() == [0.0]
    stats.update(np.array([3.0]))
    assert stats.standardise(np.array([100.0]), clip=5.0).tolist() == [0.0]
    stats.update(np.array([1.0, 2.0]))
    z = stats.standardise(np.array([2.0, 1e6]), clip=5.0)
    assert z.tolist() == [0.0, 5.0]


def test_sketch_keeps_a_uniform_sample_of_a_sorted_stream() -> None:
    # A sorted stream exposes "kept the first/last values" bugs: only a uniform sample of
    # positions gives quantiles near q * n.
    n = 100_000
    sketch = ReservoirSketch(size=512, seed=11)
    for chunk in np.array_split(np.arange(n, dtype=np.float64), 173):
        sketch.update(chunk)
    qs = np.linspace(0.1, 0.9, 9)
    ranks = sketch.quantiles(qs) / n
    # Rank error sd is sqrt(q(1-q)/512) <= 0.022; 0.07 is over 3 sd.
    np.testing.assert_allclose(ranks, qs, atol=0.07)


def test_sketch_quantiles_of_a_normal_distribution() -> None:
    rng = np.random.default_rng(5)
    sketch = ReservoirSketch(size=512, seed=2)
    for _ in range(100):
        sketch.update(rng.normal(size=500))
    # Standard normal deciles.
    expected = np.array([-1.2816, -0.8416, -0.5244, -0.2533, 0.0, 0.2533, 0.5244, 0.8416, 1.2816])
    np.testing.assert_allclose(sketch.quantiles(np.linspace(0.1, 0.9, 9)), expected, atol=0.2)


def test_sketch_memory_is_bounded() -> None:
    sketch = ReservoirSketch(size=64, seed=0)
    for start in range(0, 200_000, 10_000):
        sketch.update(np.arange(start, start + 10_000, dtype=np.float64))
        assert sketch.values.size <= 64
    assert sketch.seen == 200_000
    assert sketch.values.size == 64


def test_sketch_is_deterministic_and_round_trips() -> None:
    def build() -> ReservoirSketch:
        sketch = ReservoirSketch(size=32, seed=9)
        for chunk in np.array_split(np.linspace(0, 1, 5_000), 7):
            sketch.update(chunk)
        return sketch

    first, second = build(), build()
    np.testing.assert_array_equal(first.values, second.values)
    restored = ReservoirSketch.from_state(first.to_state(), size=32, seed=9)
    restored.update(np.array([0.5] * 100))
    first.update(np.array([0.5] * 100))
    np.testing.assert_array_equal(restored.values, first.values)


def test_bucketise_gives_equal_frequency_buckets() -> None:
    sketch = ReservoirSketch(size=1_000, seed=1)
    values = np.arange(1_000, dtype=np.float64)
    sketch.update(values)
    counts = np.bincount(sketch.bucketise(values, n_buckets=4), minlength=4)
    assert counts.tolist() == [250, 250, 250, 250]
    assert ReservoirSketch(size=8, seed=0).bucketise(values, 4).max() == 0


def test_splitmix64_reference_values() -> None:
    # First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
    assert splitmix64(np.array([0, 1]), seed=0).tolist() == [
        0xE220A8397B1DCDAF,
        0x6E789E6AA1B965F4,
    ]
