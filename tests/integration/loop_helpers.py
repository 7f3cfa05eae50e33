"""Helpers of the closed-loop test: the three real processes, and traffic with a known truth.

``LoopStack`` runs ``streamlearn serve``, ``streamlearn join`` and ``streamlearn train`` as
subprocesses configured only through ``STREAMLEARN_*`` environment variables (fresh topics, a
registry prefix, consumer groups and free ports of their own). ``World`` is the click
behaviour the traffic follows: a seeded generator whose true click probability depends on the
item's category only, which the cold-start champion (one prior CTR for everything) ignores.
"""

from __future__ import annotations

import random
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from config.settings import KafkaSettings, RegistrySettings
from services.local.loop import LocalLoop, delete_topics, free_port
from services.local.wait import wait_for
from services.registry.redis import RedisRegistry

__all__ = ["LoopStack", "free_port", "wait_for"]


def scrape(port: int, prefix: str) -> dict[str, float] | None:
    """Samples of a Prometheus endpoint whose names start with ``prefix``; None if down."""
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()  # noqa: S310
    except OSError:
        return None
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith(prefix):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


# -- the processes -------------------------------------------------------------------------

# The closed-loop tests' name for the three processes (the demo and benchmarks use it too).
LoopStack = LocalLoop


@contextmanager
def fresh_registry(url: str, signing_key: str, tag: str) -> Iterator[RedisRegistry]:
    """A registry under a fresh key prefix; every key under it is deleted afterwards."""
    client = redis.Redis.from_url(url, socket_timeout=30.0)
    cfg = RegistrySettings(prefix=f"{tag}-{uuid.uuid4().hex[:8]}:", signing_key=signing_key)
    try:
        yield RedisRegistry(client, cfg)
    finally:
        keys = list(client.scan_iter(match=f"{cfg.prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@contextmanager
def running_loop(kafka: KafkaSettings, registry: RedisRegistry, signing_key: str,
                 workdir: Path, settings: Mapping[str, str]) -> Iterator[LoopStack]:
    """A LoopStack, stopped afterwards, and the joiner's own topics deleted."""
    stack = LoopStack(kafka, registry.cfg.prefix, signing_key, workdir, settings)
    try:
        yield stack
    finally:
        stack.stop()
        delete_topics(kafka.bootstrap_servers, stack.joiner_topics)


# -- the traffic ---------------------------------------------------------------------------


@dataclass
class World:
    """Users, items and how they really click: only the category matters.

    With the default rates and categories drawn evenly, the overall CTR is about 0.054, close
    to the cold-start prior (0.05): the champion is calibrated on average and misses only
    *which* items get clicked. That is what a challenger must learn to pass the gate.
    """

    seed: int = 0
    ctr: Mapping[str, float] = field(default_factory=lambda: {
        "shoes": 0.25, "books": 0.005, "toys": 0.005, "garden": 0.005, "music": 0.005})
    items_per_category: int = 8
    users: int = 400
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def hot(self) -> str:
        """The category clicked far more than the others."""
        return max(self.ctr, key=lambda c: self.ctr[c])

    def items(self) -> list[tuple[str, str]]:
        """Every (item_id, category)."""
        return [(f"{c}-{i}", c) for c in self.ctr for i in range(self.items_per_category)]

    def request(self, per_category: int = 2) -> dict[str, Any]:
        """A predict body: ``per_category`` random items of each category, shuffled."""
        candidates = []
        for category in self.ctr:
            for i in self.rng.sample(range(self.items_per_category), per_category):
                candidates.append(candidate(f"{category}-{i}", category))
        self.rng.shuffle(candidates)
        return {"user_id": f"u{self.rng.randrange(self.users)}",
                "context": {"device": self.rng.choice(("mobile", "desktop")),
                            "hour": self.rng.randrange(24)},
                "candidates": candidates}

    def events(self, body: dict[str, Any], response: dict[str, Any], ts: int,
               ) -> list[dict[str, Any]]:
        """An impression for every prediction, and a click drawn from its category's CTR.

        ``ts`` (epoch ms) is taken after the response, so it is at or after the prediction's
        own timestamp (same clock) and well inside its attribution window.
        """
        category = {c["item_id"]: c["features"]["item_category"] for c in body["candidates"]}
        out = []
        for p in response["predictions"]:
            pid = p["prediction_id"]
            out.append({"event_id": f"{pid}-i", "type": "impression", "prediction_id": pid,
                        "ts": ts})
            if self.rng.random() < self.ctr[category[p["item_id"]]]:
                out.append({"event_id": f"{pid}-c", "type": "click", "prediction_id": pid,
                            "ts": ts + 1})
        return out


def candidate(item_id: str, category: str) -> dict[str, Any]:
    return {"item_id": item_id, "features": {"item_category": category, "price": 20.0}}


def probe_body(world: World) -> dict[str, Any]:
    """Every item once, for one fixed user and context: the scores to compare models on."""
    return {"user_id": "probe", "context": {"device": "mobile", "hour": 12},
            "candidates": [candidate(i, c) for i, c in world.items()]}


def separation(world: World, response: dict[str, Any]) -> float:
    """How well the scores rank hot-category items above the others: the share of (hot,
    other) pairs ordered correctly, ties counting half (a ranking AUC; 0.5 = no idea)."""
    hot = {i for i, c in world.items() if c == world.hot}
    scores = [(p["score"], p["item_id"] in hot) for p in response["predictions"]]
    pos = [s for s, h in scores if h]
    neg = [s for s, h in scores if not h]
    won = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return won / (len(pos) * len(neg))


def mean_gap(world: World, response: dict[str, Any]) -> float:
    """Mean score of hot-category items minus the mean score of the others."""
    hot = {i for i, c in world.items() if c == world.hot}
    pos = [p["score"] for p in response["predictions"] if p["item_id"] in hot]
    neg = [p["score"] for p in response["predictions"] if p["item_id"] not in hot]
    return sum(pos) / len(pos) - sum(neg) / len(neg)
