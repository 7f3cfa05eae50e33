"""An in-process replay of the closed loop: the simulator's traffic, served, clicked, joined
and learnt by the trainer's own decision loop, in simulated time.

One stage serves ``cfg.requests`` seeded requests and differs from another only in how the
champion changes (``frozen``, or the trainer's ``stateless``, ``stateful`` and ``triggered``
modes as ``continual``). The champion scores each request's candidates on the features serving
logs (``model_features``); users see the top ``k`` and click with their true p after a
log-normal delay (``respond``); a shown prediction's label is known at its click or when the
attribution window closes, as the joiner emits it; labels pass the trainer's ``CohortBuffer``
(whole cohorts, in prediction-time order) and reach the ``Learner`` that
``services.trainer.build.build_learner`` makes from the trainer's settings, the one
``streamlearn train`` runs, in micro-batches; a promotion serves from the next request.
``bench quality`` reports what the stages measure (regret against the truth, recovery,
the non-personal floor).

Example:
    >>> cfg = QualityConfig(warmup=200, requests=300, drift_after=100)
    >>> cfg.batch_size, stage_settings("continual", TrainerSettings(), GateSettings()).mode
    (512, 'triggered')
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from config.settings import GateSettings, TrainerSettings
from models.evaluation import log_loss
from models.features.label_stats import LabelStats
from models.learners.base import Model
from models.training.batching import CohortBuffer
from services.serving.exploration import Exploration, rank, uncertainty
from services.serving.schemas import PredictRequest
from services.serving.scoring import GREEDY, model_features
from services.simulator.accounting import RecoveryTracker, oracle_top_k, within_tolerance_share
from services.simulator.behaviour import Behaviour, respond
from services.simulator.naming import RENAMED, renamed
from services.simulator.ranking import RankingTracker
from services.simulator.scenarios import Scenario
from services.simulator.warmup import warm_model
from services.simulator.world import Request, State, World
from services.trainer.build import build_learner, new_model

STAGES = ("frozen", "stateless", "stateful", "continual")


# The trainer's mode of each stage, and its gate cadence: stateful asks the gate after every
# micro-batch (BENCHMARKS.md: the cadence measured), stateless once the gate's minimum of fresh
# evidence follows each retrain, continual when the policy says so.
MODES = {"stateless": "stateless", "stateful": "stateful", "continual": "triggered"}


def stage_settings(stage: str, settings: TrainerSettings, gate: GateSettings,
                   ) -> TrainerSettings:
    """The trainer settings a stage runs: ``settings`` with the stage's mode and cadence."""
    every = {"stateful": settings.batch_size, "stateless": gate.min_examples,
             "continual": settings.gate_every_examples}
    return settings.model_copy(update={"mode": MODES[stage],
                                       "gate_every_examples": every[stage]})



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
    ranking_phase: int = 5_000  # labels of the early post-drift and of the tail phase
    ranking_window: int = 1_000  # labels the served CTR's recovery is averaged over
    exploration: Exploration = GREEDY  # serving's exploration (bench quality: its settings)
    # Serving's fresh label statistics (serving.label_stats*; () = off): candidates are
    # enriched at request time, each label counted when the joiner would emit it.
    label_stats: tuple[str, ...] = ()
    label_stats_memory: float = 50.0
    # The client sends its features under other names (services.simulator.naming.RENAMED):
    # nothing configured by name (crosses, categorical keys) matches them.
    rename: bool = False

    @property
    def names(self) -> dict[str, str] | None:
        """The client's renaming of its feature keys; None: the simulator's own names."""
        return dict(RENAMED) if self.rename else None


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
    # Served over oracle expected CTR (RankingTracker), genuine users' requests, by phase:
    # before the drift, the first ranking_phase labels after it, the last ranking_phase labels.
    ctr_share: dict[str, float] = field(default_factory=dict)
    ctr_recovery_labels: int | None = None
    # Share of the expected CTR the greedy ranking would have had before the drift that
    # exploration gave up (0 without exploration): its steady-state cost.
    exploration_cost: float = 0.0
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
    propensity: float | None = None  # as serving logs it (the gate's ranking rules read it)


def warm_champion(scenario: Scenario, world: World, cfg: QualityConfig,
                  settings: TrainerSettings) -> Model:
    """The trainer's configured model after the warm-up requests (``warm_model``)."""
    return warm_model(new_model(settings), scenario, world, requests=cfg.warmup, k=cfg.k,
                      batch_size=cfg.batch_size, seed=cfg.seed, names=cfg.names)


