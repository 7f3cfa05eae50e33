"""Focused behaviour of PartitionJoiner, one rule per test (policy: 1 s window, 100 ms lateness)."""

from __future__ import annotations

import pytest

from streams.joiner import JoinPolicy, PartitionJoiner
from streams.joiner import output as out
from streams.joiner.state import AWAITING, DONE, MAX_HELD_EVENTS, OPEN
from tests.unit.streams.joiner.conftest import LATENESS, LEAD, T0, WINDOW
from tests.unit.streams.joiner.harness import drain, feed

END = T0 + WINDOW
CLOSES_AT = END + LATENESS + 1  # the first max ts whose watermark passes the window end


def triples(examples):
    return [(x.prediction_id, x.label, x.ts_label) for x in examples]


def test_first_click_in_window_is_emitted_at_once(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1"))
    joiner.on_event(make_event("impression", "p1", T0 + 10))

    emitted = joiner.on_event(make_event("click", "p1", T0 + 400))

    assert triples(emitted.examples) == [("p1", 1, T0 + 400)]
    assert emitted.examples[0].features == {"device": "mobile", "price": 9.5}
    assert emitted.counts[out.EXAMPLES_POSITIVE] == 1
    assert joiner.records["p1"].status == DONE
    assert joiner.pending == 0


def test_click_on_the_window_end_still_counts(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1"))

    emitted = joiner.on_event(make_event("click", "p1", END))

    assert triples(emitted.examples) == [("p1", 1, END)]


def test_click_stamped_before_its_prediction_is_clamped(policy, make_prediction, make_event):
    # A client clock a little behind the server's must not yield ts_label < ts_prediction.
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1"))

    emitted = joiner.on_event(make_event("click", "p1", T0 - 50))

    assert triples(emitted.examples) == [("p1", 1, T0)]


def test_negative_only_once_the_watermark_passes_the_window_end(
    policy, make_prediction, make_event
):
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1"))
    joiner.on_event(make_event("impression", "p1", T0 + 10))

    at_end = joiner.on_prediction(make_prediction("p2", ts=END + LATENESS))
    assert joiner.watermark == END
    assert at_end.examples == ()

    past_end = joiner.on_prediction(make_prediction("p3", ts=CLOSES_AT))
    assert triples(past_end.examples) == [("p1", 0, END)]
    assert past_end.counts[out.EXAMPLES_NEGATIVE] == 1


def test_a_late_message_does_not_close_windows(policy, make_prediction, make_event):
    # Only a higher timestamp moves the watermark; an old one changes nothing.
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1"))
    joiner.on_event(make_event("impression", "p1", T0 + 900))
    emitted = joiner.on_event(make_event("impression", "p1", T0 + 5))
    assert emitted.examples == ()
    assert joiner.watermark == T0 + 900 - LATENESS


@pytest.mark.parametrize(
    ("label_policy", "expected", "unshown"),
    [("impression_required", [], 1), ("all_served", [("p1", 0, END)], 0)],
)
def test_unshown_prediction_depends_on_the_policy(
    policy, make_prediction, label_policy, expected, unshown
):
    joiner = PartitionJoiner(JoinPolicy(**{**_fields(policy), "policy": label_policy}))
    run = feed(joiner, [make_prediction("p1"), make_prediction("p2", ts=CLOSES_AT)])

    assert triples(run.examples) == expected
    assert run.counts[out.UNSHOWN] == unshown


def test_a_click_or_conversion_implies_the_impression(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    run = feed(
        joiner,
        [
            make_prediction("p1"),
            make_prediction("p2"),
            make_event("conversion", "p1", T0 + 300),
            make_event("click", "p2", END + 10),  # after the window: no positive, but shown
            make_prediction("p3", ts=CLOSES_AT + 10),
        ],
    )
    assert sorted(triples(run.examples)) == [("p1", 0, END), ("p2", 0, END)]
    assert run.counts[out.UNSHOWN] == 0


def test_event_before_its_prediction_is_held_then_joined(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    held = joiner.on_event(make_event("click", "p1", T0 + 200), offset=17)
    assert held.examples == ()
    assert held.counts[out.EVENTS_HELD] == 1
    assert joiner.records["p1"].status == AWAITING
    assert joiner.records["p1"].held_offsets == (17,)

    joined = joiner.on_prediction(make_prediction("p1"))

    assert triples(joined.examples) == [("p1", 1, T0 + 200)]
    assert joiner.pending == 0


def test_event_whose_prediction_never_comes_is_an_orphan_after_the_lead(
    policy, make_prediction, make_event
):
    joiner = PartitionJoiner(policy)
    click = make_event("click", "ghost", T0)
    joiner.on_event(click, offset=41)

    before = joiner.on_prediction(make_prediction("p1", ts=T0 + LEAD + LATENESS))
    assert before.orphans == ()
    after = joiner.on_prediction(make_prediction("p2", ts=T0 + LEAD + LATENESS + 1))

    [orphan] = after.orphans
    assert (orphan.message, orphan.reason, orphan.offset) == (click, out.NO_PREDICTION, 41)
    assert "max_event_lead_ms=2000" in orphan.detail
    assert after.counts[out.ORPHAN_EVENTS] == 1
    assert "ghost" not in joiner.records
    assert dict(after.changes)["ghost"] is None


def test_event_too_old_to_wait_is_an_orphan_at_once(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1", ts=T0 + 10 * LEAD))
    emitted = joiner.on_event(make_event("impression", "ghost", T0))
    assert [o.reason for o in emitted.orphans] == [out.NO_PREDICTION]
    assert "ghost" not in joiner.records


def test_duplicate_event_id_is_ignored(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1"))
    late_click = make_event("click", "p1", END + 50, event_id="c1")
    first = joiner.on_event(late_click)
    again = joiner.on_event(late_click)

    assert [x.reason for x in first.late_labels] == [out.AFTER_WINDOW]
    assert again.late_labels == ()
    assert again.changes == ()
    assert again.counts[out.DUPLICATE_EVENTS] == 1


def test_events_without_id_are_still_joined_once(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    run = feed(
        joiner,
        [
            make_prediction("p1"),
            make_event("click", "p1", T0 + 100, event_id=None),
            make_event("click", "p1", T0 + 200, event_id=None),
        ],
    )
    assert triples(run.examples) == [("p1", 1, T0 + 100)]
    assert run.counts[out.REPEATED_CLICKS] == 1


def test_redelivered_prediction_yields_no_second_example(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    prediction = make_prediction("p1")
    run = feed(
        joiner,
        [
            prediction,
            make_event("click", "p1", T0 + 100),
            prediction,  # while its marker lives
            make_prediction("p2", ts=CLOSES_AT),
            prediction,
        ],
    )
    assert triples(run.examples) == [("p1", 1, T0 + 100)]
    assert run.counts[out.DUPLICATE_PREDICTIONS] == 2


def test_redelivery_after_the_marker_expired_is_rejected_as_late(
    policy, make_prediction, make_event
):
    joiner = PartitionJoiner(policy)
    prediction = make_prediction("p1")
    marker_expiry = END + policy.retention_ms
    run = feed(
        joiner,
        [
            prediction,
            make_event("impression", "p1", T0 + 5),
            make_prediction("p2", ts=marker_expiry + LATENESS + 1),
        ],
    )
    assert "p1" not in joiner.records
    assert run.counts[out.MARKERS_EXPIRED] == 1

    again = joiner.on_prediction(prediction, offset=7)

    assert again.examples == ()
    assert [(o.reason, o.offset) for o in again.orphans] == [(out.LATE_PREDICTION, 7)]
    assert again.counts[out.LATE_PREDICTIONS] == 1
    assert triples(run.examples) == [("p1", 0, END)]


def test_prediction_after_its_window_closed_is_decided_at_once(
    policy, make_prediction, make_event
):
    # Within the retention a late prediction still counts, with the events held for it.
    joiner = PartitionJoiner(policy)
    joiner.on_event(make_event("impression", "p1", T0 + 20))
    joiner.on_event(make_event("impression", "other", CLOSES_AT + 200))

    emitted = joiner.on_prediction(make_prediction("p1"))

    assert triples(emitted.examples) == [("p1", 0, END)]
    assert joiner.records["p1"].status == DONE
    assert joiner.on_event(make_event("click", "p1", T0 + 30)).late_labels[0].reason == (
        out.AFTER_CLOSE
    )


def test_late_click_is_counted_and_changes_nothing(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    feed(joiner, [make_prediction("p1"), make_event("impression", "p1", T0 + 5)])
    closed = joiner.on_prediction(make_prediction("p2", ts=CLOSES_AT))
    assert triples(closed.examples) == [("p1", 0, END)]

    late = joiner.on_event(make_event("click", "p1", T0 + 500, event_id="c1"))

    assert late.examples == ()
    [label] = late.late_labels
    assert (label.prediction_id, label.ts_click, label.reason, label.label) == (
        "p1", T0 + 500, out.AFTER_CLOSE, 0,
    )
    assert label.event_id == "c1"
    assert late.counts[out.LATE_CLICKS] == 1
    assert joiner.on_event(make_event("click", "p1", T0 + 500, event_id="c1")).late_labels == ()


def test_click_after_positive_is_a_repeat_not_late(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    run = feed(
        joiner,
        [
            make_prediction("p1"),
            make_event("click", "p1", T0 + 100),
            make_event("click", "p1", END + 300),
            make_event("conversion", "p1", END + 400),
        ],
    )
    assert run.late_labels == []
    assert run.counts[out.REPEATED_CLICKS] == 1
    assert run.counts[out.EVENTS_AFTER_CLOSE] == 1


def test_max_pending_force_closes_the_earliest_deadline(policy, make_prediction, make_event):
    joiner = PartitionJoiner(JoinPolicy(**{**_fields(policy), "max_pending": 2}))
    feed(
        joiner,
        [
            make_prediction("p1"),
            make_event("impression", "p1", T0 + 1),
            make_prediction("p2", ts=T0 + 2),
        ],
    )

    overflow = joiner.on_prediction(make_prediction("p3", ts=T0 + 3))

    assert triples(overflow.examples) == [("p1", 0, END)]
    assert overflow.counts[out.FORCED_CLOSES] == 1
    assert joiner.pending == 2
    unshown = joiner.on_prediction(make_prediction("p4", ts=T0 + 4))
    assert unshown.examples == ()
    assert unshown.counts == {out.PREDICTIONS_IN: 1, out.FORCED_CLOSES: 1, out.UNSHOWN: 1}
    # A click inside p1's window after its forced close is a late label, not a second example.
    late = joiner.on_event(make_event("click", "p1", T0 + 900))
    assert late.examples == ()
    assert late.late_labels[0].reason == out.AFTER_CLOSE


def test_max_pending_evicts_held_events_as_orphans(policy, make_prediction, make_event):
    joiner = PartitionJoiner(JoinPolicy(**{**_fields(policy), "max_pending": 1}))
    # Held until T0 - 1500 + LEAD = T0 + 500: earlier than p1's window end, so evicted first.
    joiner.on_event(make_event("click", "ghost", T0 - 1500), offset=3)

    overflow = joiner.on_prediction(make_prediction("p1", ts=T0))

    assert [(o.reason, o.offset) for o in overflow.orphans] == [(out.EVICTED, 3)]
    assert joiner.pending == 1


def test_done_markers_are_bounded_without_breaking_at_most_once(
    policy, make_prediction, make_event
):
    joiner = PartitionJoiner(JoinPolicy(**{**_fields(policy), "max_pending": 2}))
    predictions = [make_prediction(f"p{i}", ts=T0 + i) for i in range(4)]
    clicks = [make_event("click", p.prediction_id, p.ts) for p in predictions]
    run = feed(joiner, [x for pair in zip(predictions, clicks, strict=True) for x in pair])
    assert joiner.done_markers == 2
    assert run.counts[out.MARKERS_EVICTED] == 2
    assert joiner.clock.marker_floor is not None

    again = feed(joiner, predictions)

    assert again.examples == []
    assert again.counts[out.LATE_PREDICTIONS] == 2  # p0, p1: markers evicted
    assert again.counts[out.DUPLICATE_PREDICTIONS] == 2  # p2, p3: markers kept


def test_too_many_held_events_become_orphans(policy, make_event):
    joiner = PartitionJoiner(policy)
    events = [make_event("impression", "p1", T0 + i) for i in range(MAX_HELD_EVENTS + 1)]
    run = feed(joiner, events)
    assert [o.reason for o in run.orphans] == [out.TOO_MANY_EVENTS]
    assert len(joiner.records["p1"].held) == MAX_HELD_EVENTS


def test_idle_timeout_closes_windows_on_a_quiet_partition(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    feed(joiner, [make_prediction("p1"), make_event("impression", "p1", T0 + 5)])
    wall = 5_000_000

    assert joiner.on_idle(wall).examples == ()  # starts the quiet period
    assert joiner.on_idle(wall + 499).counts == {}  # idle_timeout_ms=500 not reached
    first = joiner.on_idle(wall + 500)
    assert first.counts[out.IDLE_ADVANCES] == 1
    assert first.examples == ()  # event time moved 500 ms from T0 + 5: window still open
    assert joiner.watermark == T0 + 5 + 500 - LATENESS

    closing = joiner.on_idle(wall + (CLOSES_AT - (T0 + 5)))
    assert triples(closing.examples) == [("p1", 0, END)]


def test_input_ends_the_quiet_period(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1"))
    joiner.on_idle(0)
    joiner.on_event(make_event("impression", "p1", T0 + 5))
    assert joiner.on_idle(10_000).counts == {}  # input since the last tick: quiet restarts
    assert joiner.on_idle(10_000 + WINDOW + LATENESS + 1).examples != ()


def test_idle_before_any_input_does_nothing(policy):
    joiner = PartitionJoiner(policy)
    assert joiner.on_idle(0).counts == {}
    assert joiner.on_idle(10**12).counts == {}
    assert joiner.watermark is None


def test_changes_mirror_the_state_and_clock(policy, make_prediction, make_event):
    joiner = PartitionJoiner(policy)
    run = feed(
        joiner,
        [
            make_event("click", "p2", T0 + 50),
            make_prediction("p1"),
            make_prediction("p2"),
            make_event("impression", "p1", T0 + 20),
            make_prediction("p3", ts=END + policy.retention_ms + LATENESS + 1),
        ],
    )
    drain(joiner, run)
    feed(joiner, [make_prediction("p4", ts=10**13)], run)
    assert run.table == dict(joiner.records)
    assert run.clock == joiner.clock
    assert {r.status for r in run.table.values()} <= {OPEN, DONE, AWAITING}


def _fields(policy: JoinPolicy) -> dict:
    return {name: getattr(policy, name) for name in JoinPolicy.__dataclass_fields__}


def test_the_propensity_and_policy_travel_from_the_prediction_to_its_example(
    policy, make_prediction, make_event
):
    joiner = PartitionJoiner(policy)
    joiner.on_prediction(make_prediction("p1", propensity=0.2, policy="epsilon"))
    joiner.on_prediction(make_prediction("p2", propensity=0.8, policy="epsilon"))
    joiner.on_event(make_event("impression", "p1", T0 + 10))
    joiner.on_event(make_event("impression", "p2", T0 + 10))
    clicked = joiner.on_event(make_event("click", "p1", T0 + 400)).examples
    closed = joiner.on_prediction(make_prediction("p3", ts=CLOSES_AT)).examples
    assert [(e.prediction_id, e.label, e.propensity, e.policy) for e in (*clicked, *closed)] \
        == [("p1", 1, 0.2, "epsilon"), ("p2", 0, 0.8, "epsilon")]
