"""The trainer's drift watch: monitors fed per batch, bounded series, alarms counted once."""

from __future__ import annotations

import io
import math

import numpy as np
from rich.console import Console

from config.settings import DriftSettings
from models.evaluation.metrics import log_losses
from models.training.step import StepResult
from services.trainer.drift import DriftWatch
from services.trainer.metrics import TrainerMetrics
from streams.schemas import Example

TS0 = 1_763_800_000_000


def batch(n: int, seed: int, *, mobile: float = 0.5, ctr: float = 0.05,
          score: float = 0.05) -> tuple[list[Example], StepResult]:
    rng = np.random.default_rng(seed)
    devices = ["mobile" if rng.random() < mobile else "desktop" for _ in range(n)]
    labels = (rng.random(n) < ctr).astype(np.float64)
    scores = np.full(n, score)
    examples = [
        Example(f"p{seed}-{i}", TS0, TS0 + 1, int(labels[i]),
                {"device": devices[i], "price": float(rng.gamma(4.0, 10.0))}, "ctr-v1.0",
                "champion", float(scores[i] * rng.uniform(0.5, 1.5)))
        for i in range(n)
    ]
    losses = log_losses(labels, scores)
    return examples, StepResult(losses, losses, scores, scores, labels)


def watch(**cfg: object) -> tuple[DriftWatch, TrainerMetrics, io.StringIO]:
    metrics, out = TrainerMetrics(), io.StringIO()
    settings = DriftSettings(**{"features": {"device": "categorical", "price": "numeric"},
                                "reference_size": 1_000, "window": 1_000,
                                "report_every_examples": 500, "slice_feature": "device",
                                **cfg})
    return DriftWatch(settings, metrics, Console(file=out, width=200)), metrics, out


def test_stable_data_exports_low_scores_and_raises_no_alarm() -> None:
    w, m, _ = watch()
    for seed in range(6):
        w.observe(*batch(500, seed))
    get = m.registry.get_sample_value
    assert get("streamlearn_drift_feature_score", {"feature": "device"}) < 0.02
    assert get("streamlearn_drift_feature_score", {"feature": "price"}) < 0.05
    assert get("streamlearn_drift_feature_ks_statistic", {"feature": "price"}) < 0.06
    assert get("streamlearn_drift_feature_ks_statistic", {"feature": "device"}) is None
    assert get("streamlearn_drift_prediction_score_psi", {}) < 0.05
    assert get("streamlearn_trainer_slice_ctr", {"feature": "device", "value": "mobile"}) < 0.1
    assert get("streamlearn_trainer_slice_logloss",
               {"feature": "device", "value": "desktop"}) > 0.0
    assert all(get("streamlearn_drift_alarms_total", {"detector": d}) == 0
               for d in ("adwin", "feature_psi", "score_psi"))


def test_a_shift_raises_each_alarm_once_while_it_lasts() -> None:
    w, m, out = watch()
    for seed in range(2):
        w.observe(*batch(500, seed))
    for seed in range(2, 8):  # mobile 50 % → 95 %, clicks ×6, served scores ×4
        w.observe(*batch(500, seed, mobile=0.95, ctr=0.3, score=0.2))
    get = m.registry.get_sample_value
    assert get("streamlearn_drift_feature_score", {"feature": "device"}) > 0.25
    assert get("streamlearn_drift_alarms_total", {"detector": "feature_psi"}) == 1  # device
    assert get("streamlearn_drift_alarms_total", {"detector": "score_psi"}) == 1
    assert "drift alarm (feature_psi): feature device: PSI" in out.getvalue()


def test_feature_statistics_are_computed_once_per_report_period() -> None:
    w, m, _ = watch(report_every_examples=2_600)
    get = m.registry.get_sample_value
    for seed in range(5):  # 2,500 examples: the reference is complete, no report yet
        w.observe(*batch(500, seed))
    assert get("streamlearn_drift_feature_score", {"feature": "device"}) is None
    assert get("streamlearn_trainer_slice_ctr", {"feature": "device", "value": "mobile"}) \
        is not None  # slices are cheap: every batch
    w.observe(*batch(500, 5))
    assert get("streamlearn_drift_feature_score", {"feature": "device"}) is not None


def test_loss_alarms_are_the_loops_the_watch_only_counts_them() -> None:
    """Concept drift on the loss is the decision loop's (it acts on it); the watch runs no
    loss detector of its own and counts what the service hands it."""
    metrics, out = TrainerMetrics(), io.StringIO()
    w = DriftWatch(DriftSettings(features={}, slice_feature="", score_drift=False), metrics,
                   Console(file=out))
    for seed in range(4):
        w.observe(*batch(500, seed, ctr=0.05 if seed < 2 else 0.4))
    assert metrics.registry.get_sample_value("streamlearn_drift_alarms_total",
                                             {"detector": "adwin"}) == 0
    w.alarm("adwin", "champion log loss rose from 0.2 to 0.6")
    assert metrics.registry.get_sample_value("streamlearn_drift_alarms_total",
                                             {"detector": "adwin"}) == 1
    assert "drift alarm (adwin): champion log loss rose" in out.getvalue()


def shown(n: int, seed: int, version: str, liked: tuple[str, ...], *,
          score: float = 0.05) -> tuple[list[Example], StepResult]:
    """Requests of 20 candidates (8 categories alike) of which a champion shows the 5 it
    likes best: ``liked`` categories first."""
    rng = np.random.default_rng(seed)
    examples = []
    for r in range(n // 5):
        cats = rng.choice(list("abcdefgh"), size=20)
        order = sorted(range(20), key=lambda i: (cats[i] not in liked, rng.random()))
        device = "mobile" if rng.random() < 0.5 else "desktop"
        ts = TS0 + 1_000 * seed + r  # served in seed order
        examples += [Example(f"q{seed}x{r}-{i}", ts, ts + 1, 0,
                             {"device": device, "item_category": str(cats[i])}, version,
                             "champion", score * rng.uniform(0.5, 1.5), 1.0, "none")
                     for i in order[:5]]
    scores = np.array([e.score for e in examples])
    labels = np.zeros(len(examples))
    losses = log_losses(labels, scores)
    return examples, StepResult(losses, losses, scores, scores, labels)


def test_a_champion_that_shows_other_items_is_no_drift_and_restarts_the_score_reference() -> None:
    w, m, _ = watch(features={"device": "categorical", "item_category": "categorical"},
                    reference_size=1_000, window=1_000, report_every_examples=500)
    get = m.registry.get_sample_value
    for seed in range(4):  # the reference: a cold start shows candidates as they come
        w.observe(*shown(500, seed, "ctr-v1.0", ()))
    assert get("streamlearn_drift_prediction_score_psi", {}) < 0.05
    for seed in range(4, 10):  # a trained champion shows what it likes, and scores higher
        w.observe(*shown(500, seed, "ctr-v1.1", ("a", "b"), score=0.2))
        if seed in (5, 6):  # its first 1,000 scores are the new reference: no figure yet
            assert math.isnan(get("streamlearn_drift_prediction_score_psi", {}))
    assert get("streamlearn_drift_feature_score", {"feature": "item_category"}) < 0.1
    assert get("streamlearn_drift_prediction_score_psi", {}) < 0.05
    assert all(get("streamlearn_drift_alarms_total", {"detector": d}) == 0
               for d in ("feature_psi", "score_psi"))
