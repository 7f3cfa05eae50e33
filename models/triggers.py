"""Retraining triggers: when to train, and when to ask the gate, only when it matters.

Stage 4 of continual learning: instead of fine-tuning on every micro-batch (``StatefulPolicy``)
or on a fixed schedule (``StatelessPolicy``), the challenger learns when a trigger fires.
Triggers observe every batch (the champion's per-example losses, the label count, the
caller's clock) and compose by configuration (``TriggerConfig``, same field names as
``config.settings.TriggerSettings``):

* ``volume``       every ``volume_every_labels`` labels since the last training, and/or once
                   those labels reach ``volume_growth`` (0.1 = +10 %) of all labels trained on
* ``time``         ``time_every_ms`` of the caller's clock since the last training
* ``performance``  the champion's mean log loss over its last ``performance_window`` examples is
                   more than ``performance_tolerance`` (0.1 = 10 %) above its reference (its
                   mean loss on its first ``performance_reference`` examples as champion),
                   significantly so (one-sided z-test at ``performance_alpha``)
* ``drift``        an alarm of ADWIN or Page-Hinkley (``models.drift.monitors``) on the champion:
                   its per-example loss rose, or its calibration (label − score) moved

Each firing is a ``Firing(kind, reason)``.

The policy that trains on firings is ``models.training.triggered.TriggeredPolicy``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from statistics import NormalDist
from typing import Any, Final, Literal, Protocol

import numpy as np

from models.drift import DetectorName, LossDriftDetector

Kind = Literal["volume", "time", "performance", "drift"]
KINDS: Final[tuple[Kind, ...]] = ("volume", "time", "performance", "drift")
CHAMPION_FREE: Final[tuple[Kind, ...]] = ("volume", "time")  # the others judge the champion


@dataclass(frozen=True, slots=True)
class Firing:
    """One trigger's firing: its kind (a bounded metrics label) and a human reason; a drift
    firing also names the detector that raised it (``adwin`` or ``page_hinkley``)."""

    kind: Kind
    reason: str
    detector: str = ""


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """Which triggers run and their thresholds (0 or ``"none"`` switches one off).

    Attributes:
        volume_every_labels: Fire every this many labels since the last training.
        volume_growth: Fire when the labels since the last training reach this fraction of
            all labels trained on so far (0.1 = +10 % labelled data)...
        volume_min_labels: ...and at least this many (the growth trigger's floor).
        time_every_ms: Fire when this much of the caller's clock passed since the last
            training (or since the first batch).
        performance_tolerance: Fire when the rolling champion log loss exceeds its reference
            by more than this fraction.
        performance_window: Examples in the rolling mean (a full window is needed).
        performance_reference: The champion's first examples that make its reference.
        performance_alpha: Significance level of the rise (one-sided z-test).
        drift_detector: ``adwin``, ``page_hinkley`` or ``none``.
        adwin_delta: ADWIN's confidence parameter.
        ph_delta: Page-Hinkley's tolerated deviation per example.
        ph_threshold: Page-Hinkley's alarm threshold.
        drift_min_examples: Examples a detector sees before it may alarm.
    """

    volume_every_labels: int = 10_000
    volume_growth: float = 0.0
    volume_min_labels: int = 1_000
    time_every_ms: int = 0
    performance_tolerance: float = 0.10
    performance_window: int = 1_024
    performance_reference: int = 2_048
    performance_alpha: float = 0.01
    drift_detector: DetectorName | Literal["none"] = "adwin"
    adwin_delta: float = 0.002
    ph_delta: float = 0.005
    ph_threshold: float = 50.0
    drift_min_examples: int = 30

    def __post_init__(self) -> None:
        counts = (self.volume_every_labels, self.volume_min_labels, self.time_every_ms)
        if min(counts) < 0 or self.volume_growth < 0 or self.performance_tolerance < 0:
            raise ValueError("trigger thresholds must be >= 0")
        if min(self.performance_window, self.performance_reference) < 2:
            raise ValueError("performance_window and performance_reference must be >= 2")
        if not 0.0 < self.performance_alpha < 1.0:
            raise ValueError("performance_alpha must be in (0, 1)")


class Trigger(Protocol):
    """One condition on the stream (the state it keeps is its own)."""

    kind: Kind

    def observe(self, now_ms: int, champion_losses: np.ndarray,
                residuals: np.ndarray | None = None) -> Firing | None:
        """Look at one scored batch (losses and label − score residuals of the champion);
        a firing if the condition holds now."""
        ...

    def trained(self, now_ms: int, total_trained: int) -> None:
        """The challenger just learnt the buffer (``total_trained`` labels so far)."""
        ...

    def new_champion(self) -> None:
        """Another model is champion now."""
        ...

    def state(self) -> dict[str, Any]:
        """What a restart resumes (JSON-ready)."""
        ...

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``state``."""
        ...


class VolumeTrigger:
    """Every N labels since the last training, and/or +x % labelled data."""

    kind: Kind = "volume"

    def __init__(self, every_labels: int = 0, growth: float = 0.0, min_labels: int = 1) -> None:
        self.every_labels, self.growth, self.min_labels = every_labels, growth, max(1, min_labels)
        self.since = 0
        self.total_trained = 0
        self.latched = False  # fired, not trained since: firing again would count it twice

    def observe(self, now_ms: int, champion_losses: np.ndarray,
                residuals: np.ndarray | None = None) -> Firing | None:
        self.since += int(champion_losses.size)
        firing = self._check()
        self.latched = self.latched or firing is not None
        return firing

    def _check(self) -> Firing | None:
        if self.latched:
            return None
        if self.every_labels and self.since >= self.every_labels:
            return Firing("volume", f"volume: {self.since} labels since the last training "
                                    f"(every {self.every_labels})")
        needed = max(self.min_labels, int(np.ceil(self.growth * self.total_trained)))
        if self.growth and self.since >= needed:
            return Firing("volume", f"volume: {self.since} new labels, +{self.growth:.0%} of "
                                    f"the {self.total_trained} trained on (at least "
                                    f"{self.min_labels})")
        return None

    def trained(self, now_ms: int, total_trained: int) -> None:
        self.since, self.total_trained, self.latched = 0, total_trained, False

    def new_champion(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"since": self.since, "total_trained": self.total_trained,
                "latched": self.latched}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.since, self.total_trained = int(state["since"]), int(state["total_trained"])
        self.latched = bool(state["latched"])


class TimeTrigger:
    """Every T ms of the caller's clock since the last training (or the first batch)."""

    kind: Kind = "time"

    def __init__(self, every_ms: int) -> None:
        self.every_ms = every_ms
        self.last_ms: int | None = None
        self.latched = False

    def observe(self, now_ms: int, champion_losses: np.ndarray,
                residuals: np.ndarray | None = None) -> Firing | None:
        if self.last_ms is None:
            self.last_ms = now_ms  # the clock starts with the stream
        elapsed = now_ms - self.last_ms
        if elapsed >= self.every_ms and not self.latched:
            self.latched = True
            return Firing("time", f"time: {elapsed} ms since the last training "
                                  f"(every {self.every_ms} ms)")
        return None

    def trained(self, now_ms: int, total_trained: int) -> None:
        self.last_ms, self.latched = now_ms, False

    def new_champion(self) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"last_ms": self.last_ms, "latched": self.latched}

    def load_state(self, state: Mapping[str, Any]) -> None:
        last = state["last_ms"]
        self.last_ms, self.latched = None if last is None else int(last), bool(state["latched"])


