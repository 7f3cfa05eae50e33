"""Each trigger on its own: when it fires, that it fires once per training, what resets it."""

from __future__ import annotations

import numpy as np
import pytest

from models.drift import LossDriftDetector
from models.evaluation.metrics import log_losses
from models.triggers import (
    DriftTrigger,
    PerformanceTrigger,
    TimeTrigger,
    TriggerConfig,
    Triggers,
    VolumeTrigger,
)


def losses(n: int, mean: float = 0.2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).exponential(mean, n)


def test_volume_fires_at_the_batch_that_reaches_n_then_waits_for_a_training() -> None:
    t = VolumeTrigger(every_labels=1_000)
    fired = [t.observe(0, np.zeros(300)) for _ in range(5)]
    assert [f is not None for f in fired] == [False, False, False, True, False]
    assert fired[3] is not None and fired[3].kind == "volume"
    assert fired[3].reason == "volume: 1200 labels since the last training (every 1000)"
    t.trained(0, total_trained=1_500)
    assert t.observe(0, np.zeros(999)) is None
    assert t.observe(0, np.zeros(1)) is not None


def test_volume_growth_fires_at_x_percent_of_what_was_trained_on_with_a_floor() -> None:
    t = VolumeTrigger(growth=0.1, min_labels=50)
    assert t.observe(0, np.zeros(49)) is None  # nothing trained yet: the floor decides
    assert t.observe(0, np.zeros(1)) is not None
    t.trained(0, total_trained=2_000)  # +10 % of 2,000 = 200 new labels
    assert t.observe(0, np.zeros(199)) is None
    firing = t.observe(0, np.zeros(1))
    assert firing is not None and "+10% of the 2000 trained on" in firing.reason


def test_time_fires_after_t_ms_of_the_callers_clock_since_the_first_batch_or_training() -> None:
    t = TimeTrigger(every_ms=60_000)
    assert t.observe(1_000_000, np.zeros(5)) is None  # the clock starts here
    assert t.observe(1_059_999, np.zeros(5)) is None
    firing = t.observe(1_060_000, np.zeros(5))
    assert firing is not None and firing.reason == "time: 60000 ms since the last training " \
                                                   "(every 60000 ms)"
    assert t.observe(1_090_000, np.zeros(5)) is None  # once, until a training
    t.trained(1_100_000, 10)
    assert t.observe(1_159_999, np.zeros(5)) is None
    assert t.observe(1_160_000, np.zeros(5)) is not None


def test_performance_compares_the_rolling_loss_with_the_champions_reference() -> None:
    t = PerformanceTrigger(tolerance=0.10, window=500, reference=1_000)
    assert t.observe(0, np.full(1_000, 0.20)) is None  # the reference: 0.20
    assert t.reference == pytest.approx(0.20)
    assert t.observe(0, np.full(500, 0.219)) is None  # +9.5 %: within tolerance
    assert t.observe(0, np.full(250, 0.22)) is None  # rolling 0.2195: still within
    firing = t.observe(0, np.full(500, 0.26))  # rolling 0.26: +30 %
    assert firing is not None and firing.kind == "performance"
    assert "0.2600 over the last 500 examples, +30.0% vs its reference 0.2000" in firing.reason
    # It needs a whole new window before it fires again.
    assert t.observe(0, np.full(499, 0.3)) is None
    assert t.observe(0, np.full(1, 0.3)) is not None
    # A new champion needs a new reference first.
    t.new_champion()
    assert t.reference is None
    assert t.observe(0, np.full(1_000, 0.5)) is None
    assert t.observe(0, np.full(500, 0.5)) is None


def test_performance_ignores_noise_that_crosses_the_tolerance_and_fires_on_a_real_rise() -> None:
    # Per-example log losses are heavy-tailed: windows of 1,024 drawn from one distribution
    # cross +10 % now and then. Only a significant rise fires.
    rng = np.random.default_rng(3)

    def calibrated_losses(n: int, ctr_scale: float = 1.0) -> np.ndarray:
        p = rng.beta(1.0, 12.0, n)  # a calibrated model at ~8 % CTR
        return log_losses(rng.random(n) < np.minimum(1.0, p * ctr_scale), p)

    t = PerformanceTrigger(tolerance=0.10, window=1_024, reference=2_048)
    t.observe(0, calibrated_losses(2_048))
    crossed, fired = 0, 0
    for _ in range(200):
        window = calibrated_losses(1_024)
        crossed += window.mean() > 1.1 * t.reference  # type: ignore[operator]
        fired += t.observe(0, window) is not None
    assert crossed >= 10 and fired == 0
    firing = t.observe(0, calibrated_losses(1_024, ctr_scale=2.0))  # clicks doubled
    assert firing is not None and ", z=" in firing.reason


def test_drift_fires_on_a_rise_of_the_loss_within_the_first_batch_after_it() -> None:
    t = DriftTrigger(LossDriftDetector("adwin"))
    steady = [t.observe(0, losses(512, 0.2, seed=i)) for i in range(20)]
    assert steady == [None] * 20
    firing = t.observe(0, losses(512, 0.4, seed=99))
    assert firing is not None and firing.kind == "drift"
    assert firing.reason.startswith("drift: adwin: champion log loss rose from 0.2")


def test_drift_ignores_a_fall_of_the_loss() -> None:
    t = DriftTrigger(LossDriftDetector("adwin"))
    fired = [t.observe(0, losses(512, m, seed=i)) for i, m in enumerate([0.4] * 10 + [0.1] * 10)]
    assert fired == [None] * 20


def test_a_new_champion_resets_the_drift_detector() -> None:
    t = DriftTrigger(LossDriftDetector("adwin"))
    for i in range(10):
        t.observe(0, losses(512, 0.2, seed=i))
    t.new_champion()
    assert t.detector.seen == 0


def test_triggers_are_switched_on_by_config_and_observed_together() -> None:
    assert Triggers.from_config().kinds == ("volume", "performance", "drift")
    cfg = {"volume_every_labels": 0, "time_every_ms": 5, "performance_tolerance": 0,
           "drift_detector": "page_hinkley", "mode": "triggered"}  # extra keys are ignored
    assert Triggers.from_config(cfg).kinds == ("time", "drift")
    none = TriggerConfig(volume_every_labels=0, performance_tolerance=0, drift_detector="none")
    assert Triggers.from_config(none).observe(0, np.zeros(10_000)) == ()
    both = Triggers.from_config({"volume_every_labels": 10, "time_every_ms": 100,
                                 "performance_tolerance": 0, "drift_detector": "none"})
    assert both.observe(0, np.zeros(5)) == ()
    assert [f.kind for f in both.observe(100, np.zeros(5))] == ["volume", "time"]


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        TriggerConfig(volume_every_labels=-1)
    with pytest.raises(ValueError, match="performance_window"):
        TriggerConfig(performance_window=0)
    with pytest.raises(ValueError, match="unknown drift detector"):
        LossDriftDetector("cusum")  # type: ignore[arg-type]
