"""Exploration in serving: which candidate gets which slot, and with what probability.

A ranking that only ever shows what the model already likes never learns that it stopped
being liked (a degenerate feedback loop). Serving therefore may explore over the first
``slots`` positions, one slot at a time, and logs for every candidate the *propensity* with
which it got its slot, given the slots before it, and the policy that chose it. That
probability is what off-policy estimates (inverse propensity scoring) need, and it is only
right when it is logged at the moment of the choice, never re-learnt afterwards.

Policies (``Exploration.policy``):

- ``none``: best score first; every propensity is 1.
- ``epsilon``: each slot takes the best remaining candidate with probability 1 − ε, else one
  drawn uniformly from the remaining ones (the greedy one included). The chosen candidate's
  propensity is (1 − ε)·[it is the best remaining] + ε / remaining.
- ``softmax``: each slot draws from the remaining candidates with probability proportional to
  ``exp(logit(score) / temperature)`` (Plackett–Luce); the propensity is that probability.
- ``thompson``: each slot takes the remaining candidate with the highest log-odds drawn from
  the model's posterior, ``N(logit(score), (temperature · std)²)`` with ``std`` the model's
  uncertainty about each candidate (``Model.logit_std_many``: a feature it has seen little
  is uncertain, so new items get tried and known ones rarely). The propensity has no closed
  form: it is the share of ``THOMPSON_DRAWS`` + 1 joint draws (the one that chose included,
  so never 0) in which the chosen candidate comes first, an unbiased estimate of it.

Past ``slots`` the rest follows by score, propensity 1: given the slots before, that order is
certain. Ties keep request order.

Example:
    >>> import numpy as np
    >>> scores = np.array([0.1, 0.4, 0.2])
    >>> r = rank(scores, Exploration(), np.random.default_rng(0))
    >>> r.order, r.propensity, r.explored
    ([1, 2, 0], [1.0, 1.0, 1.0], [False, False, False])
    >>> r = rank(scores, Exploration("epsilon", epsilon=1.0, slots=1), np.random.default_rng(1))
    >>> r.order, [round(p, 3) for p in r.propensity], r.explored, round(r.cost, 2)
    ([0, 1, 2], [0.333, 1.0, 1.0], [True, False, False], 0.3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import numpy as np

from models.evaluation.metrics import EPS
from models.learners.base import Model
from services.errors import ServicesError

Policy = Literal["none", "epsilon", "softmax", "thompson"]
POLICIES: Final[tuple[Policy, ...]] = get_args(Policy)
THOMPSON_DRAWS: Final = 255  # draws per slot that estimate a Thompson propensity


class ExplorationError(ServicesError, ValueError):
    """An exploration setting outside its range."""


@dataclass(frozen=True)
class Exploration:
    """How serving explores (``serving.exploration*`` settings).

    Attributes:
        policy: ``none``, ``epsilon``, ``softmax`` or ``thompson``.
        epsilon: Per-slot probability of a uniform draw (``epsilon``).
        temperature: Softmax temperature on the scores' log-odds (``softmax``), or the scale
            of the posterior's spread (``thompson``); smaller is greedier.
        slots: Leading positions that may be explored (what a client typically shows).
    """

    policy: Policy = "none"
    epsilon: float = 0.05
    temperature: float = 0.5
    slots: int = 5

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ExplorationError(f"unknown exploration policy {self.policy!r}; "
                                   f"known: {', '.join(POLICIES)}")
        if not 0.0 <= self.epsilon <= 1.0 or self.temperature <= 0.0 or self.slots < 1:
            raise ExplorationError("need 0 <= epsilon <= 1, temperature > 0 and slots >= 1")


def exploration_of(settings: Any) -> Exploration:
    """The ``Exploration`` of the serving settings' ``exploration*`` fields."""
    return Exploration(settings.exploration, settings.exploration_epsilon,
                       settings.exploration_temperature, settings.exploration_slots)


