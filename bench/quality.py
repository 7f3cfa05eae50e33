"""`python -m bench quality`: the four stages of continual learning, side by side, on one scenario.

Every stage serves the same seeded traffic from the simulator (``services.simulator``) with its
true click probabilities, and differs only in how the champion changes:

1. ``frozen``     the initial champion, never updated;
2. ``stateless``  scheduled retraining from scratch over a sliding window (the trainer's
                  stateless mode with its default schedule);
3. ``stateful``   a replica of the champion fine-tuned on every 512-label micro-batch, the gate
                  asked after every batch (the trainer's stateful mode);
4. ``continual``  trigger-driven: train and ask the gate when a trigger fires
                  (``models.triggers``, the trainer's ``--mode triggered`` as configured).

It is an in-process replay of the loop, not the services: the champion scores each request's
candidates on the features serving logs (``model_features``); users see the top ``k`` and click
with their true p after a log-normal delay (``respond``); a shown prediction's label is known at
its click or when the attribution window closes, as the joiner emits it; labels pass the
trainer's ``CohortBuffer`` (whole cohorts, in prediction-time order) and reach the learner
(``models.training.loop.Learner``: the trainer's policy, gate and label-drift alarm) in
micro-batches
of 512; a promotion serves from the next request. Time is simulated (``rate`` requests per
second), so a run takes seconds and is exactly reproducible; the services' own speed is
measured by the joiner, trainer and serving benchmarks.

All stages start from one *warm* champion: a model trained on ``warmup`` requests of the
scenario's traffic before the measured run (``warm_model``: a model is deployed trained, then
the world drifts). Regret
is the mean log loss above the Bayes-optimal (the true p) over every label of the measured run.
``recovery_labels`` counts the stateful stage's labels after the first drift point until its
rolling log loss (256 labels) is back within 5 % of the optimal; ``pre_drift_within_tolerance``
is the share of its rolling windows (256 labels, one ending at every label once the window is
full) over the labels of requests before the drift point that are within 5 % of the optimal:
how often that "recovered" state holds at all before anything drifts. ``nonpersonal_regret`` is
the stateful stage's regret, on its labels of genuine users, of the truth averaged over the
users (``World.population_p``): the best prediction of someone who knows everything but who
the user is, hence the part of the regret that only a model learning per-user taste can remove
(0 when the world has no personal affinity). ``stages`` holds both figures for every stage.
``bot_attack_logloss_delta`` is the stateful stage's served log loss on genuine users with the
``bot-attack`` scenario over the same run without it, minus 1 (both after the attack starts).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from config.settings import GateSettings, TrainerSettings, TriggerSettings
from models.drift import LossDriftDetector
from models.evaluation import log_loss
from models.learners.base import Model
from models.training.batching import ClickGuard, CohortBuffer
from models.training.loop import Learner
from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator import Behaviour, SimulatorError, build
from services.simulator.accounting import RecoveryTracker, within_tolerance_share
from services.simulator.behaviour import respond
from services.simulator.scenarios import Scenario
from services.simulator.warmup import warm_model
from services.simulator.world import Request, State, World
from services.trainer.service import build_policy, gate_config, new_model

STAGES = ("frozen", "stateless", "stateful", "continual")


@dataclass(frozen=True)
class QualityConfig:
    """One benchmark run: the scenario, its length and the loop's timing."""

    scenario: str = "sudden"
    seed: int = 0
    warmup: int = 3_000  # requests the initial champion is trained on
    requests: int = 8_000  # measured requests after the warm-up
    drift_after: int = 2_000  # measured requests before the drift point
    rate: float = 10.0  # simulated requests per second
    window_ms: int = 10_000  # the joiner's attribution window
    k: int = 5  # items shown per response
    batch_size: int = 512
    recovery_window: int = 256
    recovery_tolerance: float = 0.05


