"""The pure core of the natural-label joiner: given pending state and one input, what is emitted.

One ``PartitionJoiner`` per Kafka partition (a prediction and its events share a partition, the
data topics being keyed by prediction_id). It never does I/O and never reads a clock in the
event path, so the same inputs in the same order give the same outputs, whatever the run.

Semantics (CONTRACT.md "Label semantics"):

* Event time. The watermark is the highest timestamp seen (predictions and events) minus
  ``allowed_lateness_ms``. A window ``[ts, ts + attribution_window_ms]`` closes when the
  watermark passes its end. An input is applied first, then the watermark it raises is acted
  on: whether an input is late is decided by what came before it.
* Labels. The first click inside the window makes a positive at once (``ts_label`` = the click
  ts). At close, a prediction with an impression (a click or a conversion implies one) becomes
  a negative (``ts_label`` = window end); without one it is ``unshown`` and yields no example,
  unless the policy is ``all_served``.
* Out of order. Events that arrive before their prediction are held until the watermark passes
  ``first held ts + max_event_lead_ms``; then they are orphans.
* At most one example per prediction. A decided prediction leaves a done marker (no features)
  until the watermark passes ``window end + retention_ms``; a prediction older than that is
  rejected as late. Together these mean a redelivered prediction always meets either its
  marker or the "too late" rule, so it can never open a second window.
* Late clicks (past the window end, or joined after the close) emit a ``LateLabel`` once per
  event_id; they never change an example.
* Bounds. Open windows plus held events are capped at ``max_pending`` (overflow closes the
  earliest deadline first: a negative if it qualifies, counted); done markers are capped at the
  same number (overflow expires the earliest and raises the "too late" floor, so the
  at-most-once rule still holds).

Expiry uses two ``TimeIndex`` (live windows and held events; done markers): each step looks at
the heads only, O(1) amortised per prediction for mostly ordered input.

Example:
    >>> from streams.schemas import Event, Prediction
    >>> joiner = PartitionJoiner(JoinPolicy(attribution_window_ms=1000, allowed_lateness_ms=0))
    >>> p = Prediction("p1", "r1", 10_000, "u1", "i1", {}, "ctr-v1.0", "champion", 0.1)
    >>> _ = joiner.on_prediction(p)
    >>> out = joiner.on_event(Event("e1", "click", "p1", 10_400))
    >>> [(x.prediction_id, x.label, x.ts_label) for x in out.examples]
    [('p1', 1, 10400)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, cast

from streams.joiner import output as out
from streams.joiner.index import TimeIndex
from streams.joiner.output import Emitter, LateLabel, Output, late_prediction, orphan_event
from streams.joiner.policy import JoinerError, JoinPolicy
from streams.joiner.state import (
    AWAITING,
    DONE,
    MAX_EVENT_IDS,
    MAX_HELD_EVENTS,
    OPEN,
    PartitionClock,
    Record,
    check_record,
)
from streams.schemas import Event, Example, Prediction

# Below any real timestamp: "nothing seen yet" without an Optional in the hot path.
NO_TIME: Final = -(1 << 62)


class PartitionJoiner:
    """The join state machine of one partition (see the module docstring for the semantics).

    Attributes:
        policy: the join policy.
        totals: cumulative counters since construction or restore.
    """

    __slots__ = (
        "policy", "totals", "_window", "_lateness", "_lead", "_retention", "_max_pending",
        "_require_impression", "_idle_timeout", "_records", "_live", "_done", "_n_live",
        "_n_done", "_max_ts", "_floor", "_clock", "_inputs", "_quiet_since", "_quiet_base",
    )

    def __init__(self, policy: JoinPolicy) -> None:
        self.policy = policy
        self.totals: dict[str, int] = {}
        self._window = policy.attribution_window_ms
        self._lateness = policy.allowed_lateness_ms
        self._lead = policy.max_event_lead_ms
        self._retention = policy.retention_ms
        self._max_pending = policy.max_pending
        self._require_impression = policy.policy == "impression_required"
        self._idle_timeout = policy.idle_timeout_ms
        self._records: dict[str, Record] = {}
        self._live = TimeIndex()  # awaiting and open records, by deadline
        self._done = TimeIndex()  # done markers, by expiry
        self._n_live = 0
        self._n_done = 0
        self._max_ts = NO_TIME
        self._floor = NO_TIME
        self._clock: PartitionClock | None = None
        # Idle detection is wall-clock and volatile on purpose: it is not part of the state.
        self._inputs = 0
        self._quiet_since: int | None = None
        self._quiet_base = NO_TIME

    @classmethod
    def restore(
        cls,
        policy: JoinPolicy,
        records: Iterable[Record],
        clock: PartitionClock | None = None,
    ) -> PartitionJoiner:
        """Rebuild a joiner from its changelogged records and clock (O(n log n) once).

        Persist ``Output.clock`` atomically with the ``Output.changes`` it came with: without
        the clock the watermark restarts from the records' own timestamps, which is lower,
        and a redelivered prediction whose marker had already expired could open again.

        Raises:
            JoinerError: a record is inconsistent or appears twice.
        """
        joiner = cls(policy)
        live: list[tuple[int, str]] = []
        done: list[tuple[int, str]] = []
        max_ts = NO_TIME
        for record in records:
            pid = record.prediction_id
            try:
                check_record(record)
            except ValueError as err:
                raise JoinerError(f"state record {pid!r}: {err}") from None
            if pid in joiner._records:
                raise JoinerError(f"state record {pid!r} appears twice")
            joiner._records[pid] = record
            (done if record.status == DONE else live).append((joiner._deadline(record), pid))
            seen = [e.ts for e in record.held]
            if record.ts_prediction is not None:
                seen.append(record.ts_prediction)
            max_ts = max([max_ts, *seen])
        joiner._live = TimeIndex(live)
        joiner._done = TimeIndex(done)
        joiner._n_live, joiner._n_done = len(live), len(done)
        if clock is not None:
            # The clock is never behind its own records; max() only guards a torn write.
            max_ts = max(max_ts, NO_TIME if clock.max_ts is None else clock.max_ts)
            joiner._floor = NO_TIME if clock.marker_floor is None else clock.marker_floor
        joiner._max_ts = max_ts
        return joiner

    # -- read-only views -------------------------------------------------------------------

    @property
    def watermark(self) -> int | None:
        """Current watermark (event time), None before the first input."""
        return None if self._max_ts == NO_TIME else self._max_ts - self._lateness

    @property
    def pending(self) -> int:
        """Open windows plus prediction_ids with held events (what ``max_pending`` bounds)."""
        return self._n_live

    @property
    def done_markers(self) -> int:
        """Done markers kept to absorb redeliveries and late clicks."""
        return self._n_done

    @property
    def records(self) -> Mapping[str, Record]:
        """A read-only live view of the state, by prediction_id."""
        return MappingProxyType(self._records)

    @property
    def indexes(self) -> tuple[TimeIndex, TimeIndex]:
        """The live and done time indexes (for cost checks)."""
        return self._live, self._done

    @property
    def clock(self) -> PartitionClock:
        """The partition clock to persist alongside the records."""
        if self._clock is None:
            self._clock = PartitionClock(
                None if self._max_ts == NO_TIME else self._max_ts,
                None if self._floor == NO_TIME else self._floor,
            )
        return self._clock

    # -- inputs ----------------------------------------------------------------------------

    def on_prediction(self, prediction: Prediction, offset: int | None = None) -> Output:
        """Join one decoded prediction; ``offset`` is echoed in orphans for the DLQ record."""
        step = Emitter(out.PREDICTIONS_IN)
        self._inputs += 1
        self._open(prediction, offset, step)
        self._observe(prediction.ts, step)
        return self._finish(step)

    def on_event(self, event: Event, offset: int | None = None) -> Output:
        """Join one decoded event; ``offset`` is kept with held events for the DLQ record."""
        step = Emitter(out.EVENTS_IN[event.type])
        self._inputs += 1
        record = self._records.get(event.prediction_id)
        event_id = event.event_id
        if record is None:
            self._hold_first(event, offset, step)
        elif event_id is not None and event_id in record.event_ids:
            step.count(out.DUPLICATE_EVENTS)
        else:
            ids = record.event_ids
            if event_id is not None and len(ids) < MAX_EVENT_IDS:
                ids = (*ids, event_id)
            if record.status == AWAITING:
                self._hold_more(record, event, offset, ids, step)
            else:
                self._join(record, event, ids, step)
        self._observe(event.ts, step)
        return self._finish(step)

    def on_idle(self, wall_ms: int) -> Output:
        """Call periodically (e.g. every second) with the wall clock in epoch milliseconds.

        Once no input has arrived for ``idle_timeout_ms``, the partition's event time moves
        on with the wall clock from where it stopped, so its last windows close about when
        they would have with steady traffic. This is the only wall-clock input; replays that
        never idle are unaffected.
        """
        step = Emitter()
        if self._inputs or self._quiet_since is None:
            self._inputs = 0
            self._quiet_since = wall_ms
            self._quiet_base = self._max_ts
            return self._finish(step)
        quiet = wall_ms - self._quiet_since
        if self._quiet_base != NO_TIME and quiet >= self._idle_timeout:
            target = self._quiet_base + quiet
            if target > self._max_ts:
                step.count(out.IDLE_ADVANCES)
                self._observe(target, step)
        return self._finish(step)

    # -- predictions -----------------------------------------------------------------------

    def _open(self, p: Prediction, offset: int | None, step: Emitter) -> None:
        pid = p.prediction_id
        record = self._records.get(pid)
        if record is not None and record.status != AWAITING:
            step.count(out.DUPLICATE_PREDICTIONS)
            return
        if p.ts + self._window + self._retention < self._expired_below():
            step.count(out.LATE_PREDICTIONS)
            step.orphans.append(late_prediction(p, self._expired_below(), offset))
            return
        if record is None:
            self._n_live += 1
            self._put(Record(pid, OPEN, p, p.ts), step)
        else:
            self._put(Record(pid, OPEN, p, p.ts, False, None, record.event_ids), step)
            # Held events join now, in arrival order; their ids were deduplicated on arrival.
            for event in record.held:
                current = self._records[pid]
                self._join(current, event, current.event_ids, step)
        current = self._records[pid]
        if current.status != OPEN:
            return
        if p.ts + self._window < self._max_ts - self._lateness:
            # Its window closed before it arrived: decide now, with what was held for it.
            self._close(current, step)
        else:
            self._live.push(p.ts + self._window, pid)

    # -- events ----------------------------------------------------------------------------

    def _hold_first(self, e: Event, offset: int | None, step: Emitter) -> None:
        deadline = e.ts + self._lead
        if deadline < self._max_ts - self._lateness:
            # It would expire at once: its prediction is long gone, or never came.
            self._orphan(e, offset, out.NO_PREDICTION, step)
            return
        pid = e.prediction_id
        ids = () if e.event_id is None else (e.event_id,)
        self._put(Record(pid, AWAITING, None, None, False, None, ids, (e,), (offset,)), step)
        self._n_live += 1
        self._live.push(deadline, pid)
        step.count(out.EVENTS_HELD)

    def _hold_more(
        self, record: Record, e: Event, offset: int | None, ids: tuple[str, ...], step: Emitter
    ) -> None:
        if len(record.held) >= MAX_HELD_EVENTS:
            self._orphan(e, offset, out.TOO_MANY_EVENTS, step)
            return
        held = Record(
            record.prediction_id, AWAITING, None, None, False, None, ids,
            (*record.held, e), (*record.held_offsets, offset),
        )
        self._put(held, step)
        step.count(out.EVENTS_HELD)

    def _join(self, record: Record, e: Event, ids: tuple[str, ...], step: Emitter) -> None:
        """Apply one (new) event to an open or done record."""
        pid = record.prediction_id
        ts_prediction = cast(int, record.ts_prediction)
        end = ts_prediction + self._window
        if record.status == OPEN:
            if e.type == "click":
                if e.ts <= end:
                    self._emit_positive(record, e, ids, step)
                    return
                late = LateLabel(pid, ts_prediction, e.ts, e.event_id, out.AFTER_WINDOW, None)
                step.late_labels.append(late)
                step.count(out.LATE_CLICKS)
            elif record.has_impression and ids is record.event_ids:
                return
            # Any event shows the prediction was displayed (a click or conversion implies it).
            self._put(Record(pid, OPEN, record.prediction, ts_prediction, True, None, ids), step)
            return
        if e.type == "click":
            if record.label == 1:
                step.count(out.REPEATED_CLICKS)
            else:
                reason = out.AFTER_WINDOW if e.ts > end else out.AFTER_CLOSE
                step.late_labels.append(
                    LateLabel(pid, ts_prediction, e.ts, e.event_id, reason, record.label)
                )
                step.count(out.LATE_CLICKS)
        else:
            step.count(out.EVENTS_AFTER_CLOSE)
        if ids is not record.event_ids:
            self._put(
                Record(pid, DONE, None, ts_prediction, record.has_impression, record.label, ids),
                step,
            )

    def _emit_positive(
        self, record: Record, click: Event, ids: tuple[str, ...], step: Emitter
    ) -> None:
        p = cast(Prediction, record.prediction)
        # Client clocks may lag the server's; a click cannot precede the prediction it answers.
        ts_label = click.ts if click.ts > p.ts else p.ts
        step.examples.append(
            Example(p.prediction_id, p.ts, ts_label, 1, p.features, p.model_version, p.arm, p.score,
                    p.propensity, p.policy)
        )
        step.count(out.EXAMPLES_POSITIVE)
        self._to_done(record, 1, True, ids, step)

    def _orphan(self, e: Event, offset: int | None, reason: str, step: Emitter) -> None:
        step.orphans.append(orphan_event(e, reason, self.policy, offset))
        step.count(out.ORPHAN_EVENTS)

    # -- closing and expiry ----------------------------------------------------------------

    def _close(self, record: Record, step: Emitter) -> None:
        p = cast(Prediction, record.prediction)
        label: int | None = None
        if record.has_impression or not self._require_impression:
            end = p.ts + self._window
            step.examples.append(
                Example(p.prediction_id, p.ts, end, 0, p.features, p.model_version, p.arm, p.score,
                        p.propensity, p.policy)
            )
            step.count(out.EXAMPLES_NEGATIVE)
            label = 0
        else:
            step.count(out.UNSHOWN)
        self._to_done(record, label, record.has_impression, record.event_ids, step)

    def _to_done(
        self,
        record: Record,
        label: int | None,
        has_impression: bool,
        ids: tuple[str, ...],
        step: Emitter,
    ) -> None:
        pid = record.prediction_id
        ts_prediction = cast(int, record.ts_prediction)
        self._put(Record(pid, DONE, None, ts_prediction, has_impression, label, ids), step)
        self._n_live -= 1
        self._n_done += 1
        self._done.push(ts_prediction + self._window + self._retention, pid)

    def _drop_held(self, record: Record, reason: str, step: Emitter) -> None:
        for event, offset in zip(record.held, record.held_offsets, strict=True):
            self._orphan(event, offset, reason, step)
        self._delete(record.prediction_id, step)
        self._n_live -= 1

    def _observe(self, ts: int, step: Emitter) -> None:
        """Raise the watermark to ``ts - lateness`` if higher, act on it, enforce the bounds."""
        if ts > self._max_ts:
            self._max_ts = ts
            self._clock = None
            self._advance(step)
        if self._n_live > self._max_pending or self._n_done > self._max_pending:
            self._enforce_bounds(step)

    def _advance(self, step: Emitter) -> None:
        watermark = self._max_ts - self._lateness
        records = self._records
        live = self._live
        while (entry := live.pop_before(watermark)) is not None:
            record = records.get(entry[1])
            if record is None or record.status == DONE or self._deadline(record) != entry[0]:
                continue  # stale: the record moved on since this entry was pushed
            if record.status == OPEN:
                self._close(record, step)
            else:
                self._drop_held(record, out.NO_PREDICTION, step)
        # After the closes above: a marker they just created may already be due.
        done = self._done
        while (entry := done.pop_before(watermark)) is not None:
            record = records.get(entry[1])
            if record is None or record.status != DONE or self._deadline(record) != entry[0]:
                continue
            self._delete(record.prediction_id, step)
            self._n_done -= 1
            step.count(out.MARKERS_EXPIRED)

    def _enforce_bounds(self, step: Emitter) -> None:
        records = self._records
        while self._n_live > self._max_pending:
            entry = self._live.pop()
            if entry is None:
                break
            record = records.get(entry[1])
            if record is None or record.status == DONE or self._deadline(record) != entry[0]:
                continue
            if record.status == OPEN:
                step.count(out.FORCED_CLOSES)
                self._close(record, step)
            else:
                self._drop_held(record, out.EVICTED, step)
        while self._n_done > self._max_pending:
            entry = self._done.pop()
            if entry is None:
                break
            record = records.get(entry[1])
            if record is None or record.status != DONE or self._deadline(record) != entry[0]:
                continue
            self._delete(record.prediction_id, step)
            self._n_done -= 1
            # Predictions whose marker would have expired by here are now "too late".
            self._floor = max(self._floor, entry[0] + 1)
            self._clock = None
            step.count(out.MARKERS_EVICTED)

    def _deadline(self, record: Record) -> int:
        status = record.status
        if status == OPEN:
            return cast(int, record.ts_prediction) + self._window
        if status == DONE:
            return cast(int, record.ts_prediction) + self._window + self._retention
        return record.held[0].ts + self._lead

    def _expired_below(self) -> int:
        return max(self._max_ts - self._lateness, self._floor)

    # -- bookkeeping -----------------------------------------------------------------------

    def _put(self, record: Record, step: Emitter) -> None:
        self._records[record.prediction_id] = record
        step.changes[record.prediction_id] = record

    def _delete(self, pid: str, step: Emitter) -> None:
        del self._records[pid]
        step.changes[pid] = None

    def _finish(self, step: Emitter) -> Output:
        totals = self.totals
        for name, n in step.counts.items():
            totals[name] = totals.get(name, 0) + n
        return step.build(self._clock or self.clock)