def run_stage(stage: str, scenario: Scenario, world: World, initial: Model,
              cfg: QualityConfig, settings: TrainerSettings, gate: GateSettings,
              progress: Any = None, verbose: bool = False) -> StageResult:
    """Serve ``cfg.requests`` requests after the warm-up with ``stage``'s learning, ranked as
    serving ranks them under ``cfg.exploration`` (``services.serving.exploration``)."""
    exploration, names = cfg.exploration, cfg.names
    stats = (LabelStats(cfg.label_stats, memory=cfg.label_stats_memory)
             if cfg.label_stats else None)
    champion = initial.clone()
    rng = np.random.default_rng([cfg.seed, 7])  # serving's draws, the same for every stage
    greedy_before = served_before = 0.0  # true p shown before the drift: greedy vs served
    learner = (None if stage == "frozen" else
               build_learner(stage_settings(stage, settings, gate), gate, champion=champion))
    behaviour = Behaviour(k=cfg.k)
    cap = max(1, cfg.window_ms - behaviour.impression_delay_max_ms - 100)
    behaviour = replace(behaviour, click_delay_cap_ms=min(behaviour.click_delay_cap_ms, cap))
    drift = cfg.warmup + cfg.drift_after
    heap: list[_Due] = []
    batch: list[_Example] = []
    cohorts: CohortBuffer[_Example] = CohortBuffer(cfg.window_ms)
    recovery = RecoveryTracker(cfg.recovery_window, cfg.recovery_tolerance)
    ranking = RankingTracker(early=cfg.ranking_phase, tail=cfg.ranking_phase,
                             window=cfg.ranking_window)
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
            if stats is not None:
                stats.update(d.example.features, d.label)
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
                outcome = learner.step(list(batch), now_ms)
                decision = outcome.decision
                if post_drift or batch[-1].ts_prediction >= drift_ms:
                    post_drift += 1  # batches are in prediction-time order (cohorts)
                    # A firing counts when it fires, even if it is held while the gate's
                    # evidence is gathered (the training it asks for comes after the verdict).
                    fired = getattr(learner.policy, "counts", {}).get("drift", 0) > firings
                    if outcome.alarm is not None and out.drift_alarm_batches is None:
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
        body = request.body() if names is None else renamed(request.body(), names)
        features = model_features(PredictRequest.model_validate(body))
        if stats is not None:
            features = stats.enrich_many(features)
        scores = np.asarray(champion.predict_proba_many(features), dtype=np.float64)
        ranked = rank(scores, exploration, rng, uncertainty(champion, features, exploration))
        order = ranked.order
        slot_p = dict(zip(order, ranked.propensity, strict=True))
        predictions = [{"prediction_id": f"{n}-{i}", "item_id": body["candidates"][i]["item_id"],
                        "score": float(scores[i]), "rank": r + 1}
                       for r, i in enumerate(order)]
        outcome = respond(request, predictions, now, behaviour, cfg.seed)
        clicks = {e["prediction_id"]: int(e["ts"]) for e in outcome.events
                  if e["type"] == "click"}
        population = _population_p(world, request, state, [t.item_id for t in outcome.shown])
        if not request.is_bot:
            shown_p = [t.true_p for t in outcome.shown]
            ranking.update(shown_p, oracle_top_k(request.true_p, len(shown_p)),
                           after_drift=n >= drift)
            if n < drift and exploration.policy != "none":
                greedy = np.argsort(-scores, kind="stable")[: len(shown_p)]
                greedy_before += math.fsum(request.true_p[int(i)] for i in greedy)
                served_before += math.fsum(shown_p)
        for truth in outcome.shown:
            i = int(truth.prediction_id.rsplit("-", 1)[1])
            click = clicks.get(truth.prediction_id)
            clicked = click is not None and click - now <= cfg.window_ms
            due = click if clicked and click is not None else now + cfg.window_ms
            example = _Example(truth.prediction_id, int(clicked), features[i], now, due,
                               slot_p[i])
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
    shares = ranking.figures()
    out.ctr_share = {"before": shares.share_before, "after": shares.share_after,
                     "tail": shares.share_tail}
    out.ctr_recovery_labels = shares.recovery_labels
    out.exploration_cost = 1.0 - served_before / greedy_before if greedy_before else 0.0
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
