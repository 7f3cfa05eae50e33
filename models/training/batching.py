"""Gathering a stream into micro-batches: size/age batching, dedup, the per-user cap.

Everything here is pure: the caller passes the clock (epoch milliseconds) as an argument, so
a test can replay any arrival pattern without sleeping, and the Kafka adapter uses its own
clock. Items are anything with ``prediction_id`` and ``features`` attributes (``Labeled`` in
``models.training.step``; ``streams.schemas.Example`` fits without models importing it).

Example:
    >>> batcher = MicroBatcher(batch_size=2, max_wait_ms=1_000)
    >>> batcher.add("a", now_ms=0) is None
    True
    >>> batcher.add("b", now_ms=10)
    ['a', 'b']
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")


class HasFeatures(Protocol):
    """Anything carrying a flat feature dict (the user id, if any, is ``features["user_id"]``)."""

    @property
    def features(self) -> Mapping[str, Any]: ...


F = TypeVar("F", bound=HasFeatures)


class MicroBatcher(Generic[T]):
    """Collects items until ``batch_size`` of them or until the oldest has waited ``max_wait_ms``.

    Age is measured from the first item of the current batch, with the clock the caller passes.
    ``add`` returns the completed batch, if this item completed one; ``poll`` lets an idle
    consumer close a batch whose time is up although nothing new arrived.

    Example:
        >>> b = MicroBatcher(batch_size=10, max_wait_ms=100)
        >>> b.add(1, now_ms=1_000), b.add(2, now_ms=1_050), b.deadline_ms
        (None, None, 1100)
        >>> b.poll(now_ms=1_099), b.poll(now_ms=1_100), len(b)
        (None, [1, 2], 0)
    """

    def __init__(self, batch_size: int = 512, max_wait_ms: int = 5_000) -> None:
        """Create an empty batcher.

        Raises:
            ValueError: ``batch_size`` < 1 or ``max_wait_ms`` < 0.
        """
        if batch_size < 1 or max_wait_ms < 0:
            raise ValueError(f"need batch_size >= 1 and max_wait_ms >= 0, got {batch_size}, "
                             f"{max_wait_ms}")
        self.batch_size = batch_size
        self.max_wait_ms = max_wait_ms
        self._items: list[T] = []
        self._first_ms: int | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def deadline_ms(self) -> int | None:
        """When the pending batch is due by age (None while empty): a consumer's poll timeout."""
        return None if self._first_ms is None else self._first_ms + self.max_wait_ms

    def add(self, item: T, now_ms: int) -> list[T] | None:
        """Append one item; return the batch if it is now full or old enough, else None."""
        if self._first_ms is None:
            self._first_ms = now_ms
        self._items.append(item)
        if len(self._items) >= self.batch_size:
            return self.flush()
        return self.poll(now_ms)

    def poll(self, now_ms: int) -> list[T] | None:
        """The pending batch if its oldest item has waited ``max_wait_ms``, else None."""
        deadline = self.deadline_ms
        if deadline is not None and now_ms >= deadline:
            return self.flush()
        return None

    def flush(self) -> list[T]:
        """Whatever is pending (possibly nothing), leaving the batcher empty."""
        items, self._items, self._first_ms = self._items, [], None
        return items


