"""`up` is idempotent and `down` leaves no process behind — on a second, private stack."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from config.settings import KafkaSettings, RedisSettings, StackSettings
from services.local.stack.manager import Stack
from services.local.stack.process import StackError, pid_alive, port_open


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_stack(home: Path, jar_cache: Path) -> Stack:
    return Stack(
        StackSettings(home=home, cache_dir=jar_cache, kafka_controller_port=free_port()),
        KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"),
        RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"),
    )


def test_up_is_idempotent_and_down_stops_exactly_its_processes(
    tmp_path: Path, stack: Stack
) -> None:
    # Share the main stack's jar cache: this test is about processes, not Maven.
    s = private_stack(tmp_path / "home", stack.kafka.cache_root)
    try:
        first = s.up()
        assert [(r.name, r.action) for r in first] == [("redis", "started"), ("kafka", "started")]
        pids = {st.name: st.pid for st in s.status()}
        assert all(pids.values()) and all(st.state == "running" for st in s.status())

        second = s.up()
        assert [(r.name, r.action) for r in second] == [
            ("redis", "already running"), ("kafka", "already running"),
        ]
        assert {st.name: st.pid for st in s.status()} == pids

        # Redis data really persists through the AOF in the stack's home.
        redis.Redis.from_url(s.redis_settings.url).set("k", "v")
    finally:
        stopped = s.down()
    assert sorted(stopped) == ["kafka", "redis"]
    for pid in pids.values():
        assert pid is not None and not pid_alive(pid)
    assert not port_open(s.kafka.host, s.kafka.port)
    assert not port_open(s.redis.host, s.redis.port)
    assert [st.state for st in s.status()] == ["stopped", "stopped"]
    assert (tmp_path / "home" / "redis" / "appendonlydir").is_dir()
    assert s.down() == [], "a second down is a no-op"


def test_up_refuses_a_port_held_by_someone_else(tmp_path: Path, stack: Stack) -> None:
    s = private_stack(tmp_path / "home", stack.kafka.cache_root)
    with socket.socket() as squatter:
        squatter.bind((s.redis.host, s.redis.port))
        squatter.listen()
        with pytest.raises(StackError, match="in use by a process this stack did not start"):
            s.up()
    assert s.redis.process.running_pid() is None
    assert s.kafka.process.running_pid() is None
