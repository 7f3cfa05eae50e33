"""Interactions learnt with no cross named: per-user taste under feature names we never saw.

The world: 60 users, each with a favourite of 6 genres, click with 0.4 on it and 0.04
elsewhere. The best model that ignores who the user is predicts the average, 0.1, for every
genre; only a model that learns user x genre can do better. The keys (``uid`` aside, which is
the contract's ``user_id``) are names no default configures.
"""

from __future__ import annotations

import numpy as np
import pytest

from models import build_model
from models.evaluation import log_loss
from models.learners.base import Model

USERS, GENRES = 60, 6


def taste_world(n: int, seed: int) -> tuple[list[dict[str, object]], np.ndarray, np.ndarray]:
    """``n`` examples of the world above: features, labels and the true p."""
    rng = np.random.default_rng(seed)
    favourite = np.random.default_rng(0).integers(GENRES, size=USERS)
    users = rng.integers(USERS, size=n)
    genres = rng.integers(GENRES, size=n)
    p = np.where(favourite[users] == genres, 0.4, 0.04)
    labels = (rng.random(n) < p).astype(np.int64)
    batch = [{"user_id": f"u{u}", "shelf": f"g{g}", "ctx_a": ["web", "app"][int(u) % 2],
              "item_id": f"i{g}-{rng.integers(50)}"} for u, g in zip(users, genres, strict=True)]
    return batch, labels, p


def regret(model: Model, seed: int = 9) -> float:
    """Mean log loss above the truth's on fresh examples, after 12,288 examples learnt."""
    batch, labels, _ = taste_world(12_288, seed=1)
    for start in range(0, len(batch), 512):
        model.learn_many(batch[start:start + 512], labels[start:start + 512])
    test, y, p = taste_world(4_000, seed=seed)
    scores = model.predict_proba_many(test)
    return float(log_loss(y, scores) - log_loss(y, p))


def nonpersonal_regret(seed: int = 9) -> float:
    """The regret of the best prediction that ignores the user: the click rate, 0.1."""
    test, y, p = taste_world(4_000, seed=seed)
    return float(log_loss(y, np.full(len(y), 0.1)) - log_loss(y, p))


@pytest.mark.parametrize("name", ["logreg", "fm"])
def test_the_default_encoding_learns_per_user_taste_under_unknown_names(name: str) -> None:
    floor = nonpersonal_regret()
    assert floor > 0.07  # taste is worth learning here
    assert regret(build_model(name, hash_bits=14)) < 0.65 * floor


def test_without_the_anchor_a_logreg_learns_no_taste() -> None:
    floor = nonpersonal_regret()
    assert regret(build_model("logreg", hash_bits=14, cross_anchor=None)) > 0.95 * floor
