"""Fresh label statistics as features: each user's and each item's recent click rate.

A model learns per-user taste only through its weights, and serving sees new weights only
when the gate promotes a challenger: thousands of labels later. Users act in sessions (on
MovieLens-100K a user rates dozens of films in a row), so by then the session is over. Serving
therefore adds, to every candidate's features, what the labels so far say about its ``user_id``
and ``item_id`` (the contract's two ids, present in every example whatever the other features
are called), updated from ``examples`` as they arrive, with no training in between:

- ``_stat_ctr_<key>``: the log-odds of the key value's click rate over its last ``memory``
  labels (exponentially weighted), shrunk towards the overall rate by ``prior`` pseudo-labels,
  so a value never seen (a new user, a new item) gets the overall rate: a cold start that
  improves with every label, not at the next promotion;
- ``_stat_n_<key>``: ``log1p`` of the weighted label count behind it (how much to trust it).

The values are logged with the prediction like every other feature, so the trainer learns how
much each one is worth from what serving really used. ``memory`` makes it follow a change of
taste: a value's older labels weigh ``(1 - 1/memory)`` less with each new one.

Bounded: at most ``capacity`` key values are kept; the least recently updated go first.

Example:
    >>> stats = LabelStats(keys=("user_id",), memory=0, prior=2.0)
    >>> for y in (1, 1, 0, 1):
    ...     stats.update({"user_id": "u1", "item_id": "a"}, y)
    >>> f = stats.enrich({"user_id": "u1"})
    >>> stats.overall  # (3 + 1) / (4 + 2), Laplace
    0.6666666666666666
    >>> round(f["_stat_ctr_user_id"], 3), round(f["_stat_n_user_id"], 3)  # logit((3 + 2·⅔) / 6)
    (0.956, 1.609)
    >>> round(stats.enrich({"user_id": "new"})["_stat_ctr_user_id"], 3)  # logit(⅔)
    0.693
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Final

from models.errors import HyperparameterError

PREFIX: Final = "_stat_"  # feature keys serving adds; a client's keys with it are overwritten
DEFAULT_KEYS: Final = ("user_id", "item_id")


class LabelStats:
    """Recent click rates per key value (module docstring), the pure core of the feed.

    Args:
        keys: Feature keys whose values get statistics.
        memory: Labels a value remembers (exponential weighting); 0: all of them.
        prior: Pseudo-labels at the overall rate every value's rate is shrunk with.
        capacity: Key values kept at most (least recently updated evicted).
    """

    def __init__(self, keys: Sequence[str] = DEFAULT_KEYS, *, memory: float = 50.0,
                 prior: float = 5.0, capacity: int = 1_000_000) -> None:
        if memory < 0 or not prior > 0 or capacity < 1:
            raise HyperparameterError("label stats: need memory >= 0, prior > 0, capacity >= 1")
        self.keys = tuple(keys)
        self.memory = memory
        self.prior = prior
        self.capacity = capacity
        self._keep = 1.0 - 1.0 / memory if memory >= 1 else 1.0
        self._values: OrderedDict[tuple[str, Any], tuple[float, float]] = OrderedDict()
        self._clicks = 0.0
        self._labels = 0.0
        self._names = {k: (f"{PREFIX}ctr_{k}", f"{PREFIX}n_{k}") for k in self.keys}

    def __len__(self) -> int:
        return len(self._values)

    @property
    def overall(self) -> float:
        """The overall click rate so far (Laplace-smoothed: 0.5 before any label)."""
        return (self._clicks + 1.0) / (self._labels + 2.0)

    def update(self, features: Mapping[str, Any], label: int) -> None:
        """One label of an example whose (served) features were ``features``."""
        y = 1.0 if label else 0.0
        self._clicks += y
        self._labels += 1.0
        values = self._values
        for key in self.keys:
            value = features.get(key)
            if value is None:
                continue
            slot = (key, value)
            clicks, n = values.pop(slot, (0.0, 0.0))
            values[slot] = (self._keep * clicks + y, self._keep * n + 1.0)
            if len(values) > self.capacity:
                values.popitem(last=False)

    def enrich(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """``features`` plus the statistics of its keys (a new dict; the input is kept)."""
        out = dict(features)
        base = self.overall
        for key in self.keys:
            value = features.get(key)
            if value is None:
                continue
            clicks, n = self._values.get((key, value), (0.0, 0.0))
            rate = (clicks + self.prior * base) / (n + self.prior)
            ctr_name, n_name = self._names[key]
            out[ctr_name] = math.log(rate / (1.0 - rate))
            out[n_name] = math.log1p(n)
        return out

    def enrich_many(self, features: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``enrich`` of each."""
        return [self.enrich(f) for f in features]


def enrich_in_time(stats: LabelStats, stream: Sequence[tuple[Mapping[str, Any], int, int]],
                   window_ms: int) -> list[dict[str, Any]]:
    """Replay ``(features, label, ts_ms)`` in time order as serving would see it: each
    example enriched with what the labels *joined so far* say, a click joined at its own time
    and a non-click when its attribution window closes (``window_ms`` later), the joiner's
    semantics. Returns the enriched features, in order.

    Example:
        >>> stats = LabelStats(keys=("user_id",), memory=0)
        >>> rows = [({"user_id": "u"}, 0, 0), ({"user_id": "u"}, 1, 10), ({"user_id": "u"}, 0, 50)]
        >>> [round(f["_stat_n_user_id"], 3) for f in enrich_in_time(stats, rows, 30)]
        [0.0, 0.0, 1.099]
    """
    due: list[tuple[int, int, int]] = []  # (visible at, index, label)
    out: list[dict[str, Any]] = []
    for i, (features, label, ts) in enumerate(stream):
        while due and due[0][0] <= ts:
            _, j, y = heapq.heappop(due)
            stats.update(stream[j][0], y)
        out.append(stats.enrich(features))
        heapq.heappush(due, (ts if label else ts + window_ms, i, label))
    return out
