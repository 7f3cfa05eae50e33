from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.schemas import (
    DecodeError,
    Event,
    Example,
    Prediction,
    TimeBounds,
    decode_event,
    decode_example,
    decode_prediction,
    encode,
    parse_event,
)

NOW = 1_763_800_000_000
BOUNDS = TimeBounds(max_past_ms=3_600_000, max_future_ms=60_000)


def make_prediction(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "prediction_id": "p1",
        "request_id": "r1",
        "ts": NOW,
        "user_id": "u42",
        "item_id": "i7",
        "features": {"device": "mobile", "hour": 13, "price": 39.9, "new": True},
        "model_version": "ctr-v1.0",
        "arm": "champion",
        "score": 0.031,
    }
    value.update(overrides)
    return value


def make_event(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {"event_id": "e1", "type": "click", "prediction_id": "p1", "ts": NOW}
    value.update(overrides)
    return value


def make_example(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "prediction_id": "p1",
        "ts_prediction": NOW,
        "ts_label": NOW + 4000,
        "label": 1,
        "features": {"device": "mobile"},
        "model_version": "ctr-v1.0",
        "arm": "champion",
        "score": 0.5,
    }
    value.update(overrides)
    return value


def raw(obj: Any) -> bytes:
    return orjson.dumps(obj)


def reason(result: object) -> str:
    assert isinstance(result, DecodeError), f"expected a DecodeError, got {result!r}"
    return result.reason


def test_valid_messages_round_trip_through_encode() -> None:
    p = decode_prediction(raw(make_prediction()), key=b"p1", now_ms=NOW, bounds=BOUNDS)
    assert isinstance(p, Prediction)
    assert decode_prediction(encode(p)) == p
    e = decode_event(raw(make_event()), now_ms=NOW, bounds=BOUNDS)
    assert e == Event("e1", "click", "p1", NOW)
    assert decode_event(encode(e)) == e
    x = decode_example(raw(make_example()))
    assert isinstance(x, Example) and x.label == 1
    assert decode_example(encode(x)) == x


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (None, "empty message"),
        (raw(make_event(prediction_id=None)), "field 'prediction_id': missing"),
        (raw(make_event(prediction_id="")), "field 'prediction_id': length must be 1..128"),
        (raw(make_event(prediction_id=7)), "field 'prediction_id': expected a string, got int"),
        (raw(make_event(type="like")), "field 'type': expected one of click, conversion"),
        (raw(make_event(ts="1763800000000")), "field 'ts': expected integer epoch milliseconds"),
        (raw(make_event(ts=True)), "field 'ts': expected integer epoch milliseconds, got bool"),
        (raw(make_event(ts=1_763_800_000)), "is not epoch milliseconds (seconds sent?)"),
        (raw(make_event(ts=NOW - 7_200_000)), "field 'ts': 1763792800000 is 7200 s in the past"),
        (raw(make_event(ts=NOW + 120_000)), "field 'ts': 1763800120000 is 120 s in the future"),
    ],
)
def test_bad_events_name_the_problem(payload: bytes | None, expected: str) -> None:
    assert expected in reason(decode_event(payload, now_ms=NOW, bounds=BOUNDS))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"score": 1.5}, "field 'score': expected a probability in [0, 1], got 1.5"),
        ({"score": "0.3"}, "field 'score': expected a number, got str"),
        ({"arm": "canary"}, "field 'arm': expected one of challenger, champion, explore"),
        ({"features": {"geo": {"lat": 1.0}}}, "field 'features.geo': expected a string"),
        ({"features": [1, 2]}, "field 'features': expected an object, got list"),
        ({"features": {"": 1}}, "feature names must be 1..128 chars"),
        ({"user_id": "u" * 129}, "field 'user_id': length must be 1..128, got 129"),
        ({"request_id": None}, "field 'request_id': missing"),
    ],
)
def test_bad_predictions_name_the_problem(overrides: dict[str, Any], expected: str) -> None:
    assert expected in reason(decode_prediction(raw(make_prediction(**overrides))))


def test_non_finite_feature_is_rejected() -> None:
    payload = raw(make_prediction()).replace(b'"price":39.9', b'"price":NaN')
    # orjson refuses NaN literals, so this is invalid JSON before it is a bad feature.
    assert "invalid JSON" in reason(decode_prediction(payload))
    with pytest.raises(ValueError, match="expected a finite number"):
        from streams.schemas import check_features

        check_features({"price": float("inf")})


def test_key_must_match_prediction_id() -> None:
    got = reason(decode_event(raw(make_event()), key=b"other"))
    assert got == (
        "message key 'other' differs from prediction_id 'p1' "
        "(the data topics are keyed by prediction_id)"
    )


def test_example_label_and_timestamps_are_checked() -> None:
    got = reason(decode_example(raw(make_example(label=2))))
    assert "field 'label': expected 0 or 1, got 2" in got
    assert "got True" in reason(decode_example(raw(make_example(label=True))))
    assert "earlier than ts_prediction" in reason(
        decode_example(raw(make_example(ts_label=NOW - 1)))
    )


def test_event_id_and_user_fields_are_optional() -> None:
    event = parse_event({"type": "impression", "prediction_id": "p9", "ts": NOW})
    assert event == Event(None, "impression", "p9", NOW, None, None)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = decode_event(raw(make_event(campaign="x", v=2)))
    assert isinstance(event, Event)


def test_decoder_never_raises_on_arbitrary_bytes() -> None:
    import random

    rng = random.Random(7)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        assert isinstance(decode_event(blob), Event | DecodeError)
        assert isinstance(decode_prediction(blob), Prediction | DecodeError)


def test_propensity_and_policy_are_optional_and_checked() -> None:
    plain = decode_prediction(orjson.dumps(make_prediction()), key=b"p1")
    assert isinstance(plain, Prediction) and (plain.propensity, plain.policy) == (None, None)
    logged = decode_prediction(orjson.dumps(make_prediction(propensity=0.25, policy="epsilon")),
                               key=b"p1")
    assert isinstance(logged, Prediction) and (logged.propensity, logged.policy) == (0.25,
                                                                                     "epsilon")
    for bad, reason in ((0, "(0, 1]"), (1.5, "(0, 1]"), ("x", "expected a number"),
                        (True, "expected a number")):
        err = decode_prediction(orjson.dumps(make_prediction(propensity=bad)), key=b"p1")
        assert isinstance(err, DecodeError) and "field 'propensity'" in err.reason
        assert reason in err.reason