@dataclass
class StageResult:
    stage: str
    labels: int = 0
    regret: float = math.nan
    system: float = math.nan
    optimal: float = math.nan
    genuine_system: float = math.nan  # served log loss on genuine users' labels after the drift
    # Regret of the truth averaged over the users (World.population_p), genuine users' labels.
    nonpersonal_regret: float = math.nan
    recovery_labels: int | None = None
    pre_drift_within_tolerance: float | None = None
    promotions: int = 0
    rejections: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    # Micro-batches holding post-drift examples until the label-drift alarm (any learning
    # stage) and the drift trigger (continual) fired; None: never.
    drift_alarm_batches: int | None = None
    drift_trigger_batches: int | None = None


@dataclass(order=True)
class _Due:
    due_ms: int
    seq: int
    label: int = field(compare=False)
    served: float = field(compare=False)
    optimal: float = field(compare=False)
    population: float = field(compare=False)  # World.population_p; nan for a bot
    genuine: bool = field(compare=False)
    after_drift: bool = field(compare=False)
    example: _Example = field(compare=False)


@dataclass(frozen=True)
class _Example:
    """A labelled example as the joiner emits it (what the learner and the cohorts need)."""

    prediction_id: str
    label: int
    features: dict[str, Any]
    ts_prediction: int
    ts_label: int


def warm_champion(scenario: Scenario, world: World, cfg: QualityConfig,
                  settings: TrainerSettings) -> Model:
    """The trainer's configured model after the warm-up requests (``warm_model``)."""
    return warm_model(new_model(settings), scenario, world, requests=cfg.warmup, k=cfg.k,
                      batch_size=cfg.batch_size, seed=cfg.seed)


