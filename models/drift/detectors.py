"""Concept drift on the label stream: ``LossDriftDetector`` and its ``DriftAlarm``.

River's ADWIN or Page-Hinkley runs on the champion's per-example log loss; an *increase* of
the mean loss is an alarm (a model that got better, e.g. after a promotion, is not drift). A
second ADWIN watches the champion's calibration, the residual label − score: a drift that
removes clicks can *lower* the loss of a model that now over-predicts, but it moves the
residual mean away from 0. The decision loop (``models.training.loop``) reacts to its alarms.

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
CALIBRATION_SETTLE: Final = 256  # residuals after a calibration change that judge it
DETECTORS: Final[tuple[DetectorName, ...]] = ("adwin", "page_hinkley")


@dataclass(frozen=True, slots=True)
class DriftAlarm:
    """A detector's alarm on one batch.

    Attributes:
        detector: ``adwin`` or ``page_hinkley`` (a bounded metrics label).
        signal: ``loss`` (the mean loss rose) or ``calibration`` (the mean of label − score
            moved away from 0; always ADWIN's).
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
    signal: Literal["loss", "calibration"] = "loss"

    @property
    def reason(self) -> str:
        """One human sentence."""
        if self.signal == "calibration":
            return (f"{self.detector}: champion calibration moved, mean (label - score) from "
                    f"{self.before:+.4f} to {self.after:+.4f} (alarm after {self.seen} "
                    "examples)")
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
        calibration: Also run ADWIN on the residuals ``update`` is given.
    """

    def __init__(
        self,
        detector: DetectorName = "adwin",
        *,
        adwin_delta: float = 0.002,
        ph_delta: float = 0.005,
        ph_threshold: float = 50.0,
        min_examples: int = 30,
        calibration: bool = True,
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
        self.calibration = calibration
        self.alarms = 0
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new champion: a new loss stream)."""
        p = self.params
        if self.name == "adwin":
            detector: Any = river_drift.ADWIN(delta=p["adwin_delta"],
                                              grace_period=p["min_examples"])
        else:
            detector = river_drift.PageHinkley(
                min_instances=p["min_examples"], delta=p["ph_delta"],
                threshold=p["ph_threshold"], mode="up",
            )
        self._loss = _Watched(detector, adwin=self.name == "adwin")
        self._residual = _Watched(river_drift.ADWIN(delta=p["adwin_delta"],
                                                    grace_period=p["min_examples"]),
                                  adwin=True) if self.calibration else None
        # (mean before, sum and count of residuals since, seen at) of a change being judged
        self._settling: tuple[float, float, int, int] | None = None

    def _calibration(self, values: np.ndarray) -> DriftAlarm | None:
        """A calibration change is an alarm when it leaves the champion worse calibrated,
        judged on the ``CALIBRATION_SETTLE`` residuals after ADWIN saw it: ADWIN notices a
        change part way through it (a move from +0.02 to -0.11 is first seen at about 0), so
        its own estimate at that moment cannot tell "worse" from "back towards 0"."""
        r = self._residual
        if r is None:
            return None
        change = r.feed(values)
        alarm: DriftAlarm | None = None
        if self._settling is not None:  # an earlier change: these values are its new regime
            before, total, n, seen_at = self._settling
            self._settling = (before, total + float(values.sum()), n + values.size, seen_at)
        if change is not None:
            tail = values[change[0]:]
            self._settling = (change[1], float(tail.sum()), tail.size, r.seen_at)
        if self._settling is not None and self._settling[2] >= CALIBRATION_SETTLE:
            before, total, n, seen_at = self._settling
            self._settling = None
            after = total / n
            if abs(after) > abs(before):
                alarm = DriftAlarm("adwin", 0, seen_at, before, after, "calibration")
        return alarm

    @property
    def seen(self) -> int:
        """Losses seen since the last reset."""
        return self._loss.seen

    def update(self, losses: np.ndarray, residuals: np.ndarray | None = None,
               ) -> DriftAlarm | None:
        """Feed one batch of per-example losses (and label − score residuals, aligned);
        the first alarm in it, if any: a rise of the loss, else a calibration move.

        The detectors go on reading the rest of the batch after an alarm (ADWIN has then
        dropped the old regime, Page-Hinkley restarts), so one batch gives at most one alarm.
        """
        alarm: DriftAlarm | None = None
        change = self._loss.feed(np.asarray(losses, dtype=np.float64).reshape(-1))
        if change is not None and change[2] > change[1]:
            alarm = DriftAlarm(self.name, change[0], self._loss.seen_at, change[1], change[2])
        if residuals is not None and self._residual is not None:
            calibration = self._calibration(np.asarray(residuals, dtype=np.float64).reshape(-1))
            alarm = alarm or calibration
        if alarm is not None:
            self.alarms += 1
        return alarm


class _Watched:
    """A river detector and the mean of what it saw since its last change (the "before")."""

    def __init__(self, detector: Any, *, adwin: bool) -> None:
        self.detector, self.adwin = detector, adwin
        self._sum, self._n = 0.0, 0  # since the last change, offset by this batch's prefix
        self.seen = 0
        self.seen_at = 0

    def feed(self, values: np.ndarray) -> tuple[int, float, float] | None:
        """Update with each value; the first change: (index, mean before, mean after)."""
        first: tuple[int, float, float] | None = None
        prefix = np.cumsum(values)
        update = self.detector.update
        for i, x in enumerate(values.tolist()):
            update(x)
            if not self.detector.drift_detected:
                continue
            done = float(prefix[i - 1]) if i else 0.0
            n_before = self._n + i
            before = (self._sum + done) / n_before if n_before > 0 else 0.0
            if self.adwin:  # it kept the recent window: the new regime's mean so far
                # At the alarm the kept window still holds old values (ADWIN cuts where the
                # change is significant, not where it began), so its mean lags: a calibration
                # moving from +0.02 to -0.11 read as "back towards 0" and never alarmed. The
                # batch's values from the alarm on, when there are enough, are the new regime.
                kept = float(self.detector.estimation)
                tail = values[i:]
                after = float(tail.mean()) if tail.size >= 32 else kept
                width = int(self.detector.width)
                self._sum, self._n = kept * width - float(prefix[i]), width - (i + 1)
            else:  # Page-Hinkley restarts at the next value
                after = float(values[i:].mean())
                self._sum, self._n = -float(prefix[i]), -(i + 1)
            if first is None:
                first = (i, before, after)
                self.seen_at = self.seen + i + 1
        if values.size:
            self._sum += float(prefix[-1])
            self._n += int(values.size)
            self.seen += int(values.size)
        return first
