"""Rolling log loss and CTR per value of one low-cardinality feature (``SliceMonitor``).

Example:
    >>> import numpy as np
    >>> m = SliceMonitor("device", max_slices=2, window=10)
    >>> m.update([{"device": "tv"}], np.array([1]), np.array([0.5]), np.array([0.6931]))
    >>> m.figures()["tv"].ctr
    1.0
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

OTHER: Final = "other"
MISSING: Final = "missing"


@dataclass(frozen=True, slots=True)
class SliceFigures:
    """Rolling figures of one slice: examples, log loss, observed and predicted CTR."""

    n: int
    log_loss: float
    ctr: float
    predicted_ctr: float


class SliceMonitor:
    """Rolling log loss and CTR per value of one low-cardinality feature, bounded in memory.

    The first ``max_slices - 1`` values seen get their own slice; later ones share ``other``
    (and a missing feature is the ``missing`` value). Each slice keeps its last ``window``
    examples.

    Example:
        >>> m = SliceMonitor("device", max_slices=2, window=10)
        >>> m.update([{"device": "tv"}, {"device": "web"}, {}], np.array([1, 0, 0]),
        ...          np.array([0.5, 0.5, 0.5]), np.array([0.6931, 0.6931, 0.6931]))
        >>> {k: (f.n, f.ctr) for k, f in m.figures().items()}
        {'tv': (1, 1.0), 'other': (2, 0.0)}
    """

    def __init__(self, feature: str, *, max_slices: int = 8, window: int = 5_000) -> None:
        if max_slices < 2 or window < 1:
            raise ValueError("need max_slices >= 2 (one is 'other') and window >= 1")
        self.feature, self.max_slices, self.window = feature, max_slices, window
        self._slices: dict[str, deque[tuple[float, float, float]]] = {}
        self._sums: dict[str, list[float]] = {}  # running sums of the window: O(1) per example

    def slice_of(self, features: Mapping[str, Any]) -> str:
        """The slice an example falls in."""
        raw = features.get(self.feature)
        value = MISSING if raw is None else str(raw)
        if value in self._slices or len(self._slices) < self.max_slices - 1:
            return value
        return OTHER

    def update(self, rows: Sequence[Mapping[str, Any]], labels: np.ndarray, scores: np.ndarray,
               losses: np.ndarray) -> None:
        """Add one scored batch (feature dicts, 0/1 labels, scores and per-example losses)."""
        for row, y, p, loss in zip(rows, labels.tolist(), scores.tolist(), losses.tolist(),
                                   strict=True):
            key = self.slice_of(row)
            window = self._slices.get(key)
            if window is None:
                window = self._slices[key] = deque(maxlen=self.window)
                self._sums[key] = [0.0, 0.0, 0.0]
            sums = self._sums[key]
            if len(window) == self.window:
                old = window[0]
                sums[0] -= old[0]
                sums[1] -= old[1]
                sums[2] -= old[2]
            window.append((loss, y, p))
            sums[0] += loss
            sums[1] += y
            sums[2] += p

    def figures(self) -> dict[str, SliceFigures]:
        """Each slice's rolling figures."""
        out = {}
        for key, window in self._slices.items():
            n = len(window)
            loss, clicks, scores = self._sums[key]
            out[key] = SliceFigures(n, loss / n, clicks / n, scores / n)
        return out
