"""The simulator driver: the pure core's requests and clicks sent through the real API.

For request ``n`` the driver asks the scenario for the request, calls ``POST /v1/predict``,
lets ``respond`` draw what is shown and clicked, queues the events until their timestamp and
sends the due ones to ``POST /v1/events`` (at most 1,000 per call). Every shown prediction's
truth is kept in a ``LabelBook`` until its label is known as the joiner would know it: label 1
when its click (inside the attribution window) is sent, label 0 when the window has closed.
Each label feeds ``Accounting`` (served score vs a frozen copy of the initial champion vs the
true p), ``RecoveryTracker`` (after each drift point) and the CSV rows.

A failed or refused HTTP call is counted, never fatal: the run goes on with the next request.
``LabelBook`` and ``batches`` are pure; ``Driver`` does the I/O.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from models.evaluation import log_loss
from models.learners.base import Model
from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator.accounting import (
    Accounting,
    CtrTracker,
    RecoveryTracker,
    oracle_top_k,
)
from services.simulator.behaviour import Behaviour, EventQueue, respond
from services.simulator.scenarios import Scenario
from services.simulator.world import Request, World

MAX_EVENTS_PER_CALL = 1_000


def batches(events: Sequence[dict[str, Any]], size: int = MAX_EVENTS_PER_CALL,
            ) -> Iterator[list[dict[str, Any]]]:
    """``events`` in consecutive chunks of at most ``size`` (the API's limit per call).

    Example:
        >>> [len(b) for b in batches([{}] * 2_500)]
        [1000, 1000, 500]
    """
    for start in range(0, len(events), size):
        yield list(events[start:start + size])


@dataclass(frozen=True)
class Pending:
    """A shown prediction waiting for its label: the three scorers' probabilities."""

    index: int  # request index (drift points are request indices)
    served: float
    frozen: float
    optimal: float
    genuine: bool


@dataclass(frozen=True)
class Label:
    pending: Pending
    label: int
    at_ms: int  # when the label became known


@dataclass
class LabelBook:
    """Shown predictions until their label is known, resolved in time order.

    A prediction clicked at ``click_ts`` within ``window_ms`` of ``served_ts`` is labelled 1 at
    ``click_ts``; any other is labelled 0 at ``served_ts + window_ms`` (a later click is late
    and does not count, as in the joiner). Memory is bounded: beyond ``max_pending`` the
    earliest-due predictions are resolved at once (the label is the truth's anyway; only its
    timing in the series is early) and counted in ``forced``.

    Example:
        >>> book = LabelBook(window_ms=1_000)
        >>> p = Pending(0, served=0.1, frozen=0.1, optimal=0.1, genuine=True)
        >>> book.add(p, served_ts=0, click_ts=400)
        >>> book.add(p, served_ts=0, click_ts=1_500)  # after the window: a 0
        >>> book.add(p, served_ts=100, click_ts=None)
        >>> [(x.label, x.at_ms) for x in book.resolve(999)], len(book)
        ([(1, 400)], 2)
        >>> [(x.label, x.at_ms) for x in book.resolve(2_000)]
        [(0, 1000), (0, 1100)]
    """

    window_ms: int
    max_pending: int = 200_000
    forced: int = 0
    _heap: list[tuple[int, int, int, Pending]] = field(default_factory=list)
    _seq: int = 0

    def add(self, pending: Pending, served_ts: int, click_ts: int | None) -> None:
        clicked = click_ts is not None and click_ts - served_ts <= self.window_ms
        due = click_ts if clicked and click_ts is not None else served_ts + self.window_ms
        heapq.heappush(self._heap, (due, self._seq, int(clicked), pending))
        self._seq += 1

    def resolve(self, now_ms: int) -> list[Label]:
        """Labels known at ``now_ms`` (plus any forced out by the memory bound), in due order."""
        out = []
        while self._heap and (self._heap[0][0] <= now_ms or len(self._heap) > self.max_pending):
            due, _, label, pending = heapq.heappop(self._heap)
            if due > now_ms:
                self.forced += 1
            out.append(Label(pending, label, due))
        return out

    def drain(self) -> list[Label]:
        """Every remaining label (the end of a run: the truth is known)."""
        return self.resolve(math.inf)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._heap)


