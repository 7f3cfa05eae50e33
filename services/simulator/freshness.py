"""The value of data freshness: the same model trained on older or newer data, judged on today's.

The experiment of the literature (e.g. Facebook's "Practical lessons from predicting clicks on
ads", Monolith's sync-interval study): in a world that keeps changing, train one model
configuration on a window of ``window`` requests ending ``lag`` requests before the newest
data, for several lags, and evaluate every model on the same newest ``evaluate`` requests. The
log loss grows with the lag by what the staleness costs. Labels come from the truth (every
candidate of a request is shown in random order: an exploration log), so the models differ only
in the age of what they learnt.

Example:
    >>> from services.simulator import build
    >>> rows = freshness(build("gradual", seed=1, drift_at=0, duration=400), "logreg",
    ...                  {"hash_bits": 10}, lags=(0, 300), window=150, evaluate=50, k=5)
    >>> [r.lag for r in rows], all(r.log_loss > r.optimal for r in rows)
    ([0, 300], True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.evaluation.metrics import log_losses
from models.learners.factory import build_model
from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator.scenarios import Scenario


@dataclass(frozen=True)
class FreshnessRow:
    lag: int  # requests between the end of the training window and the evaluated data
    log_loss: float  # on the newest data
    optimal: float  # the truth's on the same data
    examples: int  # trained on

    @property
    def regret(self) -> float:
        return self.log_loss - self.optimal


def _labelled(scenario: Scenario, indices: range, k: int, seed: int,
              ) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """Features, labels and true p of ``k`` random candidates of each request."""
    world = scenario.world()
    feats: list[dict[str, Any]] = []
    labels, truth = [], []
    for n in indices:
        request = scenario.request(world, n)
        features = model_features(PredictRequest.model_validate(request.body()))
        rng = np.random.default_rng([seed, 9, n])
        for i in rng.choice(len(features), size=min(k, len(features)), replace=False):
            feats.append(features[i])
            truth.append(request.true_p[i])
            labels.append(int(rng.random() < request.true_p[i]))
    return feats, np.asarray(labels, dtype=np.float64), np.asarray(truth)


def freshness(scenario: Scenario, model: str, hyperparams: dict[str, Any], *,
              lags: Sequence[int] = (0, 2_000, 4_000, 8_000, 16_000), window: int = 4_000,
              evaluate: int = 1_000, k: int = 5, batch_size: int = 512, seed: int = 0,
              on_lag: Callable[[FreshnessRow], None] = lambda row: None,
              ) -> list[FreshnessRow]:
    """One row per lag: a fresh ``model`` trained on ``window`` requests ending ``lag``
    requests before the ``evaluate`` newest ones, judged on those."""
    newest = max(lags) + window
    feats_eval, y_eval, p_eval = _labelled(scenario, range(newest, newest + evaluate), k, seed)
    optimal = float(log_losses(y_eval, p_eval).mean())
    rows = []
    for lag in sorted(lags):
        feats, y, _ = _labelled(scenario, range(newest - lag - window, newest - lag), k, seed)
        m = build_model(model, **hyperparams)
        for start in range(0, len(feats), batch_size):
            m.learn_many(feats[start:start + batch_size], y[start:start + batch_size])
        loss = float(log_losses(y_eval, m.predict_proba_many(feats_eval)).mean())
        row = FreshnessRow(lag, loss, optimal, len(feats))
        on_lag(row)
        rows.append(row)
    return rows


def plot(rows: Sequence[FreshnessRow], path: Path, title: str) -> Path:
    """Log loss on the newest data against the training data's lag, with the optimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    lags = [r.lag for r in rows]
    ax.plot(lags, [r.log_loss for r in rows], "o-", label="model trained on older data")
    ax.axhline(rows[0].optimal if rows else math.nan, color="grey", ls="--",
               label="optimal (true p)")
    ax.set_xlabel("lag of the training window (requests before the evaluated data)")
    ax.set_ylabel("log loss on the newest data")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
