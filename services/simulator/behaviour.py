"""How simulated users react to a served ranking: what they see, what they click, and when.

``respond`` takes a request (with its truth) and the ``predictions`` of the ``POST /v1/predict``
response (sorted best first), shows the top ``k`` (with probability ``epsilon`` a uniformly random
``k`` of the candidates instead: exploration), draws each shown item's click from its true
probability, and returns the ``POST /v1/events`` events with their timestamps plus the truth of
every served prediction. There is no position bias: a shown item is clicked with exactly its
true p, so the accounting compares scores with the probability behind the labels.

An impression follows the response after a short uniform delay; a click follows its impression
after a log-normal delay (median ``click_delay_median_ms``), capped at ``click_delay_cap_ms``, so
labels arrive late as in production. ``EventQueue`` holds the events until they are due.

Example:
    >>> from services.simulator.world import State, World, WorldConfig
    >>> world = World.create(WorldConfig(n_users=5, n_items=10, candidates=3), seed=0)
    >>> req = world.request(0, State())
    >>> preds = [{"prediction_id": f"p{r}", "item_id": c["item_id"], "score": 0.1, "rank": r}
    ...          for r, c in enumerate(req.candidates, 1)]
    >>> out = respond(req, preds, 1_763_800_000_000, Behaviour(k=2), seed=0)
    >>> sorted(e["prediction_id"] for e in out.events if e["type"] == "impression")
    ['p1', 'p2']
    >>> [t.shown for t in out.truths]
    [True, True, False]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.simulator.world import Request, SimulatorError


@dataclass(frozen=True)
class Behaviour:
    """What users see and how late they act."""

    k: int = 5
    epsilon: float = 0.0
    impression_delay_max_ms: int = 300
    click_delay_median_ms: float = 3_000.0
    click_delay_sigma: float = 0.8
    click_delay_cap_ms: int = 25_000  # below the demo's 30 s attribution window

    def __post_init__(self) -> None:
        if self.k < 1:
            raise SimulatorError("k must be at least 1")
        if not 0.0 <= self.epsilon <= 1.0:
            raise SimulatorError("epsilon must be in [0, 1]")
        if self.impression_delay_max_ms < 0 or self.click_delay_cap_ms < 1:
            raise SimulatorError("delays must be >= 0 and the click delay cap >= 1 ms")
        if self.click_delay_median_ms <= 0 or self.click_delay_sigma < 0:
            raise SimulatorError("click_delay_median_ms must be > 0 and sigma >= 0")


@dataclass(frozen=True)
class Truth:
    """One served prediction with what the simulator knows about it."""

    prediction_id: str
    item_id: str
    score: float
    rank: int
    true_p: float
    shown: bool
    clicked: bool
    genuine: bool  # False for a bot's request


@dataclass(frozen=True)
class Outcome:
    """Events of one response (sorted by ``ts``) and the truth of each served prediction."""

    events: tuple[dict[str, Any], ...]
    truths: tuple[Truth, ...]

    @property
    def shown(self) -> tuple[Truth, ...]:
        return tuple(t for t in self.truths if t.shown)


def click_delays(n: int, behaviour: Behaviour, rng: np.random.Generator) -> np.ndarray:
    """``n`` click delays in ms: log-normal around the median, at least 1, at most the cap."""
    raw = rng.lognormal(math.log(behaviour.click_delay_median_ms), behaviour.click_delay_sigma,
                        size=n)
    delays: np.ndarray = np.clip(np.rint(raw), 1, behaviour.click_delay_cap_ms).astype(np.int64)
    return delays


def respond(request: Request, predictions: Sequence[Mapping[str, Any]], served_ts_ms: int,
            behaviour: Behaviour, seed: int = 0) -> Outcome:
    """Show, click and time the events for one response; draws are seeded by
    ``(seed, request.index)``, so a replay with the same ranking gives the same events.

    Args:
        request: the request the predictions answer (its ``true_p`` is the truth).
        predictions: the response's predictions, best first (``prediction_id, item_id, score,
            rank``).
        served_ts_ms: when the response arrived, epoch ms; every event is later.
        behaviour: top-k, exploration and delays.
        seed: the run's seed.
    """
    rng = np.random.default_rng([seed, 2, request.index])
    n = len(predictions)
    if n and rng.random() < behaviour.epsilon:
        shown = set(rng.choice(n, size=min(behaviour.k, n), replace=False).tolist())
    else:
        shown = set(range(min(behaviour.k, n)))
    u_click = rng.random(size=n)
    u_imp = rng.integers(0, behaviour.impression_delay_max_ms + 1, size=n)
    delays = click_delays(n, behaviour, rng)
    events: list[dict[str, Any]] = []
    truths = []
    for i, pred in enumerate(predictions):
        pid, item = str(pred["prediction_id"]), str(pred["item_id"])
        p = request.p(item)
        clicked = i in shown and bool(u_click[i] < p)
        if i in shown:
            ts_imp = served_ts_ms + 1 + int(u_imp[i])  # strictly after the prediction
            events.append({"event_id": f"{pid}-i", "type": "impression", "prediction_id": pid,
                           "ts": ts_imp})
            if clicked:
                events.append({"event_id": f"{pid}-c", "type": "click", "prediction_id": pid,
                               "ts": ts_imp + int(delays[i])})
        truths.append(Truth(pid, item, float(pred["score"]), int(pred.get("rank", i + 1)), p,
                            i in shown, clicked, not request.is_bot))
    events.sort(key=lambda e: e["ts"])
    return Outcome(tuple(events), tuple(truths))


@dataclass
class EventQueue:
    """Events waiting for their timestamp; ``due(now)`` pops those at or before ``now``.

    Example:
        >>> q = EventQueue()
        >>> q.push([{"ts": 5, "event_id": "b"}, {"ts": 2, "event_id": "a"}])
        >>> [e["event_id"] for e in q.due(4)], len(q)
        (['a'], 1)
    """

    _heap: list[tuple[int, int, dict[str, Any]]] = field(default_factory=list)
    _seq: int = 0

    def push(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            # The sequence number keeps equal timestamps in push order (and dicts uncompared).
            heapq.heappush(self._heap, (int(event["ts"]), self._seq, event))
            self._seq += 1

    def due(self, now_ms: int) -> list[dict[str, Any]]:
        out = []
        while self._heap and self._heap[0][0] <= now_ms:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def __len__(self) -> int:
        return len(self._heap)
