"""Message schemas of the four topics (CONTRACT.md) and their strict decoders.

Decoders never raise on bad input: they return a ``DecodeError`` whose ``reason`` names the
field and the problem, so a consumer loop can route the message to the DLQ and go on.
Values are UTF-8 JSON; types are strict (no coercion: ``"13"`` is not a number, ``true`` is
not an integer).

Example:
    >>> bounds = TimeBounds(max_past_ms=3_600_000, max_future_ms=60_000)
    >>> decode_event(b'{"type": "click", "prediction_id": "p1", "ts": 1763800000123}',
    ...              now_ms=1763800001000, bounds=bounds)
    Event(event_id=None, type='click', prediction_id='p1', ts=1763800000123, user_id=None, item_id=None)
    >>> decode_event(b'{"type": "like", "prediction_id": "p1", "ts": 1763800000123}',
    ...              now_ms=1763800001000, bounds=bounds).reason
    "field 'type': expected one of click, conversion, impression, got 'like'"
"""  # noqa: E501

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from streams.errors import StreamsError

SCHEMA_VERSION: Final = 1
EVENT_TYPES: Final = frozenset({"impression", "click", "conversion"})
ARMS: Final = frozenset({"champion", "challenger", "explore"})
MAX_ID_LEN: Final = 128
MAX_FEATURES: Final = 1024
MAX_FEATURE_KEY_LEN: Final = 128
MAX_FEATURE_STR_LEN: Final = 1024
# Epoch milliseconds below this are before 2001-09-09: almost surely seconds sent by mistake.
MIN_PLAUSIBLE_TS_MS: Final = 1_000_000_000_000

FeatureValue = str | int | float | bool
EventType = Literal["impression", "click", "conversion"]


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How far a message timestamp may lie from the decoder's clock."""

    max_past_ms: int
    max_future_ms: int


@dataclass(frozen=True, slots=True)
class Prediction:
    """One served candidate, as logged to ``predictions``."""

    prediction_id: str
    request_id: str
    ts: int
    user_id: str
    item_id: str
    features: dict[str, FeatureValue]
    model_version: str
    arm: str
    score: float
    # How the candidate got its slot (serving's exploration): the probability, given the
    # slots before it, and the policy. None when the producer did not say.
    propensity: float | None = None
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """One behavioural event on ``events``. ``event_id`` is None when the producer sent none."""

    event_id: str | None
    type: EventType
    prediction_id: str
    ts: int
    user_id: str | None = None
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class Example:
    """One labeled example on ``examples``."""

    prediction_id: str
    ts_prediction: int
    ts_label: int
    label: int
    features: dict[str, FeatureValue]
    model_version: str
    arm: str
    score: float
    propensity: float | None = None  # as on the prediction
    policy: str | None = None


@dataclass(frozen=True, slots=True)
class DecodeError:
    """Why a message was rejected."""

    reason: str


class _Invalid(StreamsError):
    """Internal: carries the reason out of nested field checks (never leaves this module)."""




def encode(message: Prediction | Event | Example | Mapping[str, Any]) -> bytes:
    """Serialise a message (or a plain mapping) to compact UTF-8 JSON.

    Example:
        >>> encode(Event("e1", "click", "p1", 1763800000123))
        b'{"event_id":"e1","type":"click","prediction_id":"p1","ts":1763800000123,"user_id":null,"item_id":null}'
    """
    return orjson.dumps(message)