class PerformanceTrigger:
    """The champion's rolling log loss worse than its own reference by more than x %.

    A log loss is noisy (a click the model thought unlikely costs several nats), so the rise
    must also be significant: a one-sided z-test of the rolling mean against the reference
    mean at ``alpha``. Without it a 10 % tolerance on 1,024 examples fires on noise alone.
    """

    kind: Kind = "performance"

    def __init__(self, tolerance: float, window: int = 1_024, reference: int = 2_048,
                 alpha: float = 0.01) -> None:
        self.tolerance, self.reference_size = tolerance, reference
        self.z_crit = NormalDist().inv_cdf(1.0 - alpha)
        self.rolling: deque[float] = deque(maxlen=window)
        self._ref: list[float] = []

    @property
    def reference(self) -> float | None:
        """The champion's mean loss on its first examples (None until there are enough)."""
        return float(np.mean(self._ref)) if len(self._ref) >= self.reference_size else None

    def observe(self, now_ms: int, champion_losses: np.ndarray,
                residuals: np.ndarray | None = None) -> Firing | None:
        losses = champion_losses.tolist()
        take = max(0, min(len(losses), self.reference_size - len(self._ref)))
        self._ref.extend(losses[:take])
        reference = self.reference
        if reference is None:
            return None
        self.rolling.extend(losses[take:])  # the reference's examples are not judged by it
        if len(self.rolling) < (self.rolling.maxlen or 0):
            return None
        current = np.fromiter(self.rolling, dtype=np.float64, count=len(self.rolling))
        rolling = float(current.mean())
        se = math.sqrt(current.var(ddof=1) / current.size
                       + float(np.var(self._ref, ddof=1)) / len(self._ref))
        z = (rolling - reference) / se if se > 0 else math.inf  # constant losses
        if rolling <= reference * (1.0 + self.tolerance) or z < self.z_crit:
            return None
        self.rolling.clear()  # fire again only on a whole new window
        return Firing("performance", f"performance: champion log loss {rolling:.4f} over the "
                                     f"last {current.size} examples, "
                                     f"{rolling / max(reference, 1e-12) - 1:+.1%} vs its "
                                     f"reference {reference:.4f} (tolerance "
                                     f"{self.tolerance:.0%}, z={z:.1f})")

    def trained(self, now_ms: int, total_trained: int) -> None:
        pass

    def new_champion(self) -> None:
        self.rolling.clear()
        self._ref = []

    def state(self) -> dict[str, Any]:
        return {"reference": list(self._ref), "rolling": list(self.rolling)}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self._ref = [float(x) for x in state["reference"]][: self.reference_size]
        self.rolling.clear()
        self.rolling.extend(float(x) for x in state["rolling"])


