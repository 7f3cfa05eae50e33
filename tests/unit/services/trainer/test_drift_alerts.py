"""The drift alerts of config/prometheus/alerts.yml on what the trainer's DriftWatch exports for
simulated traffic: quiet over a stationary world served by changing champions with exploration
on, FeatureDriftHigh firing after the world's catalogue changes.

The simulator's world answers the requests; scripted champions rank them (a cold start that
scores every candidate alike, then champions that favour other categories, as trained ones do)
through serving's epsilon-greedy exploration; users see the top 5 and click with their true
probability. DriftWatch sees the examples as the trainer would, and its gauges are sampled once
per report, one report a minute, into a `promtool test rules` run of the real alert rules.
``hour`` is not monitored here: the simulator's clock moves it by design (an hour every 600
requests), which a PSI against a fixed reference reads as drift.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import yaml
from rich.console import Console

from config.settings import DriftSettings
from models.drift import LossDriftDetector
from models.evaluation.metrics import log_losses
from models.training.step import StepResult
from services.serving.exploration import Exploration, rank
from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator.scenarios import build
from services.simulator.world import Request, World
from services.trainer.drift import DriftWatch
from services.trainer.metrics import TrainerMetrics
from streams.schemas import Example
from tests.unit.services.ops.helpers import ROOT, promtool

FEATURES = ("device", "item_category", "price")
MINUTE = 500  # examples per report: one report a minute
REQUESTS_PER_MINUTE = MINUTE // 5
DRIFT_ALERTS = "FeatureDriftHigh|PredictionScoreDrift|ConceptDriftDetected"
Scorer = Callable[[World, Request], np.ndarray]


def cold_start(world: World, request: Request) -> np.ndarray:
    return np.full(len(request.candidates), 0.05)


def favouring(*liked: int) -> Scorer:
    """A champion that learnt the truth and over-rates the categories ``liked``."""
    def score(world: World, request: Request) -> np.ndarray:
        cats = [world.category[world.item_index(c["item_id"])] for c in request.candidates]
        boost = np.array([3.0 if c in liked else 1.0 for c in cats])
        return np.minimum(np.asarray(request.true_p) * boost, 0.99)
    return score


# Champion by minute: a cold start makes the reference, then three trained ones that show
# different categories (the third after a taste flip of its own).
CHAMPIONS = ((0, "ctr-v1.0", cold_start), (8, "ctr-v1.1", favouring(0, 1)),
             (25, "ctr-v1.2", favouring(2)), (42, "ctr-v1.3", favouring(4, 5, 6)))


def minutes(world: World, moved: World | None, shift_at: int, total: int,
            ) -> Iterator[tuple[str, list[Example], np.ndarray]]:
    """Each minute's examples, its champion's version and its per-example losses."""
    scenario = build("stationary", seed=0)
    rng = np.random.default_rng([0, 7])
    exploration = Exploration("epsilon", epsilon=0.1)
    for minute in range(total):
        version, scorer = next((v, s) for m, v, s in reversed(CHAMPIONS) if minute >= m)
        here = moved if moved is not None and minute >= shift_at else world
        examples, losses = [], []
        for j in range(REQUESTS_PER_MINUTE):
            n = minute * REQUESTS_PER_MINUTE + j
            request = here.request(n, scenario.state(n))
            features = model_features(PredictRequest.model_validate(request.body()))
            scores = scorer(here, request)
            ranking = rank(scores, exploration, rng)
            for slot in range(5):
                i = ranking.order[slot]
                label = int(rng.random() < request.true_p[i])
                examples.append(Example(f"r{n}-{i}", 60_000 * minute + j, 60_000 * minute + j,
                                        label, features[i], version, "champion",
                                        float(scores[i]), ranking.propensity[slot],
                                        exploration.policy))
                losses.append(log_losses(np.array([label], float), scores[i:i + 1])[0])
        yield version, examples, np.asarray(losses)


def series(world: World, moved: World | None = None, shift_at: int = 0,
           total: int = 60) -> dict[str, list[float | None]]:
    """The drift gauges and alarm counters, one sample a minute."""
    metrics = TrainerMetrics()
    watch = DriftWatch(DriftSettings(
        features=dict.fromkeys(FEATURES, "categorical") | {"price": "numeric"},
        reference_size=2_000, window=2_000, report_every_examples=MINUTE,
        slice_feature="device"), metrics, Console(file=io.StringIO()))
    detector, serving = LossDriftDetector("adwin"), ""
    out: dict[str, list[float | None]] = {}
    for version, examples, losses in minutes(world, moved, shift_at, total):
        if version != serving:
            detector.reset()  # as the decision loop does for a new champion
            serving = version
        scores = np.array([e.score for e in examples])
        labels = np.array([e.label for e in examples], dtype=np.float64)
        result = StepResult(losses, losses, scores, scores, labels)
        alarm = detector.update(losses, labels - scores)
        if alarm is not None:
            watch.alarm(alarm.detector, alarm.reason)
        watch.observe(examples, result)
        get = metrics.registry.get_sample_value
        samples = {f'streamlearn_drift_feature_score{{feature="{f}"}}':
                   get("streamlearn_drift_feature_score", {"feature": f}) for f in FEATURES}
        samples["streamlearn_drift_prediction_score_psi"] = get(
            "streamlearn_drift_prediction_score_psi")
        for d in ("adwin", "page_hinkley"):
            samples[f'streamlearn_drift_alarms_total{{detector="{d}"}}'] = get(
                "streamlearn_drift_alarms_total", {"detector": d})
        for name, value in samples.items():
            out.setdefault(name, []).append(value)
    return out


def rule_test(tmp_path: Path, data: dict[str, list[float | None]],
              checks: list[dict[str, object]]) -> str:
    """Run ``checks`` (promql_expr_test entries) on ``data`` against the real alert rules."""
    spec = {"rule_files": [str(ROOT / "config/prometheus/alerts.yml")],
            "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "promql_expr_test": checks, "input_series": [
                {"series": name, "values": " ".join("_" if v is None else repr(v) for v in vals)}
                for name, vals in data.items()]}]}
    path = tmp_path / "drift_test.yml"
    path.write_text(yaml.safe_dump(spec))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_every_drift_alert_is_quiet_over_a_stationary_world_with_changing_champions(
        tmp_path: Path) -> None:
    world = build("stationary", seed=0).world()
    data = series(world)
    psi = [v for f in FEATURES for v in data[f'streamlearn_drift_feature_score{{feature="{f}"}}']
           if v is not None]
    assert psi and max(psi) < 0.15  # well under drift.psi_alarm (0.25)
    rule_test(tmp_path, data, [{
        "expr": f'max_over_time((count(ALERTS{{alertname=~"{DRIFT_ALERTS}"}}) or vector(0))'
                "[60m:1m])",
        "eval_time": "60m", "exp_samples": [{"labels": "{}", "value": 0}]}])


def test_feature_drift_fires_after_the_catalogue_changes_under_changing_champions(
        tmp_path: Path) -> None:
    world = build("stationary", seed=0).world()
    toys = world.config.categories.index("toys")
    flip = np.random.default_rng(99).random(world.category.size) < 1 / 3
    moved = dataclasses.replace(world, category=np.where(flip, toys, world.category))
    data = series(world, moved, shift_at=15)
    rule_test(tmp_path, data, [
        {"expr": f'count(ALERTS{{alertname=~"{DRIFT_ALERTS}"}}) or vector(0)',
         "eval_time": "15m", "exp_samples": [{"labels": "{}", "value": 0}]},
        {"expr": 'count by (feature) (ALERTS{alertname="FeatureDriftHigh", '
                 'alertstate="firing"})',
         "eval_time": "60m", "exp_samples": [{"labels": '{feature="item_category"}',
                                              "value": 1}]}])
