"""One feature's reference and current window, compared like with like across rankings.

The pure arithmetic behind ``models.drift.monitors`` (whose docstring says why): the bins
(``Categories``, ``Quantiles``), how a reference is carried from one ranking to the next
(``carry``), and ``ExposureWindows``, which keeps a reference, a window per ranking and the
links between them, bounded in memory.

Example:
    >>> w = ExposureWindows("categorical", reference_size=100, window=100, bridge=100)
    >>> w.update(["a"] * 50 + ["b"] * 50, ["u"] * 100)  # the reference, shown by ranking u
    >>> w.update(["a"] * 20 + ["b"] * 80, ["v"] * 100)  # ranking v shows b more: same world
    >>> d = w.drift("item"); round(d.psi, 3), d.links     # carried over: no drift
    (0.0, 1)
    >>> w.update(["a"] * 50 + ["b"] * 50, ["v"] * 100)  # v shows a more: the world moved
    >>> round(w.drift("item").psi, 2)
    0.42
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Final, Literal

import numpy as np

from models.drift.slices import OTHER
from models.drift.stats import ks_2samp, psi

FeatureKind = Literal["categorical", "numeric"]
BRIDGE: Final = 2_048  # examples of each ranking compared when the ranking changes
TOLERANCE: Final = 0.05  # PSI between two rankings' examples above which they show otherwise
MIN_COUNT: Final = 20  # values a bin needs on both sides for its ratio to be trusted
PAIRS: Final = 50  # rows sharing a request with another that make a feature request-level
_PENDING: Final = 3  # newer rankings waiting for their first examples (promotions in a burst)
_RETIRED: Final = 64  # rankings left behind whose late examples are dropped


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
        links: Changes of ranking the reference was carried across (or, for scores,
            restarted at).
    """

    feature: str
    kind: FeatureKind
    psi: float
    ks: float | None
    ks_pvalue: float | None
    n_reference: int
    n_current: int
    links: int = 0


class Categories:
    """The reference's ``top`` most frequent values, each its own bin; the rest share one."""

    def __init__(self, counts: Mapping[str, int], top: int) -> None:
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept = [k for k, _ in ranked if k != OTHER][:top]
        self.codes = {k: i for i, k in enumerate(kept)}
        self.size = len(kept) + 1

    def histogram(self, values: Sequence[Any]) -> np.ndarray:
        """Counts per bin."""
        other = self.size - 1
        codes = [self.codes.get(v, other) for v in values]
        return np.bincount(np.asarray(codes, dtype=np.int64), minlength=self.size)