class SeenIds:
    """The recently trained ``prediction_id``s, so a redelivered example is not learnt twice.

    Bounded by count (oldest forgotten first) and optionally by age. Kafka redelivers only
    what was consumed after the last committed offset, so the bound needs to cover the
    examples in flight between two commits, not the whole history. The state (``to_state``)
    is a JSON-ready list of ``[prediction_id, seen_at_ms]`` pairs, oldest first: persist it
    with each batch's outcome and offsets, restore it with ``from_state``.

    Example:
        >>> seen = SeenIds(capacity=2)
        >>> seen.filter_new(["p1", "p2", "p1"], now_ms=0, key=str)
        (['p1', 'p2'], 1)
        >>> _ = seen.filter_new(["p3"], now_ms=1, key=str)
        >>> "p1" in seen, "p3" in seen, seen.to_state()
        (False, True, [['p2', 0], ['p3', 1]])
    """

    def __init__(self, capacity: int = 100_000, max_age_ms: int | None = None) -> None:
        """Create an empty set.

        Args:
            capacity: How many ids are remembered at most.
            max_age_ms: Ids older than this (by the caller's clock) are forgotten; None: never.

        Raises:
            ValueError: ``capacity`` < 1 or ``max_age_ms`` < 0.
        """
        if capacity < 1 or (max_age_ms is not None and max_age_ms < 0):
            raise ValueError(f"need capacity >= 1 and max_age_ms >= 0, got {capacity}, "
                             f"{max_age_ms}")
        self.capacity = capacity
        self.max_age_ms = max_age_ms
        self._ids: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, prediction_id: object) -> bool:
        return prediction_id in self._ids

    def add(self, prediction_id: str, now_ms: int) -> bool:
        """Remember one id; True if it was new (a repeat does not refresh its age)."""
        if prediction_id in self._ids:
            return False
        self._ids[prediction_id] = now_ms
        self._evict(now_ms)
        return True

    def filter_new(
        self, items: Iterable[T], now_ms: int, key: Callable[[T], str] | None = None
    ) -> tuple[list[T], int]:
        """Keep the items whose id was not seen (nor repeated earlier in ``items``); remember them.

        Args:
            items: Items in arrival order.
            now_ms: The caller's clock.
            key: Maps an item to its id; default ``item.prediction_id``.

        Returns:
            The new items in order, and how many were dropped as duplicates.
        """
        get = key or _prediction_id
        arrived = list(items)
        fresh = [item for item in arrived if self.add(get(item), now_ms)]
        return fresh, len(arrived) - len(fresh)

    def expire(self, now_ms: int) -> None:
        """Forget ids older than ``max_age_ms`` (``add`` does this too)."""
        self._evict(now_ms)

    def to_state(self) -> list[list[Any]]:
        """``[[prediction_id, seen_at_ms], ...]``, oldest first (JSON-ready)."""
        return [[pid, ts] for pid, ts in self._ids.items()]

    @classmethod
    def from_state(
        cls,
        state: Sequence[Sequence[Any]],
        capacity: int = 100_000,
        max_age_ms: int | None = None,
    ) -> SeenIds:
        """Rebuild from ``to_state`` output (the bounds may differ from the saved set's).

        Raises:
            ValueError: An entry is not an ``[id, ms]`` pair.
        """
        seen = cls(capacity, max_age_ms)
        for entry in state:
            if len(entry) != 2 or not isinstance(entry[0], str) or not isinstance(entry[1], int):
                raise ValueError(f"SeenIds state entries must be [id, ms], got {entry!r}")
            seen._ids[entry[0]] = entry[1]
        seen._evict(None)
        return seen

    def _evict(self, now_ms: int | None) -> None:
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        if self.max_age_ms is None or now_ms is None:
            return
        # Insertion order is clock order (the caller's clock only moves forward), so the
        # oldest ids sit at the front.
        horizon = now_ms - self.max_age_ms
        while self._ids and next(iter(self._ids.values())) < horizon:
            self._ids.popitem(last=False)


