"""`python -m bench serving --quick --json`: every figure issue 5 asks for, from one run."""

from __future__ import annotations

import subprocess
import sys

import orjson

from services.local.stack.manager import Stack


def test_serving_bench_reports_every_figure(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "serving", "--quick", "--json"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures) >= {"candidates", "rps", "p50_ms", "p99_ms", "baseline_rps", "ratio",
                            "swap_visible_ms_p50", "failed"}
    assert figures["candidates"] == 20
    assert figures["rps"] > 0 and figures["baseline_rps"] > 0
    assert figures["ratio"] == round(figures["rps"] / figures["baseline_rps"], 3)
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    # Every swap was seen by the load and no request failed across them.
    assert figures["swaps"] == 4 and figures["swaps_not_visible"] == 0
    assert 0 < figures["swap_visible_ms_p50"] <= figures["swap_visible_ms_max"]
    assert figures["failed"] == 0
    assert isinstance(figures["meets_targets"], bool)
    # Issue 7: instrumentation on against off, in the same run.
    assert figures["rps_metrics_off"] > 0
    assert figures["metrics_overhead"] == round(1 - figures["rps"] / figures["rps_metrics_off"], 3)
    cpu = figures["cpu_us_per_request"]
    assert cpu["serving"] > 0 and cpu["metrics_off"] > 0 and cpu["baseline"] > 0
    # Each promotion was a new version, registered the way the trainer does it first.
    assert figures["register_ms_p50"] > 0
    assert 0 < figures["loadgen_cpu"] < 1.5
    # Where serving's CPU goes: its threads add up to the process (threads are long-lived;
    # the two readings are in clock ticks, so allow a little rounding), and the route's steps.
    threads = figures["serving_cpu_us_by_thread"]
    assert set(threads) == {"main", "kafka", "other"}
    assert threads["main"] > 0 and threads["kafka"] > 0
    assert 0.9 * cpu["serving"] <= sum(threads.values()) <= 1.1 * cpu["serving"]
    steps = figures["step_us"]
    assert set(steps) == {"parse", "score", "model", "respond", "log"}
    assert all(v > 0 for v in steps.values())
    assert steps["model"] < steps["score"]  # the model is one part of scoring
    # From the unrounded baseline figure: within one µs of the rounded one's.
    assert abs(figures["budget_us"] - cpu["baseline"] * (1 / 0.6 - 1)) <= 1
