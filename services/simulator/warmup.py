"""A model trained on a scenario's early traffic: the champion a team deploys before the drift.

``warm_model`` shows ``k`` random candidates of each of ``requests`` requests from index
``start`` on (an exploration log: no ranking bias), draws each one's click from the truth,
and lets a fresh model learn them in micro-batches, in order. The demo registers it as the
first champion (trained on requests far from the ones it will send, under the ``stationary``
scenario: the world before any drift) and the quality benchmark starts every stage from it,
so "frozen" means a trained model left alone, not the cold-start prior.

Example:
    >>> from models import build_model
    >>> from services.simulator import build
    >>> scenario = build("stationary", seed=1)
    >>> world = scenario.world()
    >>> model = warm_model(build_model("logreg", hash_bits=10), scenario, world, requests=50)
    >>> 0.0 < float(model.predict_proba_many([{"item_category": "books"}])[0]) < 1.0
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models.learners.base import Model
from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator.naming import renamed
from services.simulator.scenarios import Scenario
from services.simulator.world import World


def warm_model(model: Model, scenario: Scenario, world: World, *, requests: int,
               start: int = 0, k: int = 5, batch_size: int = 512, seed: int = 0,
               names: Mapping[str, str] | None = None) -> Model:
    """``model`` after learning ``requests`` requests' worth of exploration labels (on the
    features serving would log for them, the client's keys renamed by ``names`` when given:
    ``services.simulator.naming``); returns the same object."""
    rng = np.random.default_rng([seed, 7])
    feats: list[dict[str, Any]] = []
    labels: list[int] = []
    for n in range(start, start + requests):
        request = scenario.request(world, n)
        body = request.body() if names is None else renamed(request.body(), names)
        features = model_features(PredictRequest.model_validate(body))
        for i in rng.choice(len(features), size=min(k, len(features)), replace=False):
            feats.append(features[i])
            labels.append(int(rng.random() < request.true_p[i]))
        if len(feats) >= batch_size:
            model.learn_many(feats, labels)
            feats, labels = [], []
    if feats:
        model.learn_many(feats, labels)
    return model
