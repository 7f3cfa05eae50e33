"""The closed loop of issue 5, on the real stack and the real processes.

``streamlearn serve``, ``streamlearn join`` and ``streamlearn train`` run as subprocesses on
fresh topics, a fresh registry prefix and their own consumer groups. The test only does what a
client does: ``POST /v1/predict`` and ``POST /v1/events``. The traffic clicks one category far
more than the others, which the cold-start champion (one prior CTR for every item) does not
know. Without any manual step, the joiner labels the traffic, the trainer fine-tunes a
challenger, the gate (default thresholds) promotes it, and serving answers with it — and it
ranks the hot category above the others where v1.0 could not.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from services.registry.redis import RedisRegistry
from tests.integration.loop_helpers import (
    LoopStack,
    World,
    mean_gap,
    probe_body,
    scrape,
    separation,
    wait_for,
)

SIGNING_KEY = "closed-loop-integration-key"
# Short windows so labels come within seconds (event time: window 2 s, lateness 1 s; a quiet
# partition closes after 3 s), a small feature space and micro-batches so the trainer decides
# on a few thousand examples. The gate keeps its default thresholds.
SETTINGS = {
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "2000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "1000",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "3000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
    "STREAMLEARN_TRAINER_MODEL": "fm",
    "STREAMLEARN_TRAINER_HASH_BITS": "14",
    "STREAMLEARN_TRAINER_BATCH_SIZE": "256",
    "STREAMLEARN_TRAINER_MAX_WAIT_MS": "500",
    "STREAMLEARN_TRAINER_GATE_EVERY_EXAMPLES": "2000",
    "STREAMLEARN_TRAINER_CHAMPION_POLL_MS": "500",
    "STREAMLEARN_SERVING_POLL_INTERVAL_S": "1",
}
REQUESTS_PER_ROUND = 20  # 10 candidates each: 200 predictions, then their events in one call
# At most 400 predictions a second. A click is labelled at once, a non-click only when its
# window closes (~3 s of event time later): the faster the traffic, the more the first
# examples over-represent clicks, and the joiner on a shared 2-core machine falls behind.
ROUND_S = 0.5
TRAFFIC_DEADLINE_S = 120.0


def test_traffic_the_champion_does_not_know_leads_to_a_promoted_challenger_in_serving(
    loop: LoopStack, loop_registry: RedisRegistry
) -> None:
    registry = loop_registry
    world = World(seed=5)
    # Serving first: with no champion it cold-starts v1.0, which the trainer then adopts.
    loop.start("serve")
    http = httpx.Client(base_url=loop.url, timeout=10.0)
    try:
        wait_for(lambda: _ready(http), 60, "serving to be ready", loop.logs)
        loop.start("join")
        loop.start("train")
        wait_for(lambda: scrape(loop.trainer_metrics_port, "streamlearn_trainer_champion_info"),
                 60, "the trainer to start", loop.logs)
        wait_for(lambda: scrape(loop.joiner_metrics_port, "streamlearn_joiner_"), 60,
                 "the joiner to start", loop.logs)
        cold = registry.get("ctr-v1.0")
        assert (cold.mode, cold.status, cold.parent) == ("cold_start", "champion", None)
        before = http.post("/v1/predict", json=probe_body(world)).json()
        assert before["model_version"] == "ctr-v1.0"

        sent = _drive_until_promoted(http, world, registry, loop)

        champion = registry.champion()
        assert champion is not None and champion.version != "ctr-v1.0", loop.logs()
        # Promoted by the gate, not by hand: the decision is on the record, the champion
        # history shows the gate's reason, and the lineage leads back to the cold start.
        assert (champion.mode, champion.status) == ("stateful", "champion")
        assert champion.gate is not None and champion.gate.outcome == "promote"
        assert champion.gate.rule == "better"
        assert champion.gate.figures["challenger_loss"] < champion.gate.figures["champion_loss"]
        change = registry.history(limit=1)[0]
        assert (change.action, change.version) == ("promote", champion.version)
        assert change.reason == champion.gate.reason
        chain = _ancestry(registry, champion.version)
        assert chain[-1] == "ctr-v1.0" and champion.parent == chain[1], chain
        first = registry.get(chain[-2])  # the first challenger promoted over the cold start
        assert (first.parent, first.mode, first.gate and first.gate.outcome) == (
            "ctr-v1.0", "stateful", "promote")
        assert first.lineage.n_examples > 0
        assert {r.topic for r in first.lineage.ranges} == {loop.kafka.examples_topic}
        assert sum(r.last - r.first + 1 for r in first.lineage.ranges) >= \
            first.lineage.n_examples
        assert first.lineage.n_examples <= sent

        # Serving answers with the new champion (pub/sub, poll as fallback) ...
        after = wait_for(lambda: _served_by(http, world, registry.champion_version()), 15,
                         "serving to answer with the new champion", loop.logs)
        # ... and its scores tell the hot category from the others, where v1.0's could not.
        old_sep, new_sep = separation(world, before), separation(world, after)
        old_gap, new_gap = mean_gap(world, before), mean_gap(world, after)
        decided = [(d["version"], d["outcome"], d["rule"]) for d in reversed(registry.decisions())]
        print(f"closed loop: {sent} predictions sent; gate decisions {decided}; champion "
              f"{after['model_version']} ({champion.gate.reason}); ranking AUC "
              f"{old_sep:.3f} -> {new_sep:.3f}, hot-minus-other mean score "
              f"{old_gap:.4f} -> {new_gap:.4f}")
        assert new_sep >= 0.9 and new_sep > old_sep + 0.3, (old_sep, new_sep)
        assert new_gap > old_gap + 0.02, (old_gap, new_gap)
        loop.check_alive()
    finally:
        http.close()


def _ready(http: httpx.Client) -> bool:
    try:
        return http.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _drive_until_promoted(http: httpx.Client, world: World, registry: RedisRegistry,
                          loop: LoopStack) -> int:
    """Predict, then report impressions and clicks, in rounds until the registry's champion
    is no longer the cold start. Returns how many predictions were served."""
    sent = 0
    deadline = time.monotonic() + TRAFFIC_DEADLINE_S
    next_round = time.monotonic()
    while registry.champion_version() == "ctr-v1.0":
        time.sleep(max(0.0, next_round - time.monotonic()))  # the traffic's pace
        next_round = time.monotonic() + ROUND_S
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no promotion within {TRAFFIC_DEADLINE_S} s of traffic ({sent} predictions)\n"
                f"decisions: {registry.decisions()}\n{loop.logs()}")
        loop.check_alive()
        events: list[dict[str, Any]] = []
        for _ in range(REQUESTS_PER_ROUND):
            body = world.request()
            response = http.post("/v1/predict", json=body)
            assert response.status_code == 200, response.text
            events += world.events(body, response.json(), int(time.time() * 1000))
            sent += len(body["candidates"])
        accepted = http.post("/v1/events", json={"events": events})
        assert accepted.status_code == 202 and accepted.json() == {
            "accepted": len(events), "rejected": []}, accepted.text
    return sent


def _served_by(http: httpx.Client, world: World, version: str | None) -> dict[str, Any] | None:
    body: dict[str, Any] = http.post("/v1/predict", json=probe_body(world)).json()
    return body if body["model_version"] == version else None


def _ancestry(registry: RedisRegistry, version: str) -> list[str]:
    """``version``, its parent, its parent's parent … up to the first version."""
    chain = [version]
    while (parent := registry.get(chain[-1]).parent) is not None:
        chain.append(parent)
    return chain
