"""The three streamlearn processes on one machine: serve, join and train, as subprocesses.

``LocalLoop`` runs ``streamlearn serve``, ``streamlearn join`` and ``streamlearn train``
configured only through ``STREAMLEARN_*`` environment variables: its own topics, registry
prefix, consumer groups and free ports, so several loops (a demo, a test, a benchmark) can share
one broker and one Redis. ``make demo``, the quality benchmark and the integration tests all
start their processes through it; ``stop`` ends exactly what it started.

Example:
    >>> from config.settings import KafkaSettings
    >>> loop = LocalLoop(KafkaSettings(predictions_topic="x-predictions"), "x:", "key",
    ...                  Path("/tmp/x"), tag="abc")
    >>> env = loop.env()
    >>> env["STREAMLEARN_KAFKA_PREDICTIONS_TOPIC"], env["STREAMLEARN_JOINER_GROUP_ID"]
    ('x-predictions', 'loop-joiner-abc')
"""

from __future__ import annotations

import os
import socket
import subprocess  # noqa: S404 - starting our own processes is the point
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from config.settings import KafkaSettings
from services.local.wait import stop_process


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kafka_env(k: KafkaSettings) -> dict[str, str]:
    """The environment that points a streamlearn process at ``k``'s broker and topics."""
    return {
        "STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
        "STREAMLEARN_KAFKA_PREDICTIONS_TOPIC": k.predictions_topic,
        "STREAMLEARN_KAFKA_EVENTS_TOPIC": k.events_topic,
        "STREAMLEARN_KAFKA_EXAMPLES_TOPIC": k.examples_topic,
        "STREAMLEARN_KAFKA_DLQ_TOPIC": k.dlq_topic,
        "STREAMLEARN_KAFKA_LATE_LABELS_TOPIC": k.late_labels_topic,
        "STREAMLEARN_KAFKA_PARTITIONS": str(k.partitions),
    }


def answers(url: str) -> bool:
    """``GET url`` answers 200 now (a process's ``/readyz`` or ``/metrics``)."""
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every Redis key under ``prefix`` (a run's registry and trainer state)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=30.0)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def register_champion(redis_url: str, prefix: str, signing_key: str, model: Any,
                      reason: str) -> str:
    """Register ``model`` as a new manual version under ``prefix`` and make it the champion
    (a run that starts from a deployed model, as a team would); returns its version."""
    import redis
    from pydantic import SecretStr

    from config.settings import RegistrySettings, load
    from services.registry import RedisRegistry, register_and_promote

    client = redis.Redis.from_url(redis_url, socket_timeout=30.0)
    try:
        cfg = load(RegistrySettings).model_copy(
            update={"prefix": prefix, "signing_key": SecretStr(signing_key)})
        record = register_and_promote(RedisRegistry(client, cfg), model, reason=reason,
                                      parent=None, mode="manual",
                                      now_ms=int(time.time() * 1000), expected=None)
        return record.version
    finally:
        client.close()


@dataclass
class LocalLoop:
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
    admin_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def joiner_group(self) -> str:
        return f"loop-joiner-{self.tag}"

    @property
    def joiner_topics(self) -> list[str]:
        """The topics the joiner creates for its group: ticks and state (named by us), and
        Faust's assignor topic. Delete them when the loop is done."""
        group = self.joiner_group
        return [f"{group}-ticks", f"{group}-state", f"{group}-__assignor-__leader"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.serving_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            **kafka_env(self.kafka),
            "STREAMLEARN_REGISTRY_PREFIX": self.registry_prefix,
            "STREAMLEARN_REGISTRY_SIGNING_KEY": self.signing_key,
            "STREAMLEARN_SERVING_PORT": str(self.serving_port),
            "STREAMLEARN_SERVING_ADMIN_TOKEN": self.admin_token,
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
        self.procs[name] = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "services.cli", name, *args], env=self.env(),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def serving_ready(self) -> bool:
        """``/readyz`` of this loop's serving answers 200 (a champion is loaded)."""
        return answers(f"{self.url}/readyz")

    def dead(self) -> list[str]:
        """Processes that have exited, as ``name (exit code)``."""
        return [f"{name} (exit {proc.returncode})" for name, proc in self.procs.items()
                if proc.poll() is not None]

    def check_alive(self) -> None:
        """``RuntimeError``, with the logs, when one of the processes has exited."""
        dead = self.dead()
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited\n{self.logs()}")

    def stop(self) -> None:
        """SIGTERM every process group, SIGKILL the groups after 20 s at most (a child, the
        joiner's worker, may outlive its parent)."""
        stop_process(*self.procs.values(), timeout_s=20, group=True)
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-tail:]
                         for p in sorted(self.workdir.glob("*.log")))


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics, ignoring those that do not exist."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    names = list(names)
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(names, operation_timeout=30).values():
        try:
            future.result(timeout=30)
        except KafkaException:
            pass  # never created (e.g. a worker that did not get that far)
