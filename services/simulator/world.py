"""The simulated world: users, items, context and the true click probability.

A ``World`` is a fixed, seeded population. Users carry a latent preference vector, items a
category, a latent attribute vector, a popularity and a price. What changes over a run (which
category is in favour, the hour of day, who is active, bots) is a ``State`` handed in by a
scenario (``services.simulator.scenarios``), so the same world can be replayed under any of them.

The true click probability of a genuine user ``u`` for item ``i`` in context ``x`` is::

    logit = base + taste * cos(2π (category(i) - phase) / C)       # which categories are in favour
          + affinity * <user(u), item(i)> / sqrt(d)               # personal taste
          + popularity * z(log pop(i))                            # popular items are clicked more
          + device(x) + hour_amplitude * cos(2π (hour(x) - peak(category(i))) / 24)
    p = sigmoid(logit)

``population_p`` averages the genuine users' truth over the users who can send requests: the
best prediction for someone who knows every term above except who the user is, so its log loss
above the truth's is the part of the regret only a model that learns per-user taste can remove.
Bots click everything they are shown with ``bot_click_p``. Every draw of request ``n`` comes from
its own generator seeded by ``(seed, n)``, so request ``n`` is the same whatever was drawn before.

Example:
    >>> world = World.create(WorldConfig(n_users=50, n_items=40), seed=7)
    >>> a = world.request(3, State(hour=9))
    >>> a == world.request(3, State(hour=9))
    True
    >>> a.context["hour"], len(a.candidates), all(0.0 < p < 1.0 for p in a.true_p)
    (9, 20, True)
    >>> sorted(a.body()["candidates"][0]["features"])
    ['item_category', 'price']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.errors import ServicesError

DEVICES = ("mobile", "desktop", "tablet")
CATEGORIES = ("shoes", "books", "toys", "garden", "music", "games", "beauty", "sports")
_P_MIN, _P_MAX = 1e-6, 1.0 - 1e-6  # the truth stays strictly inside (0, 1)


class SimulatorError(ServicesError, ValueError):
    """A simulator configuration or scenario that cannot be built."""


@dataclass(frozen=True)
class WorldConfig:
    """The static population and the weights of the true click model."""

    n_users: int = 1_000
    n_items: int = 400
    # Extra users/items beyond the first n_* that cold-start scenarios slide into view.
    new_users: int = 10_000
    new_items: int = 2_000
    n_bots: int = 20
    dim: int = 8
    categories: tuple[str, ...] = CATEGORIES
    candidates: int = 20
    base_logit: float = -3.5
    affinity: float = 1.0
    popularity: float = 0.3
    device_effect: tuple[float, ...] = (0.2, 0.0, -0.2)  # aligned with DEVICES
    device_mix: tuple[float, ...] = (0.6, 0.3, 0.1)
    bot_click_p: float = 0.95

    def __post_init__(self) -> None:
        if min(self.n_users, self.n_items, self.dim, self.candidates) < 1:
            raise SimulatorError("n_users, n_items, dim and candidates must be at least 1")
        if self.candidates > self.n_items:
            raise SimulatorError(f"candidates={self.candidates} > n_items={self.n_items}")
        if len(self.categories) < 2:
            raise SimulatorError("at least two categories are needed")
        if len(self.device_effect) != len(DEVICES) or len(self.device_mix) != len(DEVICES):
            raise SimulatorError(f"device_effect and device_mix need one value per {DEVICES}")
        if not 0.0 < self.bot_click_p < 1.0:
            raise SimulatorError("bot_click_p must be inside (0, 1)")


@dataclass(frozen=True)
class State:
    """What a scenario sets at one request index; the world's population does not change.

    Attributes:
        taste_phase: position of the favourite category on the category circle (0 = the first
            category; ``C/2`` = the opposite one).
        taste_strength: how much the favourite category is preferred (logit units).
        hour: the simulated hour of day, 0..23.
        hour_amplitude: strength of the hour-of-day x category effect (0 = none).
        rate: traffic multiplier for the driver (1 = the configured rate).
        user_offset: first active user; users ``[offset, offset + n_users)`` send requests.
        item_offset: first live item; items ``[offset, offset + n_items)`` are candidates.
        bot_share: probability that a request comes from a bot.
    """

    taste_phase: float = 0.0
    taste_strength: float = 1.5
    hour: int = 12
    hour_amplitude: float = 0.0
    rate: float = 1.0
    user_offset: int = 0
    item_offset: int = 0
    bot_share: float = 0.0


@dataclass(frozen=True)
class Request:
    """One predict call: who asks, in which context, about which candidates, and the truth."""

    index: int
    user_id: str
    is_bot: bool
    context: dict[str, Any]
    candidates: tuple[dict[str, Any], ...]
    true_p: tuple[float, ...]
    _truth: dict[str, float] = field(repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._truth.update(zip((c["item_id"] for c in self.candidates), self.true_p,
                               strict=True))

    def p(self, item_id: str) -> float:
        """The true click probability of a candidate of this request."""
        return self._truth[item_id]

    def body(self) -> dict[str, Any]:
        """The ``POST /v1/predict`` body (CONTRACT.md)."""
        return {"user_id": self.user_id, "context": dict(self.context),
                "candidates": [dict(c, features=dict(c["features"])) for c in self.candidates]}


@dataclass(frozen=True, eq=False)
class World:
    """A seeded population; build it with ``World.create``."""

    config: WorldConfig
    seed: int
    users: np.ndarray  # (n_users + new_users, dim)
    items: np.ndarray  # (n_items + new_items, dim)
    category: np.ndarray  # (items,) category index
    log_pop: np.ndarray  # (items,) standardised log popularity
    price: np.ndarray  # (items,)

    @classmethod
    def create(cls, config: WorldConfig | None = None, seed: int = 0) -> World:
        cfg = config or WorldConfig()
        rng = np.random.default_rng([seed, 0])
        n_items = cfg.n_items + cfg.new_items
        users = rng.normal(size=(cfg.n_users + cfg.new_users, cfg.dim))
        items = rng.normal(size=(n_items, cfg.dim))
        category = rng.integers(0, len(cfg.categories), size=n_items)
        log_pop = rng.normal(size=n_items)  # popularity is log-normal: a few items dominate
        price = np.round(np.exp(rng.normal(3.0, 0.6, size=n_items)), 2)
        return cls(cfg, seed, users, items, category, log_pop, price)

    def item_id(self, i: int) -> str:
        return f"i{i}"

    def item_index(self, item_id: str) -> int:
        """The item index behind ``item_id`` (the inverse of ``item_id``)."""
        return int(item_id[1:])

    def category_name(self, i: int) -> str:
        return self.config.categories[int(self.category[i])]

    def true_p(self, user: int | None, items: np.ndarray, device: str, hour: int,
               state: State) -> np.ndarray:
        """True click probabilities of ``user`` (None = a bot) for item indices ``items``."""
        cfg = self.config
        if user is None:
            return np.full(len(items), cfg.bot_click_p)
        personal = self.items[items] @ self.users[user]
        return _probability(self._logit(items, device, hour, state, personal[:, None]))[:, 0]

    def population_p(self, items: np.ndarray, device: str, hour: int,
                     state: State) -> np.ndarray:
        """True click probabilities for item indices ``items`` averaged over the genuine users
        who can send requests in ``state``: the best prediction of someone who knows every
        term of the truth except who the user is (no bots).

        Example:
            >>> world = World.create(WorldConfig(n_users=30, n_items=40), seed=3)
            >>> state, items = State(user_offset=5), np.array([0, 7, 12])
            >>> one_by_one = np.mean([world.true_p(u, items, "tablet", 12, state)
            ...                       for u in world.active_users(state)], axis=0)
            >>> bool(np.allclose(world.population_p(items, "tablet", 12, state), one_by_one,
            ...                  rtol=1e-12, atol=0.0))
            True
        """
        personal = self.items[items] @ self.users[self.active_users(state)].T  # items x users
        p: np.ndarray = _probability(self._logit(items, device, hour, state, personal)).mean(axis=1)
        return p

    def active_users(self, state: State) -> np.ndarray:
        """The genuine users ``request`` draws from in ``state`` (cold start slides the range).

        Example:
            >>> world = World.create(WorldConfig(n_users=3, new_users=4), seed=0)
            >>> world.active_users(State(user_offset=2)).tolist()
            [2, 3, 4]
            >>> world.active_users(State(user_offset=99)).tolist()  # the offset stops at new_users
            [4, 5, 6]
        """
        lo = self._first_user(state)
        return np.arange(lo, lo + self.config.n_users)

    def _first_user(self, state: State) -> int:
        return min(state.user_offset, self.config.new_users)

    def _logit(self, items: np.ndarray, device: str, hour: int, state: State,
               personal: np.ndarray) -> np.ndarray:
        """The true logit, items x users, given ``personal`` = <item, user> (items x users)."""
        cfg = self.config
        n_cat = len(cfg.categories)
        cat = self.category[items][:, None]
        logit = (cfg.base_logit
                 + state.taste_strength * np.cos(2 * math.pi * (cat - state.taste_phase) / n_cat)
                 + cfg.affinity * personal / math.sqrt(cfg.dim)
                 + cfg.popularity * self.log_pop[items][:, None]
                 + cfg.device_effect[DEVICES.index(device)])
        if state.hour_amplitude:
            peak = cat * 24.0 / n_cat  # each category has its own best hour
            logit = logit + state.hour_amplitude * np.cos(2 * math.pi * (hour - peak) / 24)
        return np.asarray(logit)

    def request(self, index: int, state: State) -> Request:
        """Request ``index`` under ``state``: the same arguments always give the same request."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, 1, index])
        is_bot = cfg.n_bots > 0 and rng.random() < state.bot_share
        user: int | None
        if is_bot:
            user, user_id = None, f"bot{rng.integers(cfg.n_bots)}"
        else:
            # The same draw as active_users(state)[k], without building the range per request.
            user = self._first_user(state) + int(rng.integers(cfg.n_users))
            user_id = f"u{user}"
        device = DEVICES[int(rng.choice(len(DEVICES), p=_normalised(cfg.device_mix)))]
        lo = min(state.item_offset, cfg.new_items)
        live = np.arange(lo, lo + cfg.n_items)
        weights = np.exp(self.log_pop[live])  # candidates are drawn by popularity
        items = rng.choice(live, size=cfg.candidates, replace=False, p=weights / weights.sum())
        true_p = self.true_p(user, items, device, state.hour, state)
        candidates = tuple(
            {"item_id": self.item_id(int(i)),
             "features": {"item_category": self.category_name(int(i)),
                          "price": float(self.price[i])}}
            for i in items)
        return Request(index, user_id, bool(is_bot), {"device": device, "hour": state.hour},
                       candidates, tuple(float(p) for p in true_p))


def _probability(logit: np.ndarray) -> np.ndarray:
    p: np.ndarray = np.clip(1.0 / (1.0 + np.exp(-logit)), _P_MIN, _P_MAX)
    return p


def _normalised(weights: tuple[float, ...]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()