def cap_per_user(batch: Sequence[F], cap: int | None) -> tuple[list[F], int]:
    """The poisoning guard: at most ``cap`` examples per user in one micro-batch.

    The user is ``features["user_id"]``; examples without one are never capped. The first
    ``cap`` examples of each user, in batch order, are kept, so the result is deterministic.

    Args:
        batch: Examples in arrival order.
        cap: Examples kept per user (>= 1); None keeps everything.

    Returns:
        The kept examples in their original order, and how many were dropped.

    Raises:
        ValueError: ``cap`` < 1.

    Example:
        >>> from types import SimpleNamespace as X
        >>> batch = [X(features={"user_id": u}) for u in "aabaaa"] + [X(features={})] * 3
        >>> kept, dropped = cap_per_user(batch, cap=2)
        >>> "".join(x.features.get("user_id", "-") for x in kept), dropped
        ('aab---', 3)
    """
    if cap is None:
        return list(batch), 0
    if cap < 1:
        raise ValueError(f"per-user cap must be >= 1, got {cap}")
    counts: Counter[Any] = Counter()
    kept = []
    for example in batch:
        user = example.features.get("user_id")
        if user is not None:
            counts[user] += 1
            if counts[user] > cap:
                continue
        kept.append(example)
    return kept, len(batch) - len(kept)


class ClickGuard:
    """The second poisoning guard: users whose click rate no human has are not learnt from.

    Bots that click everything they are shown stay under a per-batch cap when there are many
    of them. This guard counts each user's labels and clicks over the stream (bounded: the
    ``max_users`` most recently seen) and drops the examples of a user with at least
    ``min_labels`` labels and a click rate of at least ``max_ctr``. The judgement is made on
    what was seen *before* the batch, so a user is never judged by the examples it is dropped
    from, and is revised as the user's record grows.

    Example:
        >>> from types import SimpleNamespace as X
        >>> guard = ClickGuard(max_ctr=0.6, min_labels=4)
        >>> bot = [X(label=1, features={"user_id": "b"}) for _ in range(5)]
        >>> human = [X(label=i % 5 == 0, features={"user_id": "h"}) for i in range(5)]
        >>> kept, dropped = guard.filter(bot + human)  # nobody has a record yet
        >>> len(kept), dropped
        (10, 0)
        >>> kept, dropped = guard.filter(bot + human)
        >>> {x.features["user_id"] for x in kept}, dropped, guard.flagged
        ({'h'}, 5, 1)
    """

    def __init__(self, max_ctr: float = 0.75, min_labels: int = 8,
                 max_users: int = 200_000) -> None:
        if not 0.0 < max_ctr <= 1.0 or min_labels < 1 or max_users < 1:
            raise ValueError("need 0 < max_ctr <= 1, min_labels >= 1 and max_users >= 1")
        self.max_ctr, self.min_labels, self.max_users = max_ctr, min_labels, max_users
        self._users: OrderedDict[Any, list[int]] = OrderedDict()  # user -> [labels, clicks]

    @property
    def flagged(self) -> int:
        """Users currently judged not human."""
        return sum(self._suspect(r) for r in self._users.values())

    def _suspect(self, record: list[int]) -> bool:
        return record[0] >= self.min_labels and record[1] >= self.max_ctr * record[0]

    def filter(self, batch: Sequence[F]) -> tuple[list[F], int]:
        """The batch without suspect users' examples, and how many were dropped; then the
        batch's labels join each user's record (``judge``, then ``record``)."""
        kept = self.judge(batch)
        self.record(batch)
        return kept, len(batch) - len(kept)

    def judge(self, batch: Sequence[F]) -> list[F]:
        """The batch without suspect users' examples; changes nothing (a caller whose next
        step may refuse the batch records it only once that step succeeded)."""
        suspects = {u for u in {e.features.get("user_id") for e in batch}
                    if u in self._users and self._suspect(self._users[u])}
        return [e for e in batch if e.features.get("user_id") not in suspects]

    def record(self, batch: Sequence[F]) -> None:
        """The batch's labels join each user's record (the most recent ``max_users`` kept)."""
        for e in batch:
            user = e.features.get("user_id")
            if user is None:
                continue
            record = self._users.pop(user, None) or [0, 0]
            record[0] += 1
            record[1] += int(e.label)  # type: ignore[attr-defined]
            self._users[user] = record
        while len(self._users) > self.max_users:
            self._users.popitem(last=False)


def _prediction_id(item: Any) -> str:
    return str(item.prediction_id)