def run_stage(stage: str, scenario: Scenario, world: World, initial: Model,
              cfg: QualityConfig, settings: TrainerSettings, gate: GateSettings,
              progress: Any = None, verbose: bool = False) -> StageResult:
    """Serve ``cfg.requests`` requests after the warm-up with ``stage``'s learning."""
    champion = initial.clone()
    learner: Learner | None = None
    if stage != "frozen":
        policy = _policy(stage, champion, settings, gate)
        # stateful: the gate after every micro-batch; continual: when the policy says so;
        # stateless: once the gate's minimum of fresh evidence follows each retrain.
        every = {"stateful": settings.batch_size, "continual": None,
                 "stateless": gate.min_examples}
        learner = Learner(champion, policy, gate_config(gate), gate_every=every[stage],
                          sanity_size=settings.sanity_size,
                          window_max=settings.gate_window_max, drift=LossDriftDetector(),
                          guard=ClickGuard())
    behaviour = Behaviour(k=cfg.k)
    cap = max(1, cfg.window_ms - behaviour.impression_delay_max_ms - 100)
    behaviour = replace(behaviour, click_delay_cap_ms=min(behaviour.click_delay_cap_ms, cap))
    drift = cfg.warmup + cfg.drift_after
    heap: list[_Due] = []
    batch: list[_Example] = []
    cohorts: CohortBuffer[_Example] = CohortBuffer(cfg.window_ms)
    recovery = RecoveryTracker(cfg.recovery_window, cfg.recovery_tolerance)
    recovery.drift()  # only post-drift labels are fed to it
    out = StageResult(stage)
    regret_sum = system_sum = optimal_sum = 0.0
    genuine_sum, genuine_n = 0.0, 0
    nonpersonal_sum, nonpersonal_n = 0.0, 0
    pre_drift: tuple[list[float], list[float]] = ([], [])  # system, optimal losses
    seq = 0
    post_drift = 0
    step_ms = 1000.0 / cfg.rate
    t0 = 1_763_800_000_000
    drift_ms = t0 + int(cfg.drift_after * step_ms)
    task = progress.add_task(stage, total=cfg.requests) if progress else None

    def take(now_ms: int) -> None:
        nonlocal champion, regret_sum, system_sum, optimal_sum, genuine_sum, genuine_n
        nonlocal post_drift, nonpersonal_sum, nonpersonal_n
        while heap and heap[0].due_ms <= now_ms:
            d = heapq.heappop(heap)
            s, o = log_loss(d.label, d.served), log_loss(d.label, d.optimal)
            out.labels += 1
            regret_sum += s - o
            system_sum += s
            optimal_sum += o
            if d.genuine:
                nonpersonal_sum += log_loss(d.label, d.population) - o
                nonpersonal_n += 1
            if d.after_drift:
                recovery.update(s, o)
                if d.genuine:
                    genuine_sum += s
                    genuine_n += 1
            else:
                pre_drift[0].append(s)
                pre_drift[1].append(o)
            if learner is None:
                continue
            cohorts.add(d.example)
        if learner is None:
            return
        for example in cohorts.release():
            batch.append(example)
            if len(batch) >= cfg.batch_size:
                firings = getattr(learner.policy, "counts", {}).get("drift", 0)
                decision = learner.step(list(batch), now_ms)
                if post_drift or batch[-1].ts_prediction >= drift_ms:
                    post_drift += 1  # batches are in prediction-time order (cohorts)
                    # A firing counts when it fires, even if it is held while the gate's
                    # evidence is gathered (the training it asks for comes after the verdict).
                    fired = getattr(learner.policy, "counts", {}).get("drift", 0) > firings
                    if learner.last_alarm and out.drift_alarm_batches is None:
                        out.drift_alarm_batches = post_drift
                    if fired and out.drift_trigger_batches is None:
                        out.drift_trigger_batches = post_drift
                batch.clear()
                if decision is not None:
                    key = f"{decision.outcome}:{decision.rule}"
                    out.decisions[key] = out.decisions.get(key, 0) + 1
                    if verbose:
                        print(now_ms, key, decision.reason)
                champion = learner.champion

    for j in range(cfg.requests):
        n = cfg.warmup + j
        now = t0 + int(j * step_ms)
        take(now)
        state = scenario.state(n)
        request = world.request(n, state)
        body = request.body()
        features = model_features(PredictRequest.model_validate(body))
        scores = champion.predict_proba_many(features)
        order = np.argsort(-scores, kind="stable")
        predictions = [{"prediction_id": f"{n}-{i}", "item_id": body["candidates"][i]["item_id"],
                        "score": float(scores[i]), "rank": r + 1}
                       for r, i in enumerate(order)]
        outcome = respond(request, predictions, now, behaviour, cfg.seed)
        clicks = {e["prediction_id"]: int(e["ts"]) for e in outcome.events
                  if e["type"] == "click"}
        population = _population_p(world, request, state, [t.item_id for t in outcome.shown])
        for truth in outcome.shown:
            i = int(truth.prediction_id.rsplit("-", 1)[1])
            click = clicks.get(truth.prediction_id)
            clicked = click is not None and click - now <= cfg.window_ms
            due = click if clicked and click is not None else now + cfg.window_ms
            example = _Example(truth.prediction_id, int(clicked), features[i], now, due)
            heapq.heappush(heap, _Due(due, seq, int(clicked), truth.score, truth.true_p,
                                      population[truth.item_id], truth.genuine, n >= drift,
                                      example))
            seq += 1
        if task is not None and j % 200 == 0:
            progress.update(task, completed=j)
    take(2**62)
    if task is not None:
        progress.update(task, completed=cfg.requests)
    n = max(out.labels, 1)
    out.regret, out.system, out.optimal = regret_sum / n, system_sum / n, optimal_sum / n
    out.genuine_system = genuine_sum / genuine_n if genuine_n else math.nan
    out.nonpersonal_regret = nonpersonal_sum / nonpersonal_n if nonpersonal_n else math.nan
    out.recovery_labels = recovery.recovered
    out.pre_drift_within_tolerance = within_tolerance_share(
        *pre_drift, window=cfg.recovery_window, tolerance=cfg.recovery_tolerance)
    if learner is not None:
        out.promotions, out.rejections = learner.counts.promotions, learner.counts.rejections
    return out


