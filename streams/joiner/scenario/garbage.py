"""Messages the strict decoders of ``streams.schemas`` reject, for the garbage variant."""

from __future__ import annotations

import random
from typing import Any

from streams.joiner.scenario.model import ScenarioSpec
from streams.schemas import encode


def garbage_value(
    rng: random.Random, key: str, other: str, ts: int, spec: ScenarioSpec
) -> tuple[str, bytes]:
    """A (topic, value) the strict decoders reject when given the message key ``key``.

    One kind is a valid event whose prediction_id differs from the key: only the key check
    rejects it, so a consumer must decode with ``key=``.
    """
    event = {"event_id": f"g{rng.randrange(10**9)}", "type": "click", "prediction_id": key,
             "ts": ts}
    prediction = {"prediction_id": key, "request_id": "r", "ts": ts, "user_id": "u",
                  "item_id": "i", "features": {}, "model_version": "ctr-v1.0",
                  "arm": "champion", "score": 0.5}
    choices: list[tuple[str, Any]] = [
        (spec.events_topic, b"{not json"),
        (spec.predictions_topic, b"[]"),
        (spec.events_topic, b"null"),
        (spec.events_topic, b"\xff\xfe not utf-8"),
        (spec.predictions_topic, b""),
        (spec.events_topic, {**event, "type": "like"}),
        (spec.events_topic, {k: v for k, v in event.items() if k != "prediction_id"}),
        (spec.events_topic, {**event, "ts": ts // 1000}),  # seconds, not milliseconds
        (spec.events_topic, {**event, "ts": str(ts)}),
        (spec.events_topic, {**event, "prediction_id": other + "-elsewhere"}),  # key mismatch
        (spec.predictions_topic, {**prediction, "score": 1.5}),
        (spec.predictions_topic, {k: v for k, v in prediction.items() if k != "request_id"}),
    ]
    topic, value = rng.choice(choices)
    return topic, value if isinstance(value, bytes) else encode(value)


