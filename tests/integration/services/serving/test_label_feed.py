"""Fresh label statistics travel: a click on `/v1/events` → the joiner → `examples` → serving's
label feed → the features of the next prediction for the same user and item.

Real `streamlearn serve` and `streamlearn join` processes on fresh topics, with
`serving.label_stats` on for user_id and item_id and no decay (memory 0), so the counts are
exact: after one liked and one ignored candidate, the user has two labels, each item one.
"""

from __future__ import annotations

import math
import time

import httpx

from services.local.joiners import read_all, read_examples
from services.registry.redis import RedisRegistry
from streams.schemas import Prediction, decode_prediction
from tests.integration.loop_helpers import LoopStack, wait_for

SIGNING_KEY = "label-feed-integration-key"
SETTINGS = {
    "STREAMLEARN_SERVING_LABEL_STATS": '["user_id", "item_id"]',
    "STREAMLEARN_SERVING_LABEL_STATS_MEMORY": "0",
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "1000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "500",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "2000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
}


def _logged(loop: LoopStack) -> dict[str, Prediction]:
    logged = [decode_prediction(v) for v in read_all(loop.kafka, loop.kafka.predictions_topic)]
    return {p.prediction_id: p for p in logged if isinstance(p, Prediction)}


def test_the_next_prediction_carries_the_labels_joined_before_it(
    loop: LoopStack, loop_registry: RedisRegistry,
) -> None:
    loop.start("serve")
    http = httpx.Client(base_url=loop.url, timeout=10.0)
    body = {"user_id": "u1", "candidates": [{"item_id": "liked"}, {"item_id": "ignored"}]}
    try:
        wait_for(loop.serving_ready, 60, "serving to be ready", loop.logs)
        loop.start("join")
        first = http.post("/v1/predict", json=body)
        assert first.status_code == 200, first.text
        ids = {p["item_id"]: p["prediction_id"] for p in first.json()["predictions"]}
        now = int(time.time() * 1000)
        events = [{"type": "impression", "prediction_id": pid, "ts": now} for pid in ids.values()]
        events.append({"type": "click", "prediction_id": ids["liked"], "ts": now + 1})
        assert http.post("/v1/events", json={"events": events}).status_code == 202

        def labelled() -> bool:
            loop.check_alive()
            return set(ids.values()) <= {e.prediction_id for e in read_examples(loop.kafka)}

        wait_for(labelled, 90, "both candidates to be labelled", loop.logs)
        seen: dict[str, Prediction] = {}

        def fed() -> bool:  # the feed applies what the joiner committed, within a poll or two
            again = http.post("/v1/predict", json=body)
            assert again.status_code == 200, again.text
            pid = again.json()["predictions"][0]["prediction_id"]
            prediction = _logged(loop)[pid]
            seen["last"] = prediction
            return prediction.features.get("_stat_n_user_id") == math.log1p(2)

        wait_for(fed, 30, "serving's statistics to count both labels", loop.logs)
    finally:
        http.close()
    before = [p for pid, p in _logged(loop).items() if pid in ids.values()]
    assert {p.features["_stat_n_user_id"] for p in before} == {0.0}  # nothing joined yet
    features = seen["last"].features
    liked = 1.0 + 5.0 * 0.5  # overall rate (1 + 1) / (2 + 2); prior 5 pseudo-labels
    assert math.isclose(features["_stat_ctr_user_id"], math.log(0.5 / 0.5), abs_tol=1e-9)
    assert math.isclose(features["_stat_n_item_id"], math.log1p(1))
    later = {p.item_id: p.features for p in _logged(loop).values()
             if p.features.get("_stat_n_user_id") == math.log1p(2)}
    assert math.isclose(later["liked"]["_stat_ctr_item_id"],
                        math.log((liked / 6.0) / (1.0 - liked / 6.0)))
    assert later["liked"]["_stat_ctr_item_id"] > later["ignored"]["_stat_ctr_item_id"]