def _population_p(world: World, request: Request, state: State, item_ids: list[str],
                  ) -> dict[str, float]:
    """``World.population_p`` of ``item_ids`` in the request's context; nan for a bot's."""
    if request.is_bot:
        return dict.fromkeys(item_ids, math.nan)
    items = np.array([world.item_index(i) for i in item_ids], dtype=np.int64)
    p = world.population_p(items, request.context["device"], request.context["hour"], state)
    return dict(zip(item_ids, p.tolist(), strict=True))


def _policy(stage: str, champion: Model, settings: TrainerSettings, gate: GateSettings,
            ) -> Any:
    """The trainer's policy of the stage (``streamlearn train --mode``), as configured."""
    mode = {"continual": "triggered"}.get(stage, stage)
    return build_policy(mode, champion, settings, triggers=TriggerSettings(),
                        min_evidence=gate.min_examples)


def run_scenario(cfg: QualityConfig, stages: Sequence[str], console: Console | None = None,
                 ) -> dict[str, StageResult]:
    settings, gate = TrainerSettings(), GateSettings()
    try:
        scenario = build(cfg.scenario, cfg.seed, drift_at=cfg.warmup + cfg.drift_after)
    except SimulatorError:  # a scenario without a drift point (stationary)
        scenario = build(cfg.scenario, cfg.seed)
    world = scenario.world()
    initial = warm_champion(scenario, world, cfg, settings)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    results = {}
    with Progress(*columns, console=console, transient=True, disable=console is None) as bar:
        for stage in stages:
            results[stage] = run_stage(stage, scenario, world, initial, cfg, settings, gate, bar)
    return results


def run(quick: bool = False, console: Console | None = None, scenario: str = "sudden",
        seed: int = 0) -> dict[str, Any]:
    cfg = QualityConfig(scenario=scenario, seed=seed)
    if quick:
        cfg = replace(cfg, warmup=1_000, requests=2_500, drift_after=800)
    say = console.print if console else (lambda *a, **k: None)
    stages = STAGES
    results = run_scenario(cfg, stages, console)
    for r in results.values():
        say(f"{r.stage:>10}: regret {r.regret:.4f}  log loss {r.system:.4f} (optimal "
            f"{r.optimal:.4f})  non-personal regret {r.nonpersonal_regret:.4f}  promotions "
            f"{r.promotions}  rejections {r.rejections}  recovery {r.recovery_labels}  "
            f"pre-drift within tolerance {_share(r.pre_drift_within_tolerance)}")
    clean = run_scenario(replace(cfg, scenario="stationary"), ["stateful"], console)["stateful"]
    attacked = run_scenario(replace(cfg, scenario="bot-attack"), ["stateful"],
                            console)["stateful"]
    delta = attacked.genuine_system / clean.genuine_system - 1.0
    stateful = results["stateful"]
    say(f"drift: alarm after {stateful.drift_alarm_batches} post-drift micro-batches, trigger "
        f"after {results['continual'].drift_trigger_batches}")
    say(f"bot attack: genuine users' log loss {attacked.genuine_system:.4f} vs "
        f"{clean.genuine_system:.4f} without ({delta:+.2%})")
    stateful = results["stateful"]
    return {
        "scenario": cfg.scenario,
        "regret": {s: _round(results[s].regret) if s in results else None for s in STAGES},
        "recovery_labels": stateful.recovery_labels,
        "nonpersonal_regret": _round(stateful.nonpersonal_regret),
        "pre_drift_within_tolerance": _round(stateful.pre_drift_within_tolerance, 4),
        "promotions": stateful.promotions,
        "rejections": stateful.rejections,
        "bot_attack_logloss_delta": _round(delta),
        # Issue 7: micro-batches after the drift point until the label-drift alarm (stateful
        # trainer) and the drift trigger (continual) fired.
        "drift_alarm_batches": stateful.drift_alarm_batches,
        "drift_trigger_batches": results["continual"].drift_trigger_batches,
        "stages": {s: asdict(r) for s, r in results.items()},
        "config": asdict(cfg),
    }


def _round(x: float | None, digits: int = 5) -> float | None:
    """``x`` rounded for the JSON; None for a figure that could not be measured."""
    return None if x is None or math.isnan(x) else round(x, digits)


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"