class Quantiles:
    """Bins at the reference's inner quantiles, plus one below its minimum and one above its
    maximum: a reference of one value (an hour, a constant score) still sees a move."""

    def __init__(self, sample: np.ndarray, bins: int) -> None:
        inner = np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1])
        top = np.nextafter(sample.max(), np.inf)
        self.edges = np.unique(np.concatenate([[sample.min()], inner, [top]]))
        self.size = self.edges.size + 1

    def histogram(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Counts per bin."""
        x = np.asarray(values, dtype=np.float64)
        return np.bincount(np.searchsorted(self.edges, x, side="right"), minlength=self.size)


class ExposureWindows:
    """One feature's reference and current window, compared like with like across rankings.

    Args:
        kind: ``categorical`` (values are strings) or ``numeric`` (floats).
        reference_size: Values of one ranking that make the reference.
        window: Values of the ranking serving in the current window.
        bins: Numeric: quantile bins of the reference.
        max_categories: Categorical: the reference's values with a bin of their own.
        bridge: Values of each ranking compared when the ranking changes (at most
            ``reference_size`` and ``window``); also the fewest the window is reported on.
        tolerance: PSI between two rankings' values above which the ranking changed what is
            shown, and the reference is carried over.
        restart: Restart the reference at every change of ranking instead (numeric only): the
            new ranking's first ``bridge`` values are the reference, the window follows them.
    """

    def __init__(self, kind: FeatureKind, *, reference_size: int = 5_000, window: int = 5_000,
                 bins: int = 10, max_categories: int = 20, bridge: int = BRIDGE,
                 tolerance: float = TOLERANCE, restart: bool = False) -> None:
        self.kind, self.bins, self.max_categories = kind, bins, max_categories
        self.reference_size, self.window = reference_size, window
        self.bridge = max(1, min(bridge, reference_size, window))
        self.tolerance, self.restart = tolerance, restart
        self.sample: list[Any] = []  # numeric: the reference's values while it fills
        self.counts: dict[str, int] = {}  # categorical: its counts (bounded)
        self.n_reference = 0
        self.sample_key: Hashable = None
        self.binning: Categories | Quantiles | None = None
        self.expected = np.zeros(0)  # reference shares, as the anchor ranking would show them
        self.reference = np.zeros(0)  # numeric: the sorted reference sample (for KS)
        self.anchor: Hashable = None  # the ranking the current window and `expected` are of
        self.windows: dict[Hashable, deque[Any]] = {}  # per ranking, in order of appearance
        self.first: dict[Hashable, list[Any]] = {}  # newer rankings' first `bridge` values
        self.retired: deque[Hashable] = deque(maxlen=_RETIRED)
        self.start: dict[Hashable, int | None] = {}  # when each ranking kept began serving
        self.links = 0
        self.pairs, self.varies = 0, False  # rows seen sharing a request; a value differed

    @property
    def per_request(self) -> bool:
        """Whether the feature belongs to the request (device, hour), not to the item shown:
        never seen to differ within a request over at least ``PAIRS`` rows that share one.
        No ranking moves such a feature, so a change of ranking never carries it over."""
        return self.pairs >= PAIRS and not self.varies

    def update(self, values: Sequence[Any], keys: Sequence[Hashable],
               requests: Sequence[Hashable] | None = None,
               times: Sequence[int] | None = None) -> None:
        """Add values in arrival order.

        Args:
            values: The feature's values (strings, or floats for a numeric feature).
            keys: Per value, the key of the ranking that showed it.
            requests: Per value, the id of its request (tells request-level features).
            times: Per value, when it was served: a ranking that serves again after another
                one (a rollback) is then told from the late values of one left behind.
        """
        if requests is not None and not self.varies:
            self._watch(values, requests)
        stamps: Sequence[int | None] = [None] * len(values) if times is None else times
        for key, run in groupby(zip(keys, values, stamps, strict=True), key=lambda r: r[0]):
            rows = list(run)
            self._run(key, [v for _, v, _ in rows], [t for _, _, t in rows])

    def _watch(self, values: Sequence[Any], requests: Sequence[Hashable]) -> None:
        seen: dict[Hashable, Any] = {}
        for value, request in zip(values, requests, strict=True):
            if request not in seen:
                seen[request] = value
            elif seen[request] != value:
                self.varies = True
                return
            else:
                self.pairs += 1

    def _run(self, key: Hashable, values: list[Any], stamps: list[int | None]) -> None:
        current = self.anchor if self.binning is not None else self.sample_key
        if current is not None and key != current and key not in self.windows:
            values = self._newer(key, current, values, stamps)
            if not values:
                return
        times = [t for t in stamps if t is not None]
        if times:
            begun = self.start.get(key)
            self.start[key] = min(times) if begun is None else min(begun, *times)
        else:
            self.start.setdefault(key, None)
        if self.binning is None:
            values = self._fill(key, values)
            if self.binning is None:
                return
        window = self.windows.get(key)
        if window is None:  # a newer ranking
            window = self.windows[key] = deque(maxlen=self.window)
            self.first[key] = []
            pending = [k for k in self.windows if k != self.anchor]
            for old in pending[:-_PENDING]:
                self._retire(old)
        first = self.first.get(key)
        if first is not None:  # its first values decide how the reference carries over
            head, values = values[: self.bridge - len(first)], values[self.bridge - len(first):]
            window.extend(head)
            first.extend(head)
            if len(first) >= self.bridge:
                self._link(key)
        window.extend(values)

    def _newer(self, key: Hashable, current: Hashable, values: list[Any],
               stamps: list[int | None]) -> list[Any]:
        """The values of ``key`` (not the ranking serving, nor one waiting) that a newer
        ranking showed: served after ``current`` began if times are known, else all of
        them unless ``key`` was already left behind (its values are then late)."""
        begun = self.start.get(current)
        if begun is None or stamps[0] is None:
            return [] if key in self.retired else values
        newer = [v for v, t in zip(values, stamps, strict=True) if t is not None and t > begun]
        if newer and key in self.retired:
            self.retired.remove(key)  # it serves again
        return newer

    def _fill(self, key: Hashable, values: list[Any]) -> list[Any]:
        """Take the reference from one ranking's first values; returns the values left over."""
        if self.sample_key is None:
            self.sample_key = key
        if key != self.sample_key:
            if self.n_reference < self.bridge:  # too few to stand for the old ranking
                self.retired.append(self.sample_key)
                self.start.pop(self.sample_key, None)
                self.sample, self.counts, self.n_reference = [], {}, 0
                self.sample_key = key
            else:  # a shorter reference; the newer ranking is bridged to it
                self._freeze()
                return values
        room = self.reference_size - self.n_reference
        taken, rest = values[:room], values[room:]
        if self.kind == "numeric":
            self.sample.extend(taken)
        else:
            for value in taken:
                if value in self.counts or len(self.counts) < 4 * self.max_categories:
                    self.counts[value] = self.counts.get(value, 0) + 1
                else:
                    self.counts[OTHER] = self.counts.get(OTHER, 0) + 1
        self.n_reference += len(taken)
        if self.n_reference >= self.reference_size:
            self._freeze()
        return rest

    def _freeze(self) -> None:
        if self.kind == "numeric":
            self._rebin(self.sample)
        else:
            self.binning = Categories(self.counts, self.max_categories)
            hist = np.zeros(self.binning.size)
            for value, count in self.counts.items():
                hist[self.binning.codes.get(value, self.binning.size - 1)] += count
            self.expected = hist / hist.sum()
        self.sample, self.counts = [], {}
        self.anchor = self.sample_key
        self.windows[self.anchor] = deque(maxlen=self.window)

    def _rebin(self, sample: Sequence[Any]) -> None:
        """A numeric reference (and its bins) from ``sample``."""
        self.reference = np.sort(np.asarray(sample, dtype=np.float64))
        self.binning = Quantiles(self.reference, self.bins)
        hist = self.binning.histogram(self.reference)
        self.expected = hist / hist.sum()
        self.n_reference = int(self.reference.size)

    def _link(self, key: Hashable) -> None:
        """``key``'s first values are in: the current window moves to it, compared with the
        anchor's last values to carry the reference over (or restart it) if they differ."""
        binning = self.binning
        if binning is None:  # only a complete reference has rankings waiting
            return
        first = self.first.pop(key)
        if self.restart:
            self.links += 1
            self._rebin(first)
            self.windows[key].clear()  # the window after it, not the values it is made of
        elif not self.per_request:
            last = list(self.windows[self.anchor])[-self.bridge:]
            h_first = binning.histogram(first).astype(np.float64)
            # Right after the reference the anchor may have shown little else: the reference
            # is then the best picture of what it shows.
            h_last = (binning.histogram(last).astype(np.float64)
                      if 4 * len(last) >= self.bridge else self.expected * self.n_reference)
            if psi(h_last, h_first) > self.tolerance:
                self.links += 1
                self.expected = carry(self.expected, h_last, h_first)
        for old in list(self.windows):
            if old == key:
                break
            self._retire(old)
        self.anchor = key

    def _retire(self, key: Hashable) -> None:
        self.windows.pop(key, None)
        self.first.pop(key, None)
        self.start.pop(key, None)
        self.retired.append(key)

    def drift(self, feature: str) -> FeatureDrift | None:
        """The figures, once the reference is complete and the window of the ranking serving
        holds at least ``bridge`` values."""
        binning = self.binning
        if binning is None:
            return None
        current = list(self.windows[self.anchor])
        if len(current) < self.bridge:
            return None
        ks = pvalue = None
        if isinstance(binning, Quantiles):
            # The reference's values, weighted as the carried-over shares of their bins.
            codes = np.searchsorted(binning.edges, self.reference, side="right")
            share = np.bincount(codes, minlength=binning.size) / self.reference.size
            weights = self.expected / np.where(share > 0, share, 1.0)
            ks, pvalue = ks_2samp(self.reference, np.asarray(current, dtype=np.float64),
                                  weights=weights[codes])
        return FeatureDrift(feature, self.kind, psi(self.expected, binning.histogram(current)),
                            ks, pvalue, self.n_reference, len(current), self.links)


def carry(expected: np.ndarray, h_last: np.ndarray, h_first: np.ndarray) -> np.ndarray:
    """The reference shares ``expected`` (as ranking *u* showed them) as ranking *v* would
    show them, from *u*'s last histogram and *v*'s first one over the same world.

    A bin *u* showed at least ``MIN_COUNT`` times is scaled by *v*'s share over *u*'s. Of a
    bin *u* hardly showed, the ratio is unknown (a ranking that never showed a category says
    nothing of how often the world offers it): it takes *v*'s share, scaled as the known bins
    are on average, i.e. it is assumed not to have drifted.

    Example:
        >>> ref = np.array([0.5, 0.5, 0.0])  # u showed categories a and b, never c
        >>> out = carry(ref, np.array([500, 500, 0]), np.array([100, 300, 600]))
        >>> out.round(2).tolist()
        [0.1, 0.3, 0.6]
    """
    f_last, f_first = h_last / h_last.sum(), h_first / h_first.sum()
    known = h_last >= MIN_COUNT
    out = np.where(known, expected * f_first / np.where(known, f_last, 1.0), 0.0)
    shown = float(f_first[known].sum())
    scale = float(out.sum()) / shown if shown > 0 else 1.0
    out = np.where(known, out, f_first * scale)
    total = float(out.sum())
    carried: np.ndarray = out / total if total > 0 else f_first
    return carried
