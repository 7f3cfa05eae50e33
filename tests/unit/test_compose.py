"""docker-compose.yml describes the same stack as `make up` (checked by a real compose client)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.paths import ROOT


def compose_command() -> list[str]:
    """`docker compose` when the v2 plugin is there, else Debian's `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise AssertionError("no compose client: `make system-deps` installs docker-compose")


def normalised() -> dict[str, Any]:
    result = subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, check=False, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_file_is_valid_and_has_the_stack() -> None:
    config = normalised()
    services = config["services"]
    assert {"kafka", "redis", "prometheus", "topics"} <= services.keys()

    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert str(kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) == "1"
    assert "-Xmx512m" in kafka_env["KAFKA_HEAP_OPTS"]

    redis_cmd = services["redis"]["command"]
    assert "--appendonly" in redis_cmd and "everysec" in redis_cmd

    topics = services["topics"]
    assert topics["environment"]["STREAMLEARN_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "kafka" in topics["depends_on"]


def test_prometheus_config_mounted_by_compose_exists() -> None:
    volumes = normalised()["services"]["prometheus"]["volumes"]
    sources = [v["source"] if isinstance(v, dict) else v.split(":")[0] for v in volumes]
    mounted = [s for s in sources if s.endswith("prometheus.yml")]
    assert mounted and Path(ROOT / "config/prometheus/prometheus.yml").is_file()
