"""The forgetting guard: a seeded reservoir of older examples replayed into fine-tuning steps.

A stateful challenger that only ever sees the latest micro-batches drifts towards them and can
forget what it knew (catastrophic forgetting). Mixing a few examples drawn uniformly from the
whole past into each update keeps the old patterns in the gradient. The reservoir is Vitter's
Algorithm R: after ``n`` additions every example has had the same ``capacity / n`` chance to
be kept, in bounded memory. A seed makes the draws, and so every test, reproducible.

Replayed examples are trained on and never evaluated: the gate scores fresh examples only.

Example:
    >>> pool = Reservoir(capacity=3, seed=0)
    >>> pool.add(range(10))
    >>> len(pool), pool.seen
    (3, 10)
    >>> mixed = pool.mix(["x", "y"], ratio=0.5)
    >>> mixed[:2], len(mixed)
    (['x', 'y'], 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


class Reservoir(Generic[T]):
    """A uniform sample of at most ``capacity`` items from everything ``add``ed so far."""

    def __init__(self, capacity: int = 10_000, seed: int = 0) -> None:
        """Create an empty reservoir.

        Raises:
            ValueError: ``capacity`` < 1.
        """
        if capacity < 1:
            raise ValueError(f"reservoir capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self._items: list[T] = []
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> list[T]:
        """A copy of the current sample (order is the reservoir's slot order)."""
        return list(self._items)

    def add(self, items: Iterable[T]) -> None:
        """Offer items to the sample (Algorithm R)."""
        for item in items:
            self.seen += 1
            if len(self._items) < self.capacity:
                self._items.append(item)
                continue
            slot = int(self._rng.integers(self.seen))
            if slot < self.capacity:
                self._items[slot] = item

    def sample(self, k: int) -> list[T]:
        """``min(k, len(self))`` distinct items drawn without replacement (seeded)."""
        k = min(max(k, 0), len(self._items))
        if not k:
            return []
        picks = self._rng.choice(len(self._items), size=k, replace=False)
        return [self._items[int(i)] for i in picks]

    def mix(self, batch: Sequence[T], ratio: float) -> list[T]:
        """The batch followed by ``round(ratio * len(batch))`` replayed items.

        Fewer are replayed while the reservoir holds fewer. Does not add ``batch`` to the
        reservoir: call ``add`` after the update, so a batch never replays itself.

        Args:
            batch: The fresh examples.
            ratio: Replayed examples per fresh one (0 disables replay).

        Returns:
            A new list: ``batch``'s items, then the replayed ones.

        Raises:
            ValueError: ``ratio`` < 0.
        """
        if ratio < 0:
            raise ValueError(f"replay ratio must be >= 0, got {ratio}")
        return [*batch, *self.sample(round(ratio * len(batch)))]
