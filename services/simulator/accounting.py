"""Accounting from the truth: how far the system is from the best possible, with bounded memory.

For every labelled prediction the simulator knows the true click probability ``p``, so three
scorers can be held against the same label: the live system's served score, a frozen copy of
the initial model, and the Bayes-optimal score ``p`` itself (the limit no model beats on
average). Regret is system minus optimal log loss. Log losses use the gate's clipping
(``models.evaluation.metrics``), so figures here and in gate decisions are comparable.

Example:
    >>> acc = Accounting(window=2)
    >>> for label, served in [(1, 0.5), (0, 0.5), (0, 0.5)]:
    ...     acc.update(label, served=served, frozen=0.5, optimal=0.5)
    >>> f = acc.overall()
    >>> f.n, round(f.system, 4), f.regret
    (3, 0.6931, 0.0)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.evaluation.metrics import log_loss
from services.simulator.world import SimulatorError


def expected_log_loss(score: float, true_p: float) -> float:
    """Log loss of ``score`` averaged over the label drawn from ``true_p`` (no label noise):
    never below ``expected_log_loss(true_p, true_p)``.

    Example:
        >>> round(expected_log_loss(0.5, 0.1), 4), round(expected_log_loss(0.1, 0.1), 4)
        (0.6931, 0.3251)
    """
    return true_p * log_loss(1, score) + (1.0 - true_p) * log_loss(0, score)


class RollingMean:
    """Mean of the last ``window`` values (the running sum is re-added every window so
    floating-point drift cannot build up).

    Example:
        >>> m = RollingMean(2)
        >>> [m.update(x) for x in (1.0, 3.0, 5.0)]
        [1.0, 2.0, 4.0]
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise SimulatorError("window must be at least 1")
        self.window = window
        self._values: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self._since_refresh = 0

    def update(self, value: float) -> float:
        if len(self._values) == self.window:
            self._sum -= self._values[0]
        self._values.append(value)
        self._sum += value
        self._since_refresh += 1
        if self._since_refresh >= self.window:
            self._sum, self._since_refresh = math.fsum(self._values), 0
        return self.mean

    @property
    def mean(self) -> float:
        return self._sum / len(self._values) if self._values else math.nan

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True)
class Figures:
    """Mean log losses of the three scorers over ``n`` labels."""

    n: int
    system: float
    frozen: float
    optimal: float

    @property
    def regret(self) -> float:
        """System log loss above the optimal."""
        return self.system - self.optimal

    @property
    def frozen_regret(self) -> float:
        return self.frozen - self.optimal


@dataclass
class Accounting:
    """Rolling (last ``window`` labels) and overall log losses of system, frozen and optimal."""

    window: int = 1_000
    _rolling: tuple[RollingMean, ...] = field(init=False)
    _totals: list[float] = field(init=False)
    _n: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rolling = tuple(RollingMean(self.window) for _ in range(3))
        self._totals = [0.0, 0.0, 0.0]

    def update(self, label: int, served: float, frozen: float, optimal: float) -> None:
        """One labelled prediction: its label and the three scorers' probabilities."""
        for i, score in enumerate((served, frozen, optimal)):
            loss = log_loss(label, score)
            self._rolling[i].update(loss)
            self._totals[i] += loss
        self._n += 1

    def rolling(self) -> Figures:
        s, f, o = (r.mean for r in self._rolling)
        return Figures(len(self._rolling[0]), s, f, o)

    def overall(self) -> Figures:
        if not self._n:
            return Figures(0, math.nan, math.nan, math.nan)
        s, f, o = (t / self._n for t in self._totals)
        return Figures(self._n, s, f, o)


def oracle_top_k(true_p: Sequence[float], k: int) -> list[float]:
    """The true probabilities of the ``k`` best candidates: what an oracle ranking shows.

    Example:
        >>> oracle_top_k([0.1, 0.4, 0.2], 2)
        [0.4, 0.2]
    """
    return sorted(true_p, reverse=True)[:k]


@dataclass(frozen=True)
class CtrFigures:
    """Rolling CTR of the served ranking (observed and expected from the truth), of the
    oracle ranking and of the frozen model's ranking (expected); ``ratio`` = served expected /
    oracle expected."""

    impressions: int
    served: float
    served_expected: float
    oracle_expected: float
    frozen_expected: float = math.nan

    @property
    def ratio(self) -> float:
        return self.served_expected / self.oracle_expected if self.oracle_expected else math.nan