def _loads(raw: bytes | str | None) -> dict[str, Any]:
    if raw is None:
        raise _Invalid("empty message (null value)")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise _Invalid(f"invalid JSON: {err}") from None
    if not isinstance(obj, dict):
        raise _Invalid(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _id(obj: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _Invalid(f"field '{key}': missing")
        return None
    if not isinstance(value, str):
        raise _Invalid(f"field '{key}': expected a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_ID_LEN:
        raise _Invalid(f"field '{key}': length must be 1..{MAX_ID_LEN}, got {len(value)}")
    return value


def _ts(obj: Mapping[str, Any], key: str, now_ms: int | None, bounds: TimeBounds | None) -> int:
    value = obj.get(key)
    if value is None:
        raise _Invalid(f"field '{key}': missing")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(
            f"field '{key}': expected integer epoch milliseconds, got {type(value).__name__}"
        )
    if value < MIN_PLAUSIBLE_TS_MS:
        raise _Invalid(f"field '{key}': {value} is not epoch milliseconds (seconds sent?)")
    if now_ms is not None and bounds is not None:
        if value < now_ms - bounds.max_past_ms:
            raise _Invalid(
                f"field '{key}': {value} is {(now_ms - value) // 1000} s in the past "
                f"(limit {bounds.max_past_ms // 1000} s)"
            )
        if value > now_ms + bounds.max_future_ms:
            raise _Invalid(
                f"field '{key}': {value} is {(value - now_ms) // 1000} s in the future "
                f"(limit {bounds.max_future_ms // 1000} s)"
            )
    return value


def _score(obj: Mapping[str, Any], key: str) -> float:
    value = obj.get(key)
    if value is None:
        raise _Invalid(f"field '{key}': missing")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"field '{key}': expected a number, got {type(value).__name__}")
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise _Invalid(f"field '{key}': expected a probability in [0, 1], got {value}")
    return float(value)


def _propensity(obj: Mapping[str, Any]) -> float | None:
    value = obj.get("propensity")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"field 'propensity': expected a number, got {type(value).__name__}")
    if not (0.0 < value <= 1.0):  # also rejects NaN: a slot taken with probability 0 is not
        raise _Invalid(f"field 'propensity': expected a probability in (0, 1], got {value}")
    return float(value)


def _choice(obj: Mapping[str, Any], key: str, allowed: frozenset[str]) -> str:
    value = obj.get(key)
    if value is None:
        raise _Invalid(f"field '{key}': missing")
    if value not in allowed:
        raise _Invalid(
            f"field '{key}': expected one of {', '.join(sorted(allowed))}, got {value!r}"
        )
    return str(value)


def check_features(value: Any, key: str = "features") -> dict[str, FeatureValue]:
    """Validate a flat feature mapping: string keys; string, number or boolean values.

    Raises:
        ValueError: with a reason naming the offending feature.

    Example:
        >>> check_features({"device": "mobile", "hour": 13})
        {'device': 'mobile', 'hour': 13}
        >>> check_features({"geo": {"lat": 1}})
        Traceback (most recent call last):
        ...
        ValueError: field 'features.geo': expected a string, number or boolean, got dict
    """
    try:
        return _features(value, key)
    except _Invalid as err:
        raise ValueError(str(err)) from None


def _features(value: Any, key: str) -> dict[str, FeatureValue]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Invalid(f"field '{key}': expected an object, got {type(value).__name__}")
    if len(value) > MAX_FEATURES:
        raise _Invalid(f"field '{key}': at most {MAX_FEATURES} features, got {len(value)}")
    for name, item in value.items():
        if not name or len(name) > MAX_FEATURE_KEY_LEN:
            raise _Invalid(f"field '{key}': feature names must be 1..{MAX_FEATURE_KEY_LEN} chars")
        if isinstance(item, str):
            if len(item) > MAX_FEATURE_STR_LEN:
                raise _Invalid(f"field '{key}.{name}': string longer than {MAX_FEATURE_STR_LEN}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _Invalid(f"field '{key}.{name}': expected a finite number, got {item}")
        elif not isinstance(item, int):  # bool is an int
            raise _Invalid(
                f"field '{key}.{name}': expected a string, number or boolean, "
                f"got {type(item).__name__}"
            )
    return value


def parse_prediction(
    obj: Mapping[str, Any], now_ms: int | None = None, bounds: TimeBounds | None = None
) -> Prediction:
    """Build a Prediction from a decoded JSON object (raises ValueError with the reason)."""
    try:
        return Prediction(
            prediction_id=_id(obj, "prediction_id"),  # type: ignore[arg-type]
            request_id=_id(obj, "request_id"),  # type: ignore[arg-type]
            ts=_ts(obj, "ts", now_ms, bounds),
            user_id=_id(obj, "user_id"),  # type: ignore[arg-type]
            item_id=_id(obj, "item_id"),  # type: ignore[arg-type]
            features=_features(obj.get("features"), "features"),
            model_version=_id(obj, "model_version"),  # type: ignore[arg-type]
            arm=_choice(obj, "arm", ARMS),
            score=_score(obj, "score"),
            propensity=_propensity(obj),
            policy=_id(obj, "policy", required=False),
        )
    except _Invalid as err:
        raise ValueError(str(err)) from None


def parse_event(
    obj: Mapping[str, Any], now_ms: int | None = None, bounds: TimeBounds | None = None
) -> Event:
    """Build an Event from a decoded JSON object (raises ValueError with the reason)."""
    try:
        if not isinstance(obj, Mapping):
            raise _Invalid(f"expected a JSON object, got {type(obj).__name__}")
        return Event(
            event_id=_id(obj, "event_id", required=False),
            type=_choice(obj, "type", EVENT_TYPES),  # type: ignore[arg-type]
            prediction_id=_id(obj, "prediction_id"),  # type: ignore[arg-type]
            ts=_ts(obj, "ts", now_ms, bounds),
            user_id=_id(obj, "user_id", required=False),
            item_id=_id(obj, "item_id", required=False),
        )
    except _Invalid as err:
        raise ValueError(str(err)) from None


def parse_example(
    obj: Mapping[str, Any], now_ms: int | None = None, bounds: TimeBounds | None = None
) -> Example:
    """Build an Example from a decoded JSON object (raises ValueError with the reason)."""
    try:
        label = obj.get("label")
        if isinstance(label, bool) or label not in (0, 1):
            raise _Invalid(f"field 'label': expected 0 or 1, got {label!r}")
        ts_prediction = _ts(obj, "ts_prediction", now_ms, bounds)
        ts_label = _ts(obj, "ts_label", None, None)
        if ts_label < ts_prediction:
            raise _Invalid("field 'ts_label': earlier than ts_prediction")
        return Example(
            prediction_id=_id(obj, "prediction_id"),  # type: ignore[arg-type]
            ts_prediction=ts_prediction,
            ts_label=ts_label,
            label=int(label),
            features=_features(obj.get("features"), "features"),
            model_version=_id(obj, "model_version"),  # type: ignore[arg-type]
            arm=_choice(obj, "arm", ARMS),
            score=_score(obj, "score"),
            propensity=_propensity(obj),
            policy=_id(obj, "policy", required=False),
        )
    except _Invalid as err:
        raise ValueError(str(err)) from None


def _decode(
    parse: Any,
    raw: bytes | str | None,
    key: bytes | str | None,
    now_ms: int | None,
    bounds: TimeBounds | None,
) -> Any:
    try:
        message = parse(_loads(raw), now_ms, bounds)
    except (_Invalid, ValueError) as err:
        return DecodeError(str(err))
    if key is not None:
        key_text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if key_text != message.prediction_id:
            return DecodeError(
                f"message key {key_text!r} differs from prediction_id {message.prediction_id!r}"
                " (the data topics are keyed by prediction_id)"
            )
    return message


def decode_prediction(
    raw: bytes | str | None,
    *,
    key: bytes | str | None = None,
    now_ms: int | None = None,
    bounds: TimeBounds | None = None,
) -> Prediction | DecodeError:
    """Decode a ``predictions`` value; with ``key`` also check it equals prediction_id."""
    return _decode(parse_prediction, raw, key, now_ms, bounds)  # type: ignore[no-any-return]


def decode_event(
    raw: bytes | str | None,
    *,
    key: bytes | str | None = None,
    now_ms: int | None = None,
    bounds: TimeBounds | None = None,
) -> Event | DecodeError:
    """Decode an ``events`` value; with ``key`` also check it equals prediction_id."""
    return _decode(parse_event, raw, key, now_ms, bounds)  # type: ignore[no-any-return]


def decode_example(
    raw: bytes | str | None,
    *,
    key: bytes | str | None = None,
    now_ms: int | None = None,
    bounds: TimeBounds | None = None,
) -> Example | DecodeError:
    """Decode an ``examples`` value; with ``key`` also check it equals prediction_id."""
    return _decode(parse_example, raw, key, now_ms, bounds)  # type: ignore[no-any-return]
