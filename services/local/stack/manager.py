"""`make up`, `make down`, `make status`: the local Kafka + Redis stack without Docker.

``up`` is idempotent: a service already running from this home is left alone; a port held by a
process that is not ours is an error rather than a silent "already up" (it would be someone
else's server). ``down`` stops exactly the processes recorded in the PID files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from confluent_kafka.admin import AdminClient

from config.settings import KafkaSettings, RedisSettings, StackSettings
from services.local.stack import kafka as kafka_mod
from services.local.stack import redis as redis_mod
from services.local.stack.process import ManagedProcess, StackError, port_open
from services.local.wait import pid_alive, wait_for


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What ``status`` reports for one service."""

    name: str
    address: str
    pid: int | None
    answering: bool

    @property
    def state(self) -> str:
        if self.pid is not None:
            return "running" if self.answering else "starting/unhealthy"
        return "external" if self.answering else "stopped"


@dataclass(frozen=True, slots=True)
class StartReport:
    """What ``up`` did for one service."""

    name: str
    action: str  # "started" | "already running" | "external"
    seconds: float


def kafka_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request and lists itself."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    if not port_open(host, int(port)):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet})
    try:
        return len(admin.list_topics(timeout=timeout_s).brokers) > 0
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False


def redis_answers(url: str) -> bool:
    """True when Redis at ``url`` answers PING."""
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1.0).ping())
    except (redis.RedisError, OSError):
        return False


class _QuietLogger:
    def log(self, *args: object, **kwargs: object) -> None:
        pass


_quiet = _QuietLogger()


class Stack:
    """The local stack rooted at ``StackSettings.home``."""

    def __init__(self, stack: StackSettings, kafka: KafkaSettings, redis_: RedisSettings) -> None:
        self.settings = stack
        self.kafka_settings = kafka
        self.redis_settings = redis_
        self.kafka = kafka_mod.KafkaLayout.from_settings(stack, kafka)
        self.redis = redis_mod.RedisLayout.from_settings(stack, redis_)

    # -- queries -------------------------------------------------------------------------------
    def status(self) -> list[ServiceStatus]:
        """Each service: recorded PID (when alive and ours) and whether it answers."""
        return [
            ServiceStatus(
                "kafka",
                f"{self.kafka.host}:{self.kafka.port}",
                self.kafka.process.running_pid(),
                kafka_answers(self.kafka_settings.bootstrap_servers),
            ),
            ServiceStatus(
                "redis",
                f"{self.redis.host}:{self.redis.port}",
                self.redis.process.running_pid(),
                redis_answers(self.redis_settings.url),
            ),
        ]

    def is_up(self) -> bool:
        """True when both Kafka and Redis answer, whoever runs them."""
        return kafka_answers(self.kafka_settings.bootstrap_servers) and redis_answers(
            self.redis_settings.url
        )

    # -- lifecycle -----------------------------------------------------------------------------
    def up(self) -> list[StartReport]:
        """Start whatever is not running and wait until both answer (idempotent).

        Raises:
            StackError: a port is taken by a process that is not ours, a prerequisite is
                missing, or a service did not answer within ``start_timeout_s``.
        """
        return [self.up_redis(), self.up_kafka()]

    def down(self) -> list[str]:
        """Stop the processes this stack started; returns the names of those stopped."""
        stopped = []
        for proc in (self.kafka.process, self.redis.process):
            if proc.stop(timeout_s=45.0):
                stopped.append(proc.name)
        return stopped

    def up_redis(self) -> StartReport:
        """Start redis-server unless it runs (idempotent)."""
        url = self.redis_settings.url
        return self._ensure(
            self.redis.process,
            ports=(self.redis.port,),
            host=self.redis.host,
            ready=lambda: redis_answers(url),
            argv=lambda: redis_mod.redis_argv(self.redis),
        )

    def up_kafka(self) -> StartReport:
        """Start the Kafka broker unless it runs (idempotent)."""
        layout = self.kafka
        bootstrap = self.kafka_settings.bootstrap_servers

        def argv() -> list[str]:
            kafka_mod.ensure_jars(layout)
            props, log_conf = kafka_mod.write_config(layout)
            kafka_mod.format_storage(layout, props, log_conf)
            return kafka_mod.broker_argv(layout, props, log_conf)

        return self._ensure(
            layout.process,
            ports=(layout.port, layout.controller_port),
            host=layout.host,
            ready=lambda: kafka_answers(bootstrap),
            argv=argv,
        )

    def _ensure(
        self,
        proc: ManagedProcess,
        ports: tuple[int, ...],
        host: str,
        ready: Callable[[], bool],
        argv: Callable[[], list[str]],
    ) -> StartReport:
        t0 = time.monotonic()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        if (pid := proc.running_pid()) is not None:
            self._wait(proc, ready, pid)
            return StartReport(proc.name, "already running", time.monotonic() - t0)
        for port in ports:
            self._refuse_foreign_port(proc, host, port)
        pid = proc.start(argv())
        try:
            self._wait(proc, ready, pid)
        except BaseException:
            proc.stop(timeout_s=10.0, pid=pid)  # leave nothing half-started behind
            raise
        return StartReport(proc.name, "started", time.monotonic() - t0)

    def _refuse_foreign_port(self, proc: ManagedProcess, host: str, port: int) -> None:
        if port_open(host, port):
            raise StackError(
                f"{proc.name}: port {host}:{port} is in use by a process this stack did not "
                f"start; stop it or point streamlearn elsewhere (STREAMLEARN_KAFKA_BOOTSTRAP_"
                f"SERVERS, STREAMLEARN_STACK_KAFKA_CONTROLLER_PORT, STREAMLEARN_REDIS_URL)"
            )

    def _wait(self, proc: ManagedProcess, ready: Callable[[], bool], pid: int) -> None:
        timeout = self.settings.start_timeout_s

        def ok() -> bool:
            if not pid_alive(pid):
                raise StackError(f"{proc.name} exited during start; log:\n{proc.log_tail()}")
            return ready()

        try:
            wait_for(ok, timeout, f"{proc.name} to answer")
        except TimeoutError:
            raise StackError(
                f"{proc.name} did not answer within {timeout:.0f} s; log:\n{proc.log_tail()}"
            ) from None
