"""Drift monitoring on what the trainer sees besides the labels: features, scores, slices.

All pure and bounded in memory; the trainer feeds them each micro-batch and exports what they
say (``services.trainer.metrics``). Concept drift on the labels is ``models.drift.detectors``.

* ``FeatureDriftMonitor``: per-feature drift of the current window against a reference window
  (the first examples seen): PSI for categorical features (top categories of the reference,
  the rest pooled as "other") and for numeric ones (binned at the reference's quantiles), plus
  the two-sample Kolmogorov–Smirnov statistic for numeric ones.
* ``ScoreDriftMonitor``: the same numeric PSI/KS on the champion's predicted scores.
* ``SliceMonitor``: rolling log loss and CTR per value of one low-cardinality feature
  (e.g. ``device``), at most ``max_slices`` values (later ones pooled as "other").

Example:
    >>> import numpy as np
    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
    0.0
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

FeatureKind = Literal["categorical", "numeric"]
OTHER: Final = "other"
MISSING: Final = "missing"
_PSI_FLOOR: Final = 1e-4  # a bin empty on one side would make PSI infinite


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins (counts or shares).

    Shares are floored at 1e-4 so an empty bin gives a large, finite term. Rule of thumb:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.

    Example:
        >>> psi(np.array([50, 50]), np.array([50, 50]))
        0.0
        >>> round(psi(np.array([50, 50]), np.array([90, 10])), 3)
        0.879
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    e = np.maximum(e / e.sum(), _PSI_FLOOR)
    a = np.maximum(a / a.sum(), _PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and its asymptotic p-value.

    The p-value is the Kolmogorov distribution's tail at ``(√nₑ + 0.12 + 0.11/√nₑ)·D``,
    nₑ = n·m/(n+m) (Stephens' correction, as in Numerical Recipes); within 0.01 of
    ``scipy.stats.ks_2samp(method="asymp")`` for samples of a few hundred and more.

    Example:
        >>> d, p = ks_2samp(np.arange(100.0), np.arange(100.0) + 50)
        >>> d, p < 1e-6
        (0.5, True)
    """
    x = np.sort(np.asarray(a, dtype=np.float64))
    y = np.sort(np.asarray(b, dtype=np.float64))
    if not x.size or not y.size:
        return 0.0, 1.0
    grid = np.concatenate([x, y])
    cdf_x = np.searchsorted(x, grid, side="right") / x.size
    cdf_y = np.searchsorted(y, grid, side="right") / y.size
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    ne = x.size * y.size / (x.size + y.size)
    lam = (np.sqrt(ne) + 0.12 + 0.11 / np.sqrt(ne)) * d
    return d, _kolmogorov_sf(float(lam))


def _kolmogorov_sf(lam: float) -> float:
    if lam < 0.2:
        return 1.0
    k = np.arange(1, 101)
    terms = 2.0 * (-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2)
    return float(min(1.0, max(0.0, terms.sum())))


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """One feature's drift, current window against the reference window.

    Attributes:
        feature: The feature's name.
        kind: ``categorical`` or ``numeric``.
        psi: Population stability index (the ``streamlearn_drift_feature_score``).
        ks: Kolmogorov–Smirnov statistic (numeric features; None for categorical ones).
        ks_pvalue: Its asymptotic p-value (None for categorical ones).
        n_reference: Values in the reference window.
        n_current: Values in the current window.
    """

    feature: str
    kind: FeatureKind
    psi: float
    ks: float | None
    ks_pvalue: float | None
    n_reference: int
    n_current: int


class _Categorical:
    """Reference counts of the top categories (the rest pooled) and a sliding window."""

    def __init__(self, reference_size: int, window: int, max_categories: int) -> None:
        self.reference_size, self.max_categories = reference_size, max_categories
        self.counts: dict[str, int] = {}
        self.n_reference = 0
        self.codes: dict[str, int] | None = None  # frozen with the reference
        self.current: deque[int] = deque(maxlen=window)

    def update(self, values: list[Any]) -> None:
        for raw in values:
            value = MISSING if raw is None else str(raw)
            if self.codes is None:
                if value in self.counts or len(self.counts) < 4 * self.max_categories:
                    self.counts[value] = self.counts.get(value, 0) + 1
                else:
                    self.counts[OTHER] = self.counts.get(OTHER, 0) + 1
                self.n_reference += 1
                if self.n_reference >= self.reference_size:
                    self._freeze()
            else:
                self.current.append(self.codes.get(value, len(self.codes)))

    def _freeze(self) -> None:
        top = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [k for k, _ in top if k != OTHER][: self.max_categories]
        self.codes = {k: i for i, k in enumerate(kept)}
        self.reference = np.zeros(len(kept) + 1)
        for k, c in self.counts.items():
            self.reference[self.codes.get(k, len(kept))] += c

    def drift(self, feature: str) -> FeatureDrift | None:
        if self.codes is None or not self.current:
            return None
        actual = np.bincount(np.fromiter(self.current, dtype=np.int64, count=len(self.current)),
                             minlength=len(self.reference))
        return FeatureDrift(feature, "categorical", psi(self.reference, actual), None, None,
                            self.n_reference, len(self.current))


