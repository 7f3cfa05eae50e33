"""Helpers of the closed-loop test: the three real processes, and traffic with a known truth.

``LoopStack`` runs ``streamlearn serve``, ``streamlearn join`` and ``streamlearn train`` as
subprocesses configured only through ``STREAMLEARN_*`` environment variables (fresh topics, a
registry prefix, consumer groups and free ports of their own). ``World`` is the click
behaviour the traffic follows: a seeded generator whose true click probability depends on the
item's category only, which the cold-start champion (one prior CTR for everything) ignores.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import redis
from confluent_kafka.admin import AdminClient

from bench.harness import kafka_env
from config.settings import KafkaSettings, RegistrySettings
from services.registry import RedisRegistry

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str,
             on_timeout: Callable[[], str] = lambda: "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n"
                                 f"{on_timeout()}")
        time.sleep(0.2)


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


@dataclass
class LoopStack:
    """Serving, one joiner worker and the trainer on one set of topics and one registry prefix.

    ``settings`` are extra ``STREAMLEARN_*`` variables given to all three processes (each only
    reads its own sections). Every process is started in its own session, so ``stop`` ends it
    with its children (the joiner's worker) by its process-group id and nothing else.
    """

    kafka: KafkaSettings
    registry_prefix: str
    signing_key: str
    workdir: Path
    settings: Mapping[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    serving_port: int = field(default_factory=free_port)
    joiner_metrics_port: int = field(default_factory=free_port)
    trainer_metrics_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def joiner_group(self) -> str:
        return f"loop-joiner-{self.tag}"

    @property
    def joiner_topics(self) -> list[str]:
        """The topics the joiner creates for its group: ticks and state (named by us), and
        Faust's assignor topic. The test deletes them afterwards."""
        group = self.joiner_group
        return [f"{group}-ticks", f"{group}-state", f"{group}-__assignor-__leader"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.serving_port}"

    def env(self) -> dict[str, str]:
        k = self.kafka
        return {
            **os.environ,
            **kafka_env(k),
            "STREAMLEARN_REGISTRY_PREFIX": self.registry_prefix,
            "STREAMLEARN_REGISTRY_SIGNING_KEY": self.signing_key,
            "STREAMLEARN_SERVING_PORT": str(self.serving_port),
            "STREAMLEARN_SERVING_ADMIN_TOKEN": uuid.uuid4().hex,  # nobody here promotes by hand
            "STREAMLEARN_JOINER_GROUP_ID": self.joiner_group,
            "STREAMLEARN_JOINER_TICKS_TOPIC": self.joiner_topics[0],
            "STREAMLEARN_JOINER_STATE_TOPIC": self.joiner_topics[1],
            "STREAMLEARN_JOINER_STATE_DIR": str(self.workdir / "joiner"),
            "STREAMLEARN_JOINER_METRICS_PORT": str(self.joiner_metrics_port),
            "STREAMLEARN_TRAINER_GROUP_ID": f"loop-trainer-{self.tag}",
            "STREAMLEARN_TRAINER_METRICS_PORT": str(self.trainer_metrics_port),
            **self.settings,
        }

    def start(self, name: str, *args: str) -> None:
        """Start ``streamlearn <name> <args>`` with its output in ``<workdir>/<name>.log``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "services.cli", name, *args], cwd=REPO, env=self.env(),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def check_alive(self) -> None:
        """Fail at once, with the logs, when one of the processes has exited."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL those still there after 20 s."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group too: a child (the joiner's worker) may outlive its parent.
            _signal_group(proc, signal.SIGKILL)
            proc.wait(10)
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-tail:]
                         for p in sorted(self.workdir.glob("*.log")))


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
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
        for future in admin.delete_topics(stack.joiner_topics, operation_timeout=30).values():
            try:
                future.result(timeout=30)
            except Exception:  # noqa: BLE001, S110 - the joiner may not have created them
                pass


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # its own session: the group id is its pid
    except ProcessLookupError:
        pass


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
