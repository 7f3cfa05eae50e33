"""A local redis-server (Debian's package) with AOF persistence into the stack's home."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from config.settings import RedisSettings, StackSettings
from services.local.stack.process import ManagedProcess, StackError


@dataclass(frozen=True, slots=True)
class RedisLayout:
    """Paths and address of the local redis-server."""

    host: str
    port: int
    home: Path

    @classmethod
    def from_settings(cls, stack: StackSettings, redis: RedisSettings) -> RedisLayout:
        host, port = redis.host_port()
        return cls(host=host, port=port, home=stack.home.resolve())

    @property
    def data_dir(self) -> Path:
        return self.home / "redis"

    @property
    def conf_file(self) -> Path:
        return self.home / "redis" / "redis.conf"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            name="redis",
            pidfile=self.home / "run" / "redis.pid",
            logfile=self.home / "logs" / "redis.log",
            # The title template below keeps the config path in the command line, so the
            # marker holds both before and after redis rewrites its process title.
            marker=str(self.conf_file),
        )


def redis_conf(layout: RedisLayout) -> str:
    """redis.conf: loopback only, AOF with fsync every second (≤ ~1 s of writes at risk).

    Example:
        >>> conf = redis_conf(RedisLayout("127.0.0.1", 6379, Path("/s")))
        >>> "appendfsync everysec" in conf and "appendonly yes" in conf
        True
    """
    return "\n".join(
        [
            f"bind {layout.host}",
            f"port {layout.port}",
            "protected-mode yes",
            "daemonize no",
            f"dir {layout.data_dir}",
            "appendonly yes",
            "appendfsync everysec",
            'appendfilename "appendonly.aof"',
            "save 3600 1",
            "loglevel notice",
            'proc-title-template "{title} {listen-addr} {config-file}"',
            "",
        ]
    )


def redis_argv(layout: RedisLayout) -> list[str]:
    """The redis-server command line (writes the config file first)."""
    server = shutil.which("redis-server")
    if server is None:
        raise StackError("redis-server is missing: apt-get install redis-server")
    layout.data_dir.mkdir(parents=True, exist_ok=True)
    layout.conf_file.write_text(redis_conf(layout))
    return [server, str(layout.conf_file)]