@dataclass(frozen=True)
class Ranking:
    """One request's ranking.

    Attributes:
        order: Candidate indices, best slot first.
        propensity: Per slot (aligned with ``order``), the probability that its candidate got
            it, given the slots before.
        explored: Per slot, whether the candidate is not the one the scores alone would
            have put there.
        cost: Predicted clicks given up for exploration: over the explored slots, the best
            remaining score minus the chosen one.
        ranked: Leading slots the policy drew (0 under ``none``).
    """

    order: list[int]
    propensity: list[float]
    explored: list[bool]
    cost: float
    ranked: int = 0


def uncertainty(model: Model, features: Sequence[Mapping[str, Any]], cfg: Exploration,
                ) -> np.ndarray | None:
    """What ``rank`` needs of the model besides its scores: under ``thompson``, its
    ``logit_std_many`` (None, a uniform spread, for a model without one); else None."""
    if cfg.policy != "thompson":
        return None
    try:
        return model.logit_std_many(features)
    except NotImplementedError:
        return None


def rank(scores: np.ndarray, cfg: Exploration, rng: np.random.Generator | None,
         std: np.ndarray | None = None) -> Ranking:
    """Order the candidates of one request under ``cfg``, with each slot's propensity.

    ``std`` is the model's uncertainty about each candidate's log-odds (``thompson``; None:
    1 for every candidate, a uniform spread).

    Raises:
        ExplorationError: A policy that draws was given no generator to draw from.
    """
    greedy = np.argsort(-scores, kind="stable").tolist()
    if cfg.policy == "none" or len(greedy) < 2:
        return Ranking(greedy, [1.0] * len(greedy), [False] * len(greedy), 0.0)
    if rng is None:
        raise ExplorationError(f"exploration policy {cfg.policy!r} needs a random generator")
    remaining = list(greedy)  # best first, always
    order: list[int] = []
    propensity: list[float] = []
    explored: list[bool] = []
    cost = 0.0
    # Only the drawing policies read the log-odds (and Thompson the spread): not ε-greedy.
    logits = None if cfg.policy == "epsilon" else _logits(scores)
    spread = cfg.temperature * (np.ones(len(greedy)) if std is None
                                else np.asarray(std, dtype=np.float64))
    for _ in range(min(cfg.slots, len(greedy))):
        if logits is None:
            pick, p = _epsilon(remaining, cfg.epsilon, rng)
        elif cfg.policy == "softmax":
            pick, p = _softmax(remaining, logits / cfg.temperature, rng)
        else:
            pick, p = _thompson(remaining, logits, spread, rng)
        best, chosen = remaining[0], remaining.pop(pick)
        order.append(chosen)
        propensity.append(p)
        explored.append(pick != 0)
        cost += float(scores[best] - scores[chosen])
    ranked = len(order)
    order += remaining
    propensity += [1.0] * len(remaining)
    explored += [False] * len(remaining)
    return Ranking(order, propensity, explored, cost, ranked)


def _epsilon(remaining: list[int], epsilon: float, rng: np.random.Generator,
             ) -> tuple[int, float]:
    n = len(remaining)
    pick = int(rng.integers(n)) if rng.random() < epsilon else 0
    return pick, (1.0 - epsilon) * (pick == 0) + epsilon / n


def _softmax(remaining: list[int], logits: np.ndarray, rng: np.random.Generator,
             ) -> tuple[int, float]:
    z = logits[remaining]
    w = np.exp(z - z.max())
    p = w / w.sum()
    pick = int(rng.choice(len(remaining), p=p))
    return pick, float(p[pick])


def _thompson(remaining: list[int], logits: np.ndarray, spread: np.ndarray,
              rng: np.random.Generator) -> tuple[int, float]:
    mean, sd = logits[remaining], spread[remaining]
    draws = mean + sd * rng.standard_normal((THOMPSON_DRAWS + 1, len(remaining)))
    winners = draws.argmax(axis=1)
    pick = int(winners[0])  # the first draw chooses; all of them estimate its probability
    return pick, float(np.count_nonzero(winners == pick)) / len(winners)


def _logits(scores: np.ndarray) -> np.ndarray:
    q = np.clip(scores.astype(np.float64), EPS, 1.0 - EPS)  # the gate's clipping
    return np.log(q) - np.log1p(-q)
