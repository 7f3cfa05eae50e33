"""`python -m bench replay`: MovieLens-100K replayed in time order, our default model beside river
and a batch-trained model, in process and through the real services.

The data: the 100,000 ratings of MovieLens-100K (``services.simulator.movielens``: fetched once
from the ``recbole`` wheel on PyPI into the stack's cache dir), each one request with one
candidate, label ``rating >= 4``, on the features serving logs for it (user_id, item_id, age,
gender, occupation, hour; release year and genres). Every figure is progressive: a rating is
scored by the model of that moment before anything learns from it.

- ``auc``, ``logloss``: our default model with the defaults a user gets, through the trainer's
  decision loop in process (``through_learner``: ``build_learner(TrainerSettings(),
  GateSettings())`` from the cold start, micro-batches of 512, the gate deciding what
  serves); the scores are the champion's, i.e. what serving would have served.
  ``challenger_auc``: the challenger's, before it learnt each batch. ``model_auc_at_batch``:
  the same model alone (``model_progressive``: each micro-batch scored, then learnt; no gate,
  bot guard or per-user cap), so what the loop costs or brings shows.
- ``label_stats_auc``, ``label_stats_logloss``: the same loop with serving's fresh label
  statistics of ``user_id`` and ``item_id`` (``serving.label_stats``, off by default;
  ``models.features.label_stats``), each rating enriched with the labels joined before it
  (a like at its time, a non-like when its attribution window closes). ``auc`` itself runs
  with whatever ``serving.label_stats`` says.
- ``river_logreg_auc``, ``river_fm_auc``, ``river_best_auc``: river's LogisticRegression
  (SGD 0.05) and FMClassifier (its linear weights on SGD 0.05, as the LR; latent defaults), on
  one-hot dicts of the same features, each rating scored then learnt on its own.
  ``river_logreg_auc_at_batch``: the same LR scoring a whole micro-batch of 512 before learning
  it, the label delay our trainer works with, so the two can be told apart.
- ``batch_auc``: our default model class trained offline on the first 80 % (3 shuffled epochs,
  batches of 512) and scored on the last 20 %; ``auc_last20``, ``river_best_auc_last20``: the
  progressive figures on that same last 20 % (the value of freshness on real data).
- ``services_auc``: a prefix of the ratings (``services_ratings``) sent through ``serve``,
  ``join`` and ``train`` (``bench.replay_services``) at a steady ``services_rate``; AUC of the
  served scores on the examples the joiner emitted. ``auc_same_subset``: the in-process
  champion's AUC on exactly those ratings; ``services_ratio`` the first over the second.

``--quick`` replays the first ``QUICK_RATINGS`` in process and ``QUICK_SERVICES`` through the
services (the integration test); the full run all 100,000 and ``SERVICES_RATINGS``.
``--in-process`` leaves the services out (no Kafka or Redis needed): every figure but the
``services_*`` ones, which are absent.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from river import facto, linear_model, optim

from bench.common import running_stack
from bench.replay_services import REPLAY_SETTINGS, run_services
from config.settings import (
    GateSettings,
    JoinerSettings,
    ServingSettings,
    StackSettings,
    TrainerSettings,
    load,
)
from models.evaluation import auc, log_loss
from models.evaluation.metrics import auc_difference_z
from models.features.label_stats import LabelStats, enrich_in_time
from models.training.step import LabeledExample
from services.simulator import movielens
from services.simulator.progressive import (
    batch_trained,
    model_progressive,
    river_progressive,
    through_learner,
)
from services.trainer.build import new_model

QUICK_RATINGS = 12_000
QUICK_SERVICES = 10_000
SERVICES_RATINGS = 30_000
SERVICES_RATE = 250.0  # ratings (predict calls) per second through the services
SPLIT = 0.8  # the batch model trains on this share of the run's ratings, in time order
BATCH_EPOCHS = 3
RIVER_LR = 0.05
STATS_KEYS = ("user_id", "item_id")  # the label_stats_* figures: serving's statistics on


def river_models() -> dict[str, Any]:
    """Fresh river peers: LogisticRegression and FMClassifier, linear weights on SGD 0.05."""
    return {
        "river_logreg": linear_model.LogisticRegression(optimizer=optim.SGD(RIVER_LR)),
        "river_fm": facto.FMClassifier(weight_optimizer=optim.SGD(RIVER_LR), seed=0),
    }


def run(quick: bool = False, console: Console | None = None, in_process: bool = False,
        ) -> dict[str, Any]:
    console = console or Console(stderr=True, quiet=True)
    say = console.print
    stack = load(StackSettings)
    with console.status("MovieLens-100K (from the cache, or the recbole wheel on PyPI)…"):
        ratings = movielens.load((stack.cache_dir or stack.home / "cache").resolve())
    if quick:
        ratings = ratings[:QUICK_RATINGS]
    n, split = len(ratings), int(SPLIT * len(ratings))
    stream = [LabeledExample(f"r{i}", r.label, r.features()) for i, r in enumerate(ratings)]
    labels = np.asarray([e.label for e in stream], dtype=np.float64)
    settings, gate = load(TrainerSettings), load(GateSettings)
    serving, window = load(ServingSettings), load(JoinerSettings).attribution_window_ms

    def with_stats(keys: Sequence[str]) -> list[LabeledExample]:
        """The stream as serving would log it with label statistics of ``keys`` (none: as is):
        a click counted at its time, a non-click when its attribution window closes."""
        if not keys:
            return stream
        stats = LabelStats(keys, memory=serving.label_stats_memory,
                           prior=serving.label_stats_prior)
        rows = [(e.features, e.label, r.ts_ms) for e, r in zip(stream, ratings, strict=True)]
        return [LabeledExample(e.prediction_id, e.label, f)
                for e, f in zip(stream, enrich_in_time(stats, rows, window), strict=True)]

    seconds: dict[str, float] = {}
    river: dict[str, np.ndarray] = {}
    with _bars(console) as bar:
        with _timed(seconds, "in_process"):
            task = bar.add_task("default model, trainer's loop", total=n)
            served = through_learner(with_stats(serving.label_stats), settings, gate,
                                     times_ms=[r.ts_ms for r in ratings],
                                     advance=_advance(bar, task))
            task = bar.add_task(f"…with label stats of {', '.join(STATS_KEYS)}", total=n)
            stats_served = through_learner(with_stats(STATS_KEYS), settings, gate,
                                           times_ms=[r.ts_ms for r in ratings],
                                           advance=_advance(bar, task))
            alone = model_progressive(new_model(settings), stream,
                                      batch_size=settings.batch_size,
                                      advance=_advance(bar, bar.add_task(
                                          "default model alone", total=n)))
        with _timed(seconds, "river"):
            for name, model in river_models().items():
                river[name] = river_progressive(model, stream,
                                                advance=_advance(bar, bar.add_task(name, total=n)))
            at_batch = river_progressive(river_models()["river_logreg"], stream,
                                         batch_size=settings.batch_size)
        with _timed(seconds, "batch"):
            task = bar.add_task(f"batch model, {BATCH_EPOCHS} epochs", total=BATCH_EPOCHS * split)
            model = batch_trained(new_model(settings), stream[:split], epochs=BATCH_EPOCHS,
                                  batch_size=settings.batch_size, seed=settings.seed,
                                  advance=_advance(bar, task))
            batch_scores = model.predict_proba_many([e.features for e in stream[split:]])
    best = max(river, key=lambda name: auc(labels, river[name]))
    figures: dict[str, Any] = {
        "ratings": n, "positive_share": _round(float(labels.mean())),
        "auc": _round(auc(labels, served.champion)),
        "logloss": _round(log_loss(labels, served.champion)),
        "challenger_auc": _round(auc(labels, served.challenger)),
        "challenger_logloss": _round(log_loss(labels, served.challenger)),
        "label_stats": list(serving.label_stats),
        # The same loop with serving's label statistics of user_id and item_id on.
        "label_stats_auc": _round(auc(labels, stats_served.champion)),
        "label_stats_logloss": _round(log_loss(labels, stats_served.champion)),
        "model_auc_at_batch": _round(auc(labels, alone)),
        "model_logloss_at_batch": _round(log_loss(labels, alone)),
        "decisions": served.decisions, "promotions": served.promotions,
        "rejections": served.rejections, "guarded": served.guarded, "capped": served.capped,
        "alarms": served.alarms,
        **{f"{name}_auc": _round(auc(labels, s)) for name, s in river.items()},
        **{f"{name}_logloss": _round(log_loss(labels, s)) for name, s in river.items()},
        "river_best": best, "river_best_auc": _round(auc(labels, river[best])),
        "river_logreg_auc_at_batch": _round(auc(labels, at_batch)),
        "batch_auc": _round(auc(labels[split:], batch_scores)),
        "batch_logloss": _round(log_loss(labels[split:], batch_scores)),
        "auc_last20": _round(auc(labels[split:], served.champion[split:])),
        "challenger_auc_last20": _round(auc(labels[split:], served.challenger[split:])),
        "river_best_auc_last20": _round(auc(labels[split:], river[best][split:])),
    }
    say(f"in process, {n:,} ratings ({figures['positive_share']:.1%} liked): default model "
        f"({settings.model}) AUC {figures['auc']} log loss {figures['logloss']} (challenger "
        f"{figures['challenger_auc']}); {served.promotions} promotions, {served.rejections} "
        f"rejections; bot guard kept {served.guarded:,} from learning, per-user cap "
        f"{served.capped:,}; the model alone in the same micro-batches AUC "
        f"{figures['model_auc_at_batch']}; with label statistics of {', '.join(STATS_KEYS)} "
        f"AUC {figures['label_stats_auc']} log loss {figures['label_stats_logloss']}")
    say(f"river: logreg AUC {figures['river_logreg_auc']} (scoring {settings.batch_size} before "
        f"learning them: {figures['river_logreg_auc_at_batch']}), fm {figures['river_fm_auc']}")
    say(f"last {n - split:,} ratings: batch-trained on the first {split:,} AUC "
        f"{figures['batch_auc']}, default model progressive {figures['auc_last20']}, "
        f"{best} {figures['river_best_auc_last20']}")
    m = QUICK_SERVICES if quick else SERVICES_RATINGS
    if in_process:
        figures["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
        figures["config"] = {"quick": quick, "model": settings.model, "in_process": True}
        return figures
    with running_stack(), _timed(seconds, "services"):
        through = run_services(ratings[:m], SERVICES_RATE, console)
    y, same = through.labels, served.champion[through.index]
    figures.update({
        "services_auc": _round(auc(y, through.scores)),
        "services_logloss": _round(log_loss(y, through.scores)),
        "auc_same_subset": _round(auc(y, same)),
        "logloss_same_subset": _round(log_loss(y, same)),
        "services_ratio": _round(auc(y, through.scores) / auc(y, same)),
        # DeLong's paired z of services minus in process on the same examples.
        "services_delong_z": _round(auc_difference_z(y, through.scores, same)),
        "services_ratings": m, "services_served": through.served,
        "services_examples": int(y.size), "services_failed_calls": through.failed_calls,
        "services_label_mismatches": through.label_mismatches,
        "services_versions": len(through.versions),
        "services_rate": _round(m / through.seconds, 1),
    })
    say(f"services, first {m:,} ratings at {figures['services_rate']}/s: AUC "
        f"{figures['services_auc']} vs {figures['auc_same_subset']} in process on the same "
        f"{y.size:,} examples (ratio {figures['services_ratio']}); "
        f"{len(through.versions)} versions served")
    figures["targets"] = {
        "auc_at_least_river_best": _at_least(figures["auc"], figures["river_best_auc"]),
        "services_at_least_98pct": _at_least(figures["services_ratio"], 0.98),
    }
    figures["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    figures["config"] = {"quick": quick, "model": settings.model,
                         "batch_size": settings.batch_size, "split": SPLIT,
                         "batch_epochs": BATCH_EPOCHS, "river_lr": RIVER_LR,
                         "services_rate": SERVICES_RATE, "services_settings": REPLAY_SETTINGS}
    return figures


@contextmanager
def _bars(console: Console) -> Iterator[Progress]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        yield bar


def _advance(bar: Progress, task: TaskID) -> Callable[[int], None]:
    return lambda k: bar.advance(task, k)


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        seconds[name] = time.monotonic() - start


def _at_least(x: float | None, bound: float | None) -> bool:
    return x is not None and bound is not None and x >= bound


def _round(x: float | None, digits: int = 4) -> float | None:
    """``x`` rounded for the JSON; None for a figure that could not be measured."""
    return None if x is None or math.isnan(x) else round(x, digits)
