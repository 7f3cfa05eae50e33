"""Streaming statistics the feature encoder keeps per numeric feature.

``RunningStats`` is Welford's running mean/variance, updated a whole batch at a time with Chan's
parallel merge (exactly equal to feeding the values one by one, up to float rounding).
``ReservoirSketch`` keeps a fixed-size uniform sample of everything seen (Vitter's algorithm R)
and reads approximate quantiles off it: memory is bounded by ``size`` whatever the stream length.

Both are deterministic: the reservoir draws its random numbers from a counter-based hash of
(seed, position), so replaying a stream rebuilds the same sketch and no RNG state needs saving.

Example:
    >>> stats = RunningStats()
    >>> stats.update(np.array([1.0, 2.0, 3.0]))
    >>> stats.update(np.array([4.0]))
    >>> stats.count, stats.mean, round(stats.variance, 4)
    (4, 2.5, 1.25)
    >>> sketch = ReservoirSketch(size=100, seed=7)
    >>> sketch.update(np.arange(10_000, dtype=np.float64))
    >>> len(sketch.values), sketch.seen
    (100, 10000)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

_U64 = np.uint64
# SplitMix64 constants (Steele, Lea & Flood 2014): a cheap, well-mixed counter-based generator.
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)


def splitmix64(counters: np.ndarray, seed: int) -> np.ndarray:
    """Hash each counter with SplitMix64: a deterministic pseudo-random uint64 per position.

    Args:
        counters: Non-negative integers (any integer dtype).
        seed: Stream seed; different seeds give independent sequences.

    Returns:
        One uint64 per counter.

    Example:
        >>> int(splitmix64(np.array([0]), seed=0)[0])
        16294208416658607535
    """
    # Counter i reads the state SplitMix64 would hold at its (i + 1)-th call: seed + (i + 1) * γ.
    # uint64 *array* arithmetic wraps modulo 2**64, which is exactly what SplitMix64 wants (numpy
    # only warns on overflowing *scalar* maths, hence the seed reduced with Python ints).
    z = (counters.astype(_U64) + _U64(1)) * _GOLDEN + _U64(seed % 2**64)
    z = (z ^ (z >> _U64(30))) * _MIX1
    z = (z ^ (z >> _U64(27))) * _MIX2
    return z ^ (z >> _U64(31))


class RunningStats:
    """Running count, mean and sum of squared deviations (Welford), merged batch-wise (Chan)."""

    __slots__ = ("count", "mean", "m2")

    def __init__(self, count: int = 0, mean: float = 0.0, m2: float = 0.0) -> None:
        self.count = count
        self.mean = mean
        self.m2 = m2

    @property
    def variance(self) -> float:
        """Population variance of the values seen so far (0.0 before two values)."""
        return self.m2 / self.count if self.count > 1 else 0.0

    def update(self, values: np.ndarray) -> None:
        """Fold a batch of finite values into the statistics."""
        n_b = int(values.size)
        if n_b == 0:
            return
        mean_b = float(values.mean())
        m2_b = float(np.square(values - mean_b).sum())
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    def standardise(self, values: np.ndarray, clip: float) -> np.ndarray:
        """Z-scores of ``values`` clipped to ``[-clip, clip]``.

        Until the spread is known (fewer than two values, or all equal) every z-score is 0, so a
        numeric feature contributes nothing rather than its raw, unscaled magnitude.
        """
        if self.count < 2 or self.m2 <= 0.0:
            return np.zeros_like(values)
        std = math.sqrt(self.m2 / self.count)
        return np.clip((values - self.mean) / std, -clip, clip)

    def to_state(self) -> list[float]:
        """JSON-serialisable state (floats round-trip exactly through ``json``)."""
        return [self.count, self.mean, self.m2]

    @classmethod
    def from_state(cls, state: list[Any]) -> RunningStats:
        """Inverse of ``to_state``."""
        count, mean, m2 = state
        return cls(int(count), float(mean), float(m2))


class ReservoirSketch:
    """A bounded uniform sample of a stream, for approximate quantiles and binning.

    With a reservoir of ``size`` values, a quantile's rank error has standard deviation about
    ``sqrt(q * (1 - q) / size)``; 256 values give ±3 % around the median, plenty for choosing
    bucket edges.
    """

    __slots__ = ("size", "seed", "seen", "values", "_edges", "_edges_buckets")

    def __init__(self, size: int, seed: int) -> None:
        if size < 1:
            raise ValueError(f"sketch size must be >= 1, got {size}")
        self.size = size
        self.seed = seed
        self.seen = 0
        self.values = np.empty(0, dtype=np.float64)
        self._edges: np.ndarray | None = None
        self._edges_buckets = 0

    def update(self, values: np.ndarray) -> None:
        """Offer a batch of finite values to the reservoir, in stream order."""
        m = int(values.size)
        if m == 0:
            return
        free = max(0, min(self.size - self.values.size, m))
        if free:
            self.values = np.concatenate([self.values, values[:free]])
        rest = values[free:]
        if rest.size:
            # Algorithm R: the item at 0-based position p replaces slot j ~ U{0..p} when j < size.
            positions = np.arange(self.seen + free, self.seen + m, dtype=np.int64)
            draws = splitmix64(positions, self.seed) % (positions.astype(_U64) + _U64(1))
            slots = draws.astype(np.int64)
            keep = slots < self.size
            slots, accepted = slots[keep], rest[keep]
            if slots.size:
                # Sequential semantics: of two items aimed at one slot, the later one wins.
                # numpy fancy assignment does not promise an order, so keep the last explicitly.
                rev_slots = slots[::-1]
                _, first_in_rev = np.unique(rev_slots, return_index=True)
                self.values = self.values.copy()
                self.values[rev_slots[first_in_rev]] = accepted[::-1][first_in_rev]
        self.seen += m
        self._edges = None

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        """Approximate quantiles ``qs`` (in [0, 1]) of the stream; NaNs before any value."""
        if self.values.size == 0:
            return np.full(np.shape(qs), np.nan)
        return np.quantile(self.values, qs)

    def bucketise(self, values: np.ndarray, n_buckets: int) -> np.ndarray:
        """Equal-frequency bucket number (0..n_buckets-1) of each value; all 0 before any value."""
        if self.values.size == 0:
            return np.zeros(values.shape, dtype=np.int64)
        if self._edges is None or self._edges_buckets != n_buckets:
            inner = np.arange(1, n_buckets, dtype=np.float64) / n_buckets
            self._edges = np.quantile(self.values, inner)
            self._edges_buckets = n_buckets
        return np.searchsorted(self._edges, values, side="right").astype(np.int64)

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"seen": self.seen, "values": self.values.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any], size: int, seed: int) -> ReservoirSketch:
        """Inverse of ``to_state``."""
        sketch = cls(size, seed)
        sketch.seen = int(state["seen"])
        sketch.values = np.asarray(state["values"], dtype=np.float64)
        return sketch