class CtrTracker:
    """CTR of the served ranking vs the oracle ranking over the last ``window`` requests.

    Example:
        >>> t = CtrTracker(window=10)
        >>> t.update(shown_true_p=[0.2, 0.1], clicks=1, oracle_true_p=[0.4, 0.2],
        ...          frozen_true_p=[0.1, 0.1])
        >>> f = t.figures()
        >>> f.served, round(f.served_expected, 4), round(f.oracle_expected, 4), round(f.ratio, 4)
        (0.5, 0.15, 0.3, 0.5)
        >>> round(f.frozen_expected, 4)
        0.1
    """

    def __init__(self, window: int = 1_000) -> None:
        if window < 1:
            raise SimulatorError("window must be at least 1")
        self._requests: deque[tuple[int, int, float, float, float]] = deque(maxlen=window)

    def update(self, shown_true_p: Sequence[float], clicks: int,
               oracle_true_p: Sequence[float],
               frozen_true_p: Sequence[float] | None = None) -> None:
        """One request: true p of what was shown, its clicks, true p of the oracle's top-k and
        of the frozen model's top-k (what the initial champion would have shown)."""
        frozen = math.nan if frozen_true_p is None else math.fsum(frozen_true_p)
        self._requests.append((len(shown_true_p), clicks, math.fsum(shown_true_p),
                               math.fsum(oracle_true_p), frozen))

    def figures(self) -> CtrFigures:
        shown, clicks, expected, oracle, frozen = (np.sum([r[i] for r in self._requests])
                                                   for i in range(5))
        if not shown:
            return CtrFigures(0, math.nan, math.nan, math.nan)
        return CtrFigures(int(shown), float(clicks / shown), float(expected / shown),
                          float(oracle / shown), float(frozen / shown))


class RecoveryTracker:
    """Labels after a drift point until the system is back within ``tolerance`` of the optimal.

    After ``drift()``, both scorers' losses on post-drift labels fill windows of ``window``
    labels; the system has recovered at the first label ``n >= window`` whose window has a
    mean system log loss at most ``(1 + tolerance)`` times the optimal's. Only post-drift
    labels count, so the answer is never below ``window`` (the resolution of the measure).

    Example:
        >>> t = RecoveryTracker(window=2)
        >>> t.drift()
        >>> [t.update(s, 1.0) for s in (2.0, 1.2, 1.04, 1.0)]
        [None, None, None, 4]
    """

    def __init__(self, window: int = 256, tolerance: float = 0.05) -> None:
        if tolerance < 0:
            raise SimulatorError("tolerance must be >= 0")
        self.window, self.tolerance = window, tolerance
        self._system = RollingMean(window)
        self._optimal = RollingMean(window)
        self._n: int | None = None  # labels since the drift; None before any drift
        self.recovered: int | None = None

    def drift(self) -> None:
        """A drift starts now: forget earlier labels and measure again."""
        self._system, self._optimal = RollingMean(self.window), RollingMean(self.window)
        self._n, self.recovered = 0, None

    def update(self, system_loss: float, optimal_loss: float) -> int | None:
        """One label's losses; returns the recovery label count once recovered."""
        if self._n is None or self.recovered is not None:
            return self.recovered
        self._n += 1
        s, o = self._system.update(system_loss), self._optimal.update(optimal_loss)
        if self._n >= self.window and s <= (1.0 + self.tolerance) * o:
            self.recovered = self._n
        return self.recovered


def recovery_labels(system_losses: Sequence[float], optimal_losses: Sequence[float],
                    drift_index: int, window: int = 256, tolerance: float = 0.05) -> int | None:
    """``RecoveryTracker`` over whole sequences of per-label losses (label order), the drift
    at label ``drift_index``; None if the system never recovers.

    Example:
        >>> recovery_labels([1.0, 9.0, 3.0, 1.0, 1.0], [1.0] * 5, drift_index=1, window=2)
        4
    """
    if len(system_losses) != len(optimal_losses):
        raise SimulatorError("system and optimal losses must have the same length")
    tracker = RecoveryTracker(window, tolerance)
    tracker.drift()
    for s, o in zip(system_losses[drift_index:], optimal_losses[drift_index:], strict=True):
        if tracker.update(s, o) is not None:
            return tracker.recovered
    return None


def within_tolerance_share(system_losses: Sequence[float], optimal_losses: Sequence[float],
                           window: int = 256, tolerance: float = 0.05) -> float | None:
    """Share of the full rolling windows (``window`` labels, one ending at every label from the
    ``window``-th on) whose mean system log loss is at most ``(1 + tolerance)`` times the
    optimal's: how often the state ``RecoveryTracker`` calls recovered holds over a stretch of
    labels. None if there are fewer than ``window`` labels.

    Example:
        >>> within_tolerance_share([1.0, 1.0, 3.0, 1.0, 1.0], [1.0] * 5, window=2)
        0.5
        >>> within_tolerance_share([1.0], [1.0], window=2) is None
        True
    """
    if len(system_losses) != len(optimal_losses):
        raise SimulatorError("system and optimal losses must have the same length")
    if tolerance < 0:
        raise SimulatorError("tolerance must be >= 0")
    system, optimal = RollingMean(window), RollingMean(window)
    full = within = 0
    for s, o in zip(system_losses, optimal_losses, strict=True):
        s_mean, o_mean = system.update(s), optimal.update(o)
        if len(system) == window:
            full += 1
            within += s_mean <= (1.0 + tolerance) * o_mean
    return within / full if full else None