class _Numeric:
    """A reference sample (its quantiles are the PSI bins) and a sliding window."""

    def __init__(self, reference_size: int, window: int, bins: int) -> None:
        self.reference_size, self.bins = reference_size, bins
        self.values: list[float] = []
        self.reference: np.ndarray | None = None
        self.current: deque[float] = deque(maxlen=window)

    def update(self, values: list[Any]) -> None:
        # Missing values, text and booleans are not part of the distribution (type(), not
        # isinstance: a bool is an int); nor is NaN (x == x).
        numbers = [float(x) for x in values if type(x) in (int, float) and x == x]
        if self.reference is None:
            room = self.reference_size - len(self.values)
            self.values.extend(numbers[:room])
            numbers = numbers[room:]
            if len(self.values) >= self.reference_size:
                self.reference = np.sort(np.asarray(self.values))
                inner = np.quantile(self.reference, np.linspace(0, 1, self.bins + 1)[1:-1])
                self.edges = np.unique(inner)
                self.expected = np.bincount(
                    np.searchsorted(self.edges, self.reference, side="right"),
                    minlength=self.edges.size + 1)
                self.values = []
        self.current.extend(numbers)

    def drift(self, feature: str) -> FeatureDrift | None:
        if self.reference is None or not self.current:
            return None
        current = np.fromiter(self.current, dtype=np.float64, count=len(self.current))
        actual = np.bincount(np.searchsorted(self.edges, current, side="right"),
                             minlength=self.edges.size + 1)
        d, p = ks_2samp(self.reference, current)
        return FeatureDrift(feature, "numeric", psi(self.expected, actual), d, p,
                            int(self.reference.size), int(current.size))


class FeatureDriftMonitor:
    """Per-feature drift of a sliding window against a frozen reference window.

    The reference is the first ``reference_size`` values of each feature; after that, the last
    ``window`` values form the current window. Memory is bounded by those sizes and, for
    categorical features, ``max_categories`` (the reference's most frequent; later and rarer
    values are pooled as ``other``).

    Example:
        >>> m = FeatureDriftMonitor({"device": "categorical", "price": "numeric"},
        ...                         reference_size=100, window=100)
        >>> m.update([{"device": "tv", "price": float(i)} for i in range(100)])
        >>> m.update([{"device": "mobile", "price": float(i) + 50} for i in range(100)])
        >>> {f: (round(d.psi, 2), d.ks) for f, d in m.drift().items()}
        {'device': (18.42, None), 'price': (4.35, 0.5)}
    """

    def __init__(
        self,
        features: Mapping[str, FeatureKind],
        *,
        reference_size: int = 5_000,
        window: int = 5_000,
        bins: int = 10,
        max_categories: int = 20,
    ) -> None:
        if min(reference_size, window, bins, max_categories) < 1:
            raise ValueError("reference_size, window, bins and max_categories must be >= 1")
        self._monitors: dict[str, _Categorical | _Numeric] = {}
        for name, kind in features.items():
            if kind == "categorical":
                self._monitors[name] = _Categorical(reference_size, window, max_categories)
            elif kind == "numeric":
                self._monitors[name] = _Numeric(reference_size, window, bins)
            else:
                raise ValueError(f"feature {name!r}: kind must be categorical or numeric, "
                                 f"got {kind!r}")

    @property
    def features(self) -> tuple[str, ...]:
        """The monitored features (the only values a ``feature`` metrics label takes)."""
        return tuple(self._monitors)

    def update(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add one batch of feature dicts (a missing feature counts as ``missing``)."""
        for name, monitor in self._monitors.items():
            monitor.update([row.get(name) for row in rows])

    def drift(self) -> dict[str, FeatureDrift]:
        """Each feature's figures, once its reference is complete and its window non-empty."""
        out = {name: m.drift(name) for name, m in self._monitors.items()}
        return {name: d for name, d in out.items() if d is not None}


class ScoreDriftMonitor:
    """Drift of the served scores' distribution (PSI on reference deciles, and KS).

    Example:
        >>> m = ScoreDriftMonitor(reference_size=200, window=200)
        >>> m.update(np.linspace(0.01, 0.1, 200)); m.update(np.linspace(0.01, 0.1, 200))
        >>> m.drift().psi, m.drift().ks
        (0.0, 0.0)
    """

    def __init__(self, *, reference_size: int = 5_000, window: int = 5_000,
                 bins: int = 10) -> None:
        self._numeric = _Numeric(reference_size, window, bins)

    def update(self, scores: np.ndarray) -> None:
        """Add one batch of predicted click probabilities."""
        self._numeric.update(np.asarray(scores, dtype=np.float64).reshape(-1).tolist())

    def drift(self) -> FeatureDrift | None:
        """The figures (feature ``score``), once the reference is complete."""
        return self._numeric.drift("score")


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