@dataclass
class Counts:
    requests: int = 0
    predictions: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    events_rejected: int = 0
    failed_calls: int = 0
    labels: int = 0
    clicks: int = 0
    genuine_labels: int = 0
    last_error: str = ""


ROW_FIELDS = ("labels", "requests", "elapsed_s", "system", "frozen", "optimal", "regret",
              "ctr", "ctr_expected", "ctr_oracle", "ctr_frozen", "champion", "promotions")


def frozen_scores(model: Model, body: dict[str, Any]) -> list[float]:
    """The frozen model's click probabilities for a predict body, in candidate order, on the
    features serving would give it (``model_features``)."""
    features = model_features(PredictRequest.model_validate(body))
    return [float(s) for s in model.predict_proba_many(features)]


class Driver:
    """Sends one scenario's traffic to the API and keeps the accounts.

    Args:
        http: A client whose ``base_url`` is the serving API.
        scenario, world, behaviour: What to send and how users react.
        frozen: The initial champion, never updated.
        window_ms: The joiner's attribution window.
        rate: Requests per second before ``scenario.state(n).rate`` (0 = as fast as possible).
        row_every: Labels between two rows of the time series.
        clock: Epoch seconds (injectable for tests).
    """

    def __init__(self, http: httpx.Client, scenario: Scenario, world: World,
                 behaviour: Behaviour, frozen: Model, window_ms: int, *, rate: float = 50.0,
                 seed: int = 0, row_every: int = 500, window: int = 1_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.http, self.scenario, self.world, self.behaviour = http, scenario, world, behaviour
        self.frozen, self.rate, self.seed, self.row_every = frozen, rate, seed, row_every
        self.clock = clock
        self.book = LabelBook(window_ms)
        self.queue = EventQueue()
        self.accounting = Accounting(window)
        self.ctr = CtrTracker(window)
        self.recovery = RecoveryTracker()
        self.recoveries: dict[int, int | None] = {}
        self._drifts = list(scenario.drift_points)
        self.counts = Counts()
        self.rows: list[dict[str, Any]] = []
        self.champion: str | None = None
        self.promotions = 0
        self._started = clock()
        self._next_row = row_every

    # -- HTTP ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, ok: int, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            self._fail(f"{method} {path}: {type(err).__name__}: {err}")
            return None
        if response.status_code != ok:
            self._fail(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
            return None
        try:
            return response.json()
        except ValueError as err:
            self._fail(f"{method} {path}: bad JSON: {err}")
            return None

    def _fail(self, message: str) -> None:
        self.counts.failed_calls += 1
        self.counts.last_error = message

    def poll_champion(self) -> None:
        """The champion serving's registry names; a change counts as a promotion."""
        body = self._call("GET", "/v1/models", 200)
        version = body.get("champion") if isinstance(body, dict) else None
        if version and self.champion and version != self.champion:
            self.promotions += 1
        self.champion = version or self.champion

    # -- one request -----------------------------------------------------------------------

    def step(self, index: int) -> None:
        """Request ``index``: predict, draw the behaviour, queue its events and labels."""
        request: Request = self.scenario.request(self.world, index)
        body = request.body()
        self.counts.requests += 1
        response = self._call("POST", "/v1/predict", 200, json=body)
        if not isinstance(response, dict) or not response.get("predictions"):
            return
        served_ts = int(self.clock() * 1000)
        predictions = response["predictions"]
        self.counts.predictions += len(predictions)
        outcome = respond(request, predictions, served_ts, self.behaviour, self.seed)
        by_frozen = frozen_scores(self.frozen, body)
        frozen = dict(zip((c["item_id"] for c in body["candidates"]), by_frozen, strict=True))
        clicks = {e["prediction_id"]: int(e["ts"]) for e in outcome.events
                  if e["type"] == "click"}
        for truth in outcome.shown:
            self.book.add(Pending(index, truth.score, frozen[truth.item_id], truth.true_p,
                                  truth.genuine), served_ts, clicks.get(truth.prediction_id))
        shown = outcome.shown
        frozen_top = np.argsort(-np.asarray(by_frozen), kind="stable")[: len(shown)]
        self.ctr.update([t.true_p for t in shown], sum(t.clicked for t in shown),
                        oracle_top_k(request.true_p, len(shown)),
                        [request.true_p[int(i)] for i in frozen_top])
        self.queue.push(list(outcome.events))

    def flush(self, now_ms: int | None = None, everything: bool = False) -> None:
        """Send the due events (all queued ones if ``everything``) and take the known labels."""
        now_ms = int(self.clock() * 1000) if now_ms is None else now_ms
        due = self.queue.due(2**62 if everything else now_ms)
        for chunk in batches(due):
            self.counts.events_sent += len(chunk)
            body = self._call("POST", "/v1/events", 202, json={"events": chunk})
            if isinstance(body, dict):
                self.counts.events_accepted += int(body.get("accepted", 0))
                self.counts.events_rejected += len(body.get("rejected", []))
        labels = self.book.drain() if everything else self.book.resolve(now_ms)
        for label in labels:
            self._label(label)

    def _label(self, label: Label) -> None:
        p = label.pending
        while self._drifts and p.index >= self._drifts[0]:
            # The first label of a post-drift request starts a recovery measure.
            self.recoveries[self._drifts.pop(0)] = None
            self.recovery.drift()
        self.accounting.update(label.label, p.served, p.frozen, p.optimal)
        recovered = self.recovery.update(log_loss(label.label, p.served),
                                         log_loss(label.label, p.optimal))
        if self.recoveries and recovered is not None:
            last = max(self.recoveries)
            if self.recoveries[last] is None:
                self.recoveries[last] = recovered
        self.counts.labels += 1
        self.counts.clicks += label.label
        self.counts.genuine_labels += p.genuine
        if self.counts.labels >= self._next_row:
            self._next_row += self.row_every
            self.rows.append(self.row())

    def row(self) -> dict[str, Any]:
        """The rolling figures now: one row of the time series (``ROW_FIELDS``)."""
        f, c = self.accounting.rolling(), self.ctr.figures()
        return {"labels": self.counts.labels, "requests": self.counts.requests,
                "elapsed_s": round(self.clock() - self._started, 3), "system": f.system,
                "frozen": f.frozen, "optimal": f.optimal, "regret": f.regret, "ctr": c.served,
                "ctr_expected": c.served_expected, "ctr_oracle": c.oracle_expected,
                "ctr_frozen": c.frozen_expected,
                "champion": self.champion or "", "promotions": self.promotions}

    # -- the run ---------------------------------------------------------------------------

    def run(self, *, requests: int | None = None, seconds: float | None = None,
            on_tick: Callable[[Driver], None] = lambda d: None, poll_s: float = 3.0,
            flush_s: float = 0.2) -> None:
        """Send requests until ``requests`` were sent or ``seconds`` passed, then send every
        queued event as it comes due and resolve every pending label. ``on_tick`` is called
        about every ``flush_s`` (live progress)."""
        start = time.monotonic()
        next_send = next_flush = start
        next_poll = start
        self.poll_champion()
        index = 0
        while True:
            now = time.monotonic()
            if requests is not None and index >= requests:
                break
            if seconds is not None and now - start >= seconds:
                break
            if now >= next_poll:
                self.poll_champion()
                next_poll = now + poll_s
            if now >= next_flush:
                self.flush()
                on_tick(self)
                next_flush = now + flush_s
            if now < next_send:
                time.sleep(min(next_send, next_flush) - now)
                continue
            self.step(index)
            rate = self.rate * self.scenario.state(index).rate
            next_send = max(next_send + (1.0 / rate if rate > 0 else 0.0), now - 1.0)
            index += 1
        # The last events as they come due (their clicks may be seconds ahead), so the joiner
        # sees them in time; then every remaining label from the truth.
        while len(self.queue):
            self.flush()
            on_tick(self)
            time.sleep(flush_s)
        self.flush(everything=True)
        self.poll_champion()
        self.rows.append(self.row())
        on_tick(self)
