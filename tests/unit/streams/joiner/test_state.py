"""State records: serialisation, restore from a changelog mirror, replay determinism."""

from __future__ import annotations

import pytest

from streams.joiner import JoinerError, JoinPolicy, PartitionClock, PartitionJoiner, Record
from streams.joiner.scenario import generate
from streams.joiner.state import (
    AWAITING,
    DONE,
    OPEN,
    clock_from_dict,
    clock_to_dict,
    decode_record,
    encode_record,
    record_from_dict,
    record_to_dict,
)
from tests.unit.streams.joiner.conftest import T0
from tests.unit.streams.joiner.harness import Run, decoded, drain, feed


@pytest.fixture
def records(make_prediction, make_event) -> list[Record]:
    p = make_prediction("p1")
    return [
        Record("p0", AWAITING, event_ids=("e1",), held=(make_event("click", "p0", T0),),
               held_offsets=(12,)),
        Record("p1", OPEN, p, p.ts, True, None, ("e2", "e3")),
        Record("p2", DONE, ts_prediction=T0, has_impression=True, label=1, event_ids=("e4",)),
        Record("p3", DONE, ts_prediction=T0, label=None),
    ]


def test_records_round_trip_through_bytes_and_dicts(records):
    for record in records:
        assert decode_record(encode_record(record)) == record
        assert record_from_dict(record_to_dict(record)) == record


def test_clock_round_trips():
    clock = PartitionClock(T0, T0 - 5)
    assert clock_from_dict(clock_to_dict(clock)) == clock
    with pytest.raises(JoinerError, match="max_ts"):
        clock_from_dict({"max_ts": "soon"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "lost"}, "status must be"),
        ({"event_ids": "e1"}, "event_ids must be an array"),
        ({"event_ids": [1]}, "event_ids must be strings"),
        ({"held_offsets": [1, 2]}, "held_offsets"),
        ({"prediction": None}, "an open record needs its prediction"),
        ({"ts_prediction": "x"}, "ts_prediction must be an integer"),
        ({"has_impression": 1}, "has_impression must be a boolean"),
    ],
)
def test_bad_records_are_rejected_with_a_reason(records, change, message):
    source = records[0] if "held_offsets" in change else records[1]
    with pytest.raises(JoinerError, match=message):
        record_from_dict({**record_to_dict(source), **change})


def test_undecodable_bytes_are_rejected():
    with pytest.raises(JoinerError, match="invalid JSON"):
        decode_record(b"{oops")
    with pytest.raises(JoinerError, match="prediction_id"):
        record_from_dict({"status": "done"})


def test_restore_rejects_inconsistent_or_repeated_records(policy, records):
    with pytest.raises(JoinerError, match="appears twice"):
        PartitionJoiner.restore(policy, [records[2], records[2]])
    broken = records[1]._replace(ts_prediction=T0 + 1)
    with pytest.raises(JoinerError, match="same id and ts"):
        PartitionJoiner.restore(policy, [broken])


def test_restore_rebuilds_counts_and_clock(policy, records):
    joiner = PartitionJoiner.restore(policy, records, PartitionClock(T0 + 50, None))
    assert (joiner.pending, joiner.done_markers) == (2, 2)
    assert joiner.watermark == T0 + 50 - policy.allowed_lateness_ms
    assert dict(joiner.records) == {r.prediction_id: r for r in records}


def test_restore_without_clock_starts_from_the_records_timestamps(policy, records):
    joiner = PartitionJoiner.restore(policy, records)
    assert joiner.watermark == T0 - policy.allowed_lateness_ms


@pytest.fixture
def everything() -> tuple[JoinPolicy, list]:
    policy = JoinPolicy(
        attribution_window_ms=1_000, allowed_lateness_ms=100, max_event_lead_ms=2_000,
        max_pending=10_000,
    )
    scenario = generate("everything", policy, predictions=1_500, mean_gap_ms=10, seed=11)
    inputs, _ = decoded(scenario, 0)
    return policy, inputs


@pytest.mark.parametrize("cut", [1, 137, 1_000, 2_222, 3_000])
def test_restore_continues_exactly_like_the_uninterrupted_run(everything, cut):
    policy, inputs = everything
    whole = PartitionJoiner(policy)
    before = feed(whole, inputs[:cut])
    after = feed(whole, inputs[cut:], Run(table=dict(before.table)))

    # What a restarted worker has: the changelogged table (round-tripped through bytes) and clock.
    table = [decode_record(encode_record(r)) for r in before.table.values()]
    restored = PartitionJoiner.restore(policy, table, before.clock)
    resumed = feed(restored, inputs[cut:], Run(table=dict(before.table)))

    assert resumed.outputs == after.outputs
    assert dict(restored.records) == dict(whole.records)


def test_replaying_the_same_input_gives_the_same_output(everything):
    policy, inputs = everything
    first = drain(j := PartitionJoiner(policy), feed(j, inputs))
    second = drain(k := PartitionJoiner(policy), feed(k, inputs))
    assert first.outputs == second.outputs
    assert len(first.examples) > 1_000


def test_a_mirror_of_changes_equals_the_state_at_every_step(everything):
    policy, inputs = everything
    joiner = PartitionJoiner(policy)
    run = Run()
    for i, message in enumerate(inputs):
        feed(joiner, [message], run)
        if i % 97 == 0:
            assert run.table == dict(joiner.records)
            assert run.clock == joiner.clock
    drain(joiner, run)
    assert run.table == dict(joiner.records) == {}
