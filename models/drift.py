"""Drift monitoring on what the trainer sees: labels (concept), features, scores, slices.

All pure and bounded in memory; the trainer feeds them each micro-batch and exports what they
say (``services.trainer_metrics``). Four kinds of monitor:

* ``LossDriftDetector``: concept drift on the label stream. River's ADWIN or Page-Hinkley runs
  on the champion's per-example log loss; an *increase* of the mean loss is an alarm (a model
  that got better, e.g. after a promotion, is not drift).
* ``FeatureDriftMonitor``: per-feature drift of the current window against a reference window
  (the first examples seen): PSI for categorical features (top categories of the reference,
  the rest pooled as "other") and for numeric ones (binned at the reference's quantiles), plus
  the two-sample Kolmogorov–Smirnov statistic for numeric ones.
* ``ScoreDriftMonitor``: the same numeric PSI/KS on the champion's predicted scores.
* ``SliceMonitor``: rolling log loss and CTR per value of one low-cardinality feature
  (e.g. ``device``), at most ``max_slices`` values (later ones pooled as "other").

Example:
    >>> import numpy as np
    >>> detector = LossDriftDetector("adwin")
    >>> rng = np.random.default_rng(0)
    >>> detector.update(rng.exponential(0.2, 2_000)) is None  # a steady loss: no alarm
    True
    >>> alarm = detector.update(rng.exponential(0.6, 500))     # the loss triples
    >>> alarm.detector, alarm.before < alarm.after
    ('adwin', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from river import drift as river_drift

DetectorName = Literal["adwin", "page_hinkley"]
DETECTORS: Final[tuple[DetectorName, ...]] = ("adwin", "page_hinkley")


@dataclass(frozen=True, slots=True)
class DriftAlarm:
    """A detector's alarm on one batch.

    Attributes:
        detector: ``adwin`` or ``page_hinkley`` (a bounded metrics label).
        at: Index in the batch of the value that raised it.
        seen: Values the detector had seen since its last reset when it raised it.
        before: Mean loss the detector estimated just before the change.
        after: Mean loss after it (ADWIN: of the shrunk window; Page-Hinkley: of the batch
            from the alarm on).
    """

    detector: DetectorName
    at: int
    seen: int
    before: float
    after: float

    @property
    def reason(self) -> str:
        """One human sentence."""
        return (f"{self.detector}: champion log loss rose from {self.before:.4f} to "
                f"{self.after:.4f} (alarm after {self.seen} examples)")


class LossDriftDetector:
    """ADWIN or Page-Hinkley on per-example losses; only increases of the loss are alarms.

    Args:
        detector: ``adwin`` (adaptive window, no parameter to tune but ``delta``) or
            ``page_hinkley`` (cumulative deviation, run one-sided: ``mode="up"``).
        adwin_delta: ADWIN's confidence (smaller: fewer false alarms, slower detection).
        ph_delta: Page-Hinkley's tolerated deviation per value.
        ph_threshold: Page-Hinkley's alarm threshold (lambda), in loss units summed.
        min_examples: Values before any alarm (ADWIN's grace period, PH's min_instances).
    """

    def __init__(
        self,
        detector: DetectorName = "adwin",
        *,
        adwin_delta: float = 0.002,
        ph_delta: float = 0.005,
        ph_threshold: float = 50.0,
        min_examples: int = 30,
    ) -> None:
        if detector not in DETECTORS:
            raise ValueError(f"unknown drift detector {detector!r}; known: {DETECTORS}")
        if not 0.0 < adwin_delta < 1.0 or ph_delta < 0 or ph_threshold <= 0 or min_examples < 1:
            raise ValueError("need 0 < adwin_delta < 1, ph_delta >= 0, ph_threshold > 0 and "
                             "min_examples >= 1")
        self.name: DetectorName = detector
        self.params: dict[str, Any] = {
            "adwin_delta": adwin_delta, "ph_delta": ph_delta, "ph_threshold": ph_threshold,
            "min_examples": min_examples,
        }
        self.alarms = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new champion: a new loss stream)."""
        p = self.params
        if self.name == "adwin":
            self._detector: Any = river_drift.ADWIN(delta=p["adwin_delta"],
                                                    grace_period=p["min_examples"])
        else:
            self._detector = river_drift.PageHinkley(
                min_instances=p["min_examples"], delta=p["ph_delta"],
                threshold=p["ph_threshold"], mode="up",
            )
        self._sum = 0.0
        self.seen = 0

    def update(self, losses: np.ndarray) -> DriftAlarm | None:
        """Feed one batch of per-example losses; the first upward alarm in it, if any.

        The detector goes on reading the rest of the batch after an alarm (ADWIN has then
        dropped the old regime, Page-Hinkley restarts), so one batch gives at most one alarm.
        """
        alarm: DriftAlarm | None = None
        values = np.asarray(losses, dtype=np.float64).reshape(-1)
        for i, x in enumerate(values.tolist()):
            before = self._estimate()
            self._detector.update(x)
            self._sum += x
            self.seen += 1
            if alarm is None and self._detector.drift_detected:
                after = self._after(values, i)
                if after > before:
                    alarm = DriftAlarm(self.name, i, self.seen, before, after)
                if self.name == "page_hinkley":
                    self._sum, self.seen = 0.0, 0  # river resets it at the next value
        if alarm is not None:
            self.alarms += 1
        return alarm

    def _estimate(self) -> float:
        if self.name == "adwin":
            return float(self._detector.estimation)
        return self._sum / self.seen if self.seen else 0.0

    def _after(self, values: np.ndarray, i: int) -> float:
        if self.name == "adwin":
            return float(self._detector.estimation)
        return float(values[i:].mean())