class Stamped(Protocol):
    """An example with the times the joiner gives it (``streams.schemas.Example`` fits)."""

    @property
    def ts_prediction(self) -> int: ...

    @property
    def ts_label(self) -> int: ...


S = TypeVar("S", bound=Stamped)


class CohortBuffer(Generic[S]):
    """Releases examples by prediction time, once every label of their cohort is known.

    Why: the joiner emits a click's example when the click comes (seconds after the
    prediction) and a no-click's only when the window closes. In order of arrival, the
    examples of the last ``wait_ms`` are clicks of recent predictions mixed with no-clicks of
    older ones: right after a start almost only clicks, and after a drift the new world's
    clicks with the old world's no-clicks. A model learning that stream, and a gate judging
    calibration on it, see a click rate that is nobody's. Held until the label watermark (the
    latest ``ts_label`` seen) is ``wait_ms`` past their prediction, examples come out as whole
    cohorts, in prediction-time order, with the click rate of their time. The price: a click
    is learnt ``wait_ms`` later (a no-click about when it would have been anyway).

    ``wait_ms`` should cover the joiner's attribution window plus its allowed lateness (the
    trainer sets it so); 0 releases everything at once, in arrival order. When the stream
    stops, the watermark stops too: ``release(now_ms)`` then also lets out what is
    ``2 * wait_ms`` older than the caller's clock (the joiner has long emitted its labels).
    Memory: what arrives within ``wait_ms``, at most ``max_held`` (the oldest are released
    early beyond it, counted in ``forced``).

    Example:
        >>> from types import SimpleNamespace as E
        >>> buf = CohortBuffer(wait_ms=100)
        >>> buf.add(E(ts_prediction=0, ts_label=20, label=1))
        >>> buf.add(E(ts_prediction=10, ts_label=30, label=1))
        >>> buf.release()  # watermark 30: no cohort complete yet
        []
        >>> buf.add(E(ts_prediction=5, ts_label=105, label=0))  # 0's window closed at 100
        >>> [(e.ts_prediction, e.label) for e in buf.release()]  # watermark 105
        [(0, 1), (5, 0)]
        >>> len(buf), [e.ts_prediction for e in buf.held()]
        (1, [10])
        >>> [e.ts_prediction for e in buf.release(now_ms=300)]  # quiet for 2 * wait_ms
        [10]
    """

    def __init__(self, wait_ms: int, max_held: int = 200_000) -> None:
        if wait_ms < 0 or max_held < 1:
            raise ValueError("need wait_ms >= 0 and max_held >= 1")
        self.wait_ms, self.max_held = wait_ms, max_held
        self.watermark: int | None = None
        self.forced = 0
        self._heap: list[tuple[int, int, S]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, example: S) -> None:
        # wait_ms = 0: arrival order (the sequence number is the key).
        key = int(example.ts_prediction) if self.wait_ms else self._seq
        heapq.heappush(self._heap, (key, self._seq, example))
        self._seq += 1
        ts = int(example.ts_label)
        self.watermark = ts if self.watermark is None else max(self.watermark, ts)

    def release(self, now_ms: int | None = None) -> list[S]:
        """The examples whose cohort is complete, oldest prediction first."""
        out: list[S] = []
        if self.watermark is None:
            return out
        if not self.wait_ms:
            return [heapq.heappop(self._heap)[2] for _ in range(len(self._heap))]
        edge = self.watermark - self.wait_ms
        if now_ms is not None:
            edge = max(edge, now_ms - 2 * self.wait_ms)
        while self._heap and (self._heap[0][0] <= edge or len(self._heap) > self.max_held):
            if self._heap[0][0] > edge:
                self.forced += 1
            out.append(heapq.heappop(self._heap)[2])
        return out

    def held(self) -> list[S]:
        """What is held, in no particular order (e.g. to find the offsets still needed)."""
        return [item for _, _, item in self._heap]
