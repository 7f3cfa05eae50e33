"""Propensities travel: `/v1/predict` with exploration on → `predictions` → the joiner →
`examples`, each example carrying the probability its candidate got its slot with.

Real `streamlearn serve` and `streamlearn join` processes on fresh topics. Serving explores
with ε = 1 over two slots, so the propensities are known in advance from the response alone:
1/n for the first slot, 1/(n − 1) for the second, 1 for the rest.
"""

from __future__ import annotations

import time

import httpx

from services.local.joiners import read_all, read_examples
from services.registry.redis import RedisRegistry
from streams.schemas import Prediction, decode_prediction
from tests.integration.loop_helpers import LoopStack, wait_for

SIGNING_KEY = "propensity-integration-key"
SETTINGS = {
    "STREAMLEARN_SERVING_EXPLORATION": "epsilon",
    "STREAMLEARN_SERVING_EXPLORATION_EPSILON": "1.0",
    "STREAMLEARN_SERVING_EXPLORATION_SLOTS": "2",
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "1000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "500",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "2000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
}
CANDIDATES = 4
REQUESTS = 10


def test_each_example_carries_the_propensity_its_candidate_was_served_with(
    loop: LoopStack, loop_registry: RedisRegistry,
) -> None:
    loop.start("serve")
    http = httpx.Client(base_url=loop.url, timeout=10.0)
    try:
        wait_for(loop.serving_ready, 60, "serving to be ready", loop.logs)
        loop.start("join")
        expected: dict[str, float] = {}
        for r in range(REQUESTS):
            body = {"user_id": f"u{r}", "context": {"device": "tv"},
                    "candidates": [{"item_id": f"i{c}"} for c in range(CANDIDATES)]}
            response = http.post("/v1/predict", json=body)
            assert response.status_code == 200, response.text
            ranked = response.json()["predictions"]
            slots = [1 / CANDIDATES, 1 / (CANDIDATES - 1)] + [1.0] * (CANDIDATES - 2)
            expected.update({p["prediction_id"]: s for p, s in zip(ranked, slots, strict=True)})
            now = int(time.time() * 1000)
            events = [{"type": "impression", "prediction_id": p["prediction_id"], "ts": now}
                      for p in ranked]
            events.append({"type": "click", "prediction_id": ranked[0]["prediction_id"],
                           "ts": now + 1})
            assert http.post("/v1/events", json={"events": events}).status_code == 202
        # A click is labelled at once; a non-click when its window closes, here once its
        # partition has been quiet for the idle timeout (no traffic after this point).

        def all_labelled() -> bool:
            loop.check_alive()
            return set(expected) <= {e.prediction_id for e in read_examples(loop.kafka)}

        wait_for(all_labelled, 90, "every served candidate to be labelled", loop.logs)
    finally:
        http.close()
    logged = [decode_prediction(v) for v in read_all(loop.kafka, loop.kafka.predictions_topic)]
    by_id = {p.prediction_id: p for p in logged if isinstance(p, Prediction)}
    examples = {e.prediction_id: e for e in read_examples(loop.kafka)}
    for pid, propensity in expected.items():
        assert by_id[pid].propensity == examples[pid].propensity
        assert abs(examples[pid].propensity - propensity) < 1e-9  # type: ignore[operator]
        assert by_id[pid].policy == examples[pid].policy == "epsilon"
    clicked = [e for pid, e in examples.items() if pid in expected and e.label == 1]
    assert len(clicked) == REQUESTS
