"""`python -m bench NAME --quick --json` keeps its contract: the last stdout line is the figures."""

from __future__ import annotations

import subprocess
import sys

import orjson

from services.stack.manager import Stack


def run_bench(name: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "bench", name, "--quick", "--json"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return orjson.loads(result.stdout.strip().splitlines()[-1])


def test_kafka_bench_reports_every_figure(stack: Stack) -> None:
    figures = run_bench("kafka")
    assert set(figures) >= {
        "produce_msgs_per_s", "consume_msgs_per_s", "roundtrip_p50_ms", "roundtrip_p99_ms",
        "broker_cold_start_s", "broker_warm_start_s",
    }
    assert figures["messages"] == 50_000 and figures["message_bytes"] == 200
    assert figures["produce_msgs_per_s"] > 0 and figures["consume_msgs_per_s"] > 0
    assert 0 < figures["roundtrip_p50_ms"] <= figures["roundtrip_p99_ms"]
    assert figures["broker_cold_start_s"] > 0 and figures["broker_warm_start_s"] > 0
    assert isinstance(figures["meets_anchors"], bool)
