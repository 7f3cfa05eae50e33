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


def test_joiner_bench_reports_every_figure_and_loses_nothing(stack: Stack) -> None:
    figures = run_bench("joiner")
    assert set(figures) >= {
        "input_msgs_per_s", "passthrough_msgs_per_s", "ratio", "join_latency_p50_ms",
        "join_latency_p99_ms", "lost", "duplicates", "rss_mb_per_100k_pending",
    }
    assert (figures["lost"], figures["duplicates"], figures["unexpected"]) == (0, 0, 0)
    assert 0 < figures["input_msgs_per_s"] and 0 < figures["passthrough_msgs_per_s"]
    ratio = figures["input_msgs_per_s"] / figures["passthrough_msgs_per_s"]
    assert abs(figures["ratio"] - ratio) <= 0.001
    assert figures["positives_timed"] > 0
    assert 0 < figures["join_latency_p50_ms"] <= figures["join_latency_p99_ms"]
    assert figures["rss_mb_per_100k_pending"] > 0
