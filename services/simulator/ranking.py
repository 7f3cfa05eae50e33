"""What users were shown, against the truth: the served ranking's CTR over the oracle's.

Log-loss regret says how well a model predicts; it does not say whether users are shown what
they want. For every request the simulator knows the true click probability of every
candidate, so the *expected* CTR of what was shown (the mean true p of the shown items) can be
held against what an oracle ranking would have shown (``oracle_top_k``), without the noise of
the clicks themselves. ``RankingTracker`` keeps, with bounded memory:

- ``share`` per phase: served expected CTR over the oracle's, ``before`` the drift point,
  over the ``early`` first labels (shown items) ``after`` it, and over the last ``tail``
  labels of the run;
- ``recovery_labels``: labels after the drift until the served expected CTR, as a rolling
  mean over ``window`` labels of post-drift traffic, is back to ``recovered`` (90 %) of its
  pre-drift mean after having fallen below it; 0 when it never fell below (a drift that did
  not hurt the ranking, or not yet), None while it has not come back (or when nothing was
  served before the drift).

Example:
    >>> t = RankingTracker(early=4, tail=2, window=2)
    >>> t.update([0.4, 0.2], [0.4, 0.2], after_drift=False)  # the oracle's own choice
    >>> t.update([0.05, 0.05], [0.3, 0.1], after_drift=True)   # the old taste, now wrong
    >>> t.update([0.4, 0.2], [0.4, 0.2], after_drift=True)     # the new taste learnt
    >>> f = t.figures()
    >>> round(f.share_before, 3), round(f.share_after, 3), f.share_tail, f.recovery_labels
    (1.0, 0.7, 1.0, 4)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from services.simulator.accounting import RollingMean
from services.simulator.world import SimulatorError


@dataclass(frozen=True)
class RankingFigures:
    """Served over oracle expected CTR by phase (NaN for an empty phase), and the recovery."""

    share_before: float
    share_after: float
    share_tail: float
    recovery_labels: int | None
    labels_after: int


class RankingTracker:
    """Served vs oracle expected CTR by phase, and the labels until the served CTR recovers.

    Args:
        early: Labels after the drift point that form the ``after`` phase.
        tail: Last labels of the run that form the ``tail`` phase.
        window: Post-drift labels the recovery's rolling mean is taken over.
        recovered: Share of the pre-drift served CTR that counts as recovered.
    """

    def __init__(self, *, early: int = 5_000, tail: int = 5_000, window: int = 1_000,
                 recovered: float = 0.9) -> None:
        if min(early, tail, window) < 1 or not 0.0 < recovered <= 1.0:
            raise SimulatorError("need early, tail and window >= 1 and 0 < recovered <= 1")
        self.early, self.window, self.recovered = early, window, recovered
        self._before = [0.0, 0.0, 0]  # served sum, oracle sum, labels
        self._after = [0.0, 0.0, 0]
        self._tail: deque[tuple[float, float]] = deque(maxlen=tail)
        self._rolling = RollingMean(window)
        self._labels_after = 0
        self._fell = False
        self._recovery: int | None = None

    def update(self, shown_true_p: Sequence[float], oracle_true_p: Sequence[float], *,
               after_drift: bool) -> None:
        """One request: the true p of what was shown and of the oracle's top-k."""
        for served, oracle in zip(shown_true_p, oracle_true_p, strict=True):
            self._tail.append((served, oracle))
            if not after_drift:
                _add(self._before, served, oracle)
                continue
            self._labels_after += 1
            if self._labels_after <= self.early:
                _add(self._after, served, oracle)
            mean = self._rolling.update(served)
            if self._recovery is None and len(self._rolling) == self.window:
                pre = self._before[0] / self._before[2] if self._before[2] else math.nan
                if mean < self.recovered * pre:
                    self._fell = True
                elif self._fell:
                    self._recovery = self._labels_after

    def figures(self) -> RankingFigures:
        served = math.fsum(s for s, _ in self._tail)
        oracle = math.fsum(o for _, o in self._tail)
        recovery = self._recovery
        if recovery is None and not self._fell and self._before[2] \
                and len(self._rolling) == self.window:
            recovery = 0  # never fell below the threshold: nothing to recover from
        return RankingFigures(_share(self._before), _share(self._after),
                              served / oracle if oracle else math.nan, recovery,
                              self._labels_after)


def _add(acc: list[float], served: float, oracle: float) -> None:
    acc[0] += served
    acc[1] += oracle
    acc[2] += 1


def _share(acc: list[float]) -> float:
    return acc[0] / acc[1] if acc[1] else math.nan
