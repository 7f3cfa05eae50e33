"""`streamlearn models …` as a user runs it: a subprocess against the real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from config.settings import RegistrySettings
from models import build_model
from models.registry import Lineage, ModelRecord, OffsetRange
from services.cli import main
from services.local.stack.manager import Stack
from services.registry.redis import RedisRegistry
from tests.paths import ROOT


@pytest.fixture
def registry(stack: Stack) -> Iterator[RedisRegistry]:
    client = redis.Redis.from_url(stack.redis_settings.url)
    prefix = f"test-cli-{uuid.uuid4().hex[:10]}:"
    yield RedisRegistry(client, RegistrySettings(prefix=prefix, signing_key="cli-test-key"))
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def cli(stack: Stack, registry: RedisRegistry) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = {
        **os.environ,
        "STREAMLEARN_REDIS_URL": stack.redis_settings.url,
        "STREAMLEARN_REGISTRY_PREFIX": registry.cfg.prefix,
        "STREAMLEARN_REGISTRY_SIGNING_KEY": "cli-test-key",
        "COLUMNS": "200",
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "models", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )

    return run


def register(registry: RedisRegistry, parent: str | None) -> str:
    model = build_model("logreg", hash_bits=10)
    blob = model.save()
    mode = "stateful" if parent else "cold_start"
    version = registry.next_version(parent, mode)
    registry.put(ModelRecord.for_model(
        model, blob, version=version, parent=parent, mode=mode,
        created_at=int(time.time() * 1000),
        lineage=Lineage((OffsetRange("examples", 2, 40, 1063),), 1024),
    ), blob)
    return version


def test_list_in_a_subprocess_with_env_overrides(
    registry: RedisRegistry, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    register(registry, None)
    register(registry, "ctr-v1.0")
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert registry.cfg.prefix in listed.stdout
    assert listed.stdout.index("ctr-v1.1") < listed.stdout.index("ctr-v1.0")


@pytest.fixture
def run_main(
    stack: Stack, registry: RedisRegistry, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Callable[..., tuple[int, str]]:
    """``services.cli.main`` in this process (saves a 4 s torch import per command)."""
    monkeypatch.setenv("STREAMLEARN_REDIS_URL", stack.redis_settings.url)
    monkeypatch.setenv("STREAMLEARN_REGISTRY_PREFIX", registry.cfg.prefix)
    monkeypatch.setenv("STREAMLEARN_REGISTRY_SIGNING_KEY", "cli-test-key")
    monkeypatch.setenv("COLUMNS", "200")  # each command builds its console when it runs

    def run(*args: str) -> tuple[int, str]:
        code = main(["models", *args])
        return code, capsys.readouterr().out

    return run


def test_show_promote_rollback(
    registry: RedisRegistry, run_main: Callable[..., tuple[int, str]]
) -> None:
    register(registry, None)
    register(registry, "ctr-v1.0")
    code, out = run_main("show", "ctr-v1.1")
    assert code == 0
    assert "lineage" in out and "parent" in out and "ctr-v1.0" in out
    assert "│ examples │ 2         │ 40           │ 1063        │ 1024     │" in out
    assert run_main("promote", "ctr-v1.0")[0] == 0
    code, out = run_main("promote", "ctr-v1.1", "--reason", "looks good")
    assert code == 0 and "champion: ctr-v1.0 → ctr-v1.1" in out
    assert registry.champion_version() == "ctr-v1.1"
    assert "already the champion" in run_main("promote", "ctr-v1.1")[1]
    code, out = run_main("rollback")
    assert code == 0 and "champion ctr-v1.1 → ctr-v1.0" in out
    assert registry.champion_version() == "ctr-v1.0"
    assert registry.history()[1].reason == "looks good"


def test_refusals_exit_1_with_the_reason(
    registry: RedisRegistry, run_main: Callable[..., tuple[int, str]]
) -> None:
    code, out = run_main("rollback")
    assert code == 1 and "no champion to roll back" in out
    code, out = run_main("promote", "ctr-v3.0")
    assert code == 1 and "unknown version ctr-v3.0" in out
