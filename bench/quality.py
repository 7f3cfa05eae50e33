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

It is an in-process replay of the loop (``services.simulator.replay``), not the services:
serving, joining and clicking are simulated; the learning is the trainer's own decision loop
(``models.training.loop.Learner``, built from the trainer's settings by
``services.trainer.build.build_learner``: the class ``streamlearn train`` runs) in
micro-batches of 512; a promotion serves from the next request. Time is simulated (``rate``
requests per second), so a run takes seconds and is exactly reproducible; the services' own
speed is measured by the joiner, trainer and serving benchmarks.

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

``--rename`` runs everything a second time with the client's feature keys renamed
(``services.simulator.naming``: nothing configured by name matches them) and adds that run's
figures as ``renamed`` and, per headline figure, renamed over original as ``renamed_ratio``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from config.settings import GateSettings, ServingSettings, TrainerSettings
from services.serving.exploration import exploration_of
from services.simulator import SimulatorError, build
from services.simulator.replay import STAGES, QualityConfig, StageResult, run_stage, warm_champion


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
        seed: int = 0, rename: bool = False) -> dict[str, Any]:
    # Ranked as serving ranks: its exploration settings (env overrides included).
    serving = ServingSettings()
    cfg = QualityConfig(scenario=scenario, seed=seed, exploration=exploration_of(serving),
                        label_stats=tuple(serving.label_stats),
                        label_stats_memory=serving.label_stats_memory)
    if quick:
        cfg = replace(cfg, warmup=1_000, requests=2_500, drift_after=800)
    out = figures(cfg, console)
    if rename:
        if console:
            console.print("[bold]the same run, the client's feature keys renamed[/]")
        other = figures(replace(cfg, rename=True), console)
        out["renamed"] = {k: v for k, v in other.items() if k != "config"}
        out["renamed_ratio"] = ratios(out, other)
    return out


def ratios(original: dict[str, Any], renamed: dict[str, Any]) -> dict[str, Any]:
    """Renamed over original for the headline figures (None where either is missing or 0).

    Example:
        >>> a = {"regret": {"stateful": 0.02}, "ctr_share": {"stateful": {"tail": 0.8}},
        ...      "ctr_recovery_labels": 4000, "nonpersonal_regret": 0.01,
        ...      "stages": {"continual": {"ctr_recovery_labels": None}}}
        >>> b = {"regret": {"stateful": 0.021}, "ctr_share": {"stateful": {"tail": 0.76}},
        ...      "ctr_recovery_labels": 5000, "nonpersonal_regret": 0.01,
        ...      "stages": {"continual": {"ctr_recovery_labels": 3000}}}
        >>> ratios(a, b)  # doctest: +NORMALIZE_WHITESPACE
        {'regret': {'stateful': 1.05}, 'ctr_share': {'stateful': {'tail': 0.95}},
         'ctr_recovery_labels': 1.25, 'continual_ctr_recovery_labels': None,
         'nonpersonal_regret': 1.0}
    """
    def ratio(x: Any, y: Any) -> float | None:
        return None if not x or y is None else _round(y / x, 4)

    def recovery(figures: dict[str, Any]) -> Any:
        return figures["stages"]["continual"]["ctr_recovery_labels"]

    return {
        "regret": {s: ratio(v, renamed["regret"][s]) for s, v in original["regret"].items()},
        "ctr_share": {s: {p: ratio(v, renamed["ctr_share"][s][p]) for p, v in phases.items()}
                      for s, phases in original["ctr_share"].items()},
        "ctr_recovery_labels": ratio(original["ctr_recovery_labels"],
                                     renamed["ctr_recovery_labels"]),
        "continual_ctr_recovery_labels": ratio(recovery(original), recovery(renamed)),
        "nonpersonal_regret": ratio(original["nonpersonal_regret"],
                                    renamed["nonpersonal_regret"]),
    }


def figures(cfg: QualityConfig, console: Console | None = None) -> dict[str, Any]:
    """The benchmark's figures of one configuration (every stage, the bot-attack pair)."""
    say = console.print if console else (lambda *a, **k: None)
    stages = STAGES
    results = run_scenario(cfg, stages, console)
    for r in results.values():
        say(f"{r.stage:>10}: regret {r.regret:.4f}  log loss {r.system:.4f} (optimal "
            f"{r.optimal:.4f})  non-personal regret {r.nonpersonal_regret:.4f}  promotions "
            f"{r.promotions}  rejections {r.rejections}  recovery {r.recovery_labels}  "
            f"pre-drift within tolerance {_share(r.pre_drift_within_tolerance)}")
        s = r.ctr_share
        say(f"{'':>10}  served/oracle CTR: before {_share(s['before'])}, first "
            f"{cfg.ranking_phase:,} labels after {_share(s['after'])}, last "
            f"{cfg.ranking_phase:,} {_share(s['tail'])}; back to 90 % of the pre-drift CTR "
            f"after {r.ctr_recovery_labels} labels")
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
        # What users were shown (services/simulator/ranking.py): served over oracle expected
        # CTR per stage and phase, and the labels until the served CTR is back to 90 % of its
        # pre-drift mean (stateful stage; every stage's is in ``stages``).
        "ctr_share": {s: {phase: _round(v, 4) for phase, v in r.ctr_share.items()}
                      for s, r in results.items()},
        "ctr_recovery_labels": stateful.ctr_recovery_labels,
        # Serving's exploration (serving.exploration*) and its steady-state cost: the share of
        # the greedy ranking's expected CTR before the drift that it gave up, per stage.
        "exploration": asdict(cfg.exploration),
        "exploration_cost": {s: _round(r.exploration_cost, 4) for s, r in results.items()},
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
    return "n/a" if x is None or math.isnan(x) else f"{x:.1%}"