class DriftTrigger:
    """An upward alarm of a concept-drift detector on the champion's per-example loss."""

    kind: Kind = "drift"

    def __init__(self, detector: LossDriftDetector) -> None:
        self.detector = detector
        self.last_alarm: Any = None

    def observe(self, now_ms: int, champion_losses: np.ndarray,
                residuals: np.ndarray | None = None) -> Firing | None:
        alarm = self.detector.update(champion_losses, residuals)
        if alarm is None:
            return None
        self.last_alarm = alarm
        return Firing("drift", f"drift: {alarm.reason}", alarm.detector)

    def trained(self, now_ms: int, total_trained: int) -> None:
        pass

    def new_champion(self) -> None:
        self.detector.reset()

    def state(self) -> dict[str, Any]:
        return {}  # river's detector internals are not kept: a restart starts it afresh

    def load_state(self, state: Mapping[str, Any]) -> None:
        pass


class Triggers:
    """Several triggers observed together; the firings of one batch, in configuration order.

    Example:
        >>> t = Triggers([VolumeTrigger(every_labels=3), TimeTrigger(every_ms=100)])
        >>> t.observe(0, np.zeros(2)), [f.kind for f in t.observe(150, np.zeros(2))]
        ((), ['volume', 'time'])
        >>> t.trained(150, 4); t.observe(160, np.zeros(1))
        ()
    """

    def __init__(self, triggers: Sequence[Trigger]) -> None:
        self.triggers = list(triggers)

    @classmethod
    def from_config(cls, cfg: TriggerConfig | Mapping[str, Any] | None = None) -> Triggers:
        """The triggers a ``TriggerConfig`` (or a mapping of its fields) switches on.

        Unknown keys of a mapping are ignored, so ``TriggerSettings.model_dump()`` may carry
        the trainer's own fields too.
        """
        if cfg is None:
            cfg = TriggerConfig()
        elif not isinstance(cfg, TriggerConfig):
            names = {f.name for f in fields(TriggerConfig)}
            cfg = TriggerConfig(**{k: v for k, v in cfg.items() if k in names})
        out: list[Trigger] = []
        if cfg.volume_every_labels or cfg.volume_growth:
            out.append(VolumeTrigger(cfg.volume_every_labels, cfg.volume_growth,
                                     cfg.volume_min_labels))
        if cfg.time_every_ms:
            out.append(TimeTrigger(cfg.time_every_ms))
        if cfg.performance_tolerance:
            out.append(PerformanceTrigger(cfg.performance_tolerance, cfg.performance_window,
                                          cfg.performance_reference, cfg.performance_alpha))
        if cfg.drift_detector != "none":
            out.append(DriftTrigger(LossDriftDetector(
                cfg.drift_detector, adwin_delta=cfg.adwin_delta, ph_delta=cfg.ph_delta,
                ph_threshold=cfg.ph_threshold, min_examples=cfg.drift_min_examples,
            )))
        return cls(out)

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """The kinds configured."""
        return tuple(t.kind for t in self.triggers)

    def observe(self, now_ms: int, champion_losses: np.ndarray,
                residuals: np.ndarray | None = None) -> tuple[Firing, ...]:
        """Every trigger looks at the batch (none is skipped: detectors must see every loss).

        ``residuals`` (label − champion score, aligned with the losses) let the drift
        trigger's detector watch calibration too.
        """
        losses = np.asarray(champion_losses, dtype=np.float64).reshape(-1)
        fired = [t.observe(now_ms, losses, residuals) for t in self.triggers]
        return tuple(f for f in fired if f is not None)

    def trained(self, now_ms: int, total_trained: int) -> None:
        """Counters restart after a training."""
        for t in self.triggers:
            t.trained(now_ms, total_trained)

    def new_champion(self) -> None:
        """What depends on the champion restarts (performance reference, drift detector)."""
        for t in self.triggers:
            t.new_champion()

    def state(self) -> list[dict[str, Any]]:
        """Each trigger's state, tagged with its kind."""
        return [{"kind": t.kind, **t.state()} for t in self.triggers]

    def load_state(self, states: Sequence[Mapping[str, Any]]) -> None:
        """Inverse of ``state``; a trigger of another kind (configuration changed) starts
        afresh."""
        for trigger, state in zip(self.triggers, states, strict=False):
            if state.get("kind") == trigger.kind:
                trigger.load_state(state)
