"""`streamlearn simulate` against real serving and a real joiner (issue 6).

Serving and one joiner worker run as in the closed-loop test (fresh topics, registry prefix and
groups); the simulator runs as a subprocess against serving's URL, with the same environment,
and writes its summary and time series. Its predictions and events reach Kafka: the joiner
emits examples from them.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from tests.integration.loop_helpers import (
    LoopStack,
    scrape,
    wait_for,
)
from tests.paths import ROOT

SIGNING_KEY = "simulate-integration-key"
SETTINGS = {  # short windows so labels come within seconds
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "2000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "1000",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "3000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
}
REQUESTS = 300  # at 60 a second: 5 s of traffic, 1,500 shown predictions


def _examples_out(loop: LoopStack) -> float:
    samples = scrape(loop.joiner_metrics_port, "streamlearn_joiner_examples_out_total") or {}
    return sum(samples.values())


def test_simulate_stationary_drives_the_real_api_and_accounts_from_the_truth(
    loop: LoopStack, tmp_path: Path
) -> None:
    loop.start("serve")
    wait_for(loop.serving_ready, 60, "serving to be ready", loop.logs)
    loop.start("join")
    wait_for(lambda: scrape(loop.joiner_metrics_port, "streamlearn_joiner_"), 60,
             "the joiner to start", loop.logs)
    out = tmp_path / "sim"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "simulate", "--scenario", "stationary",
         "--seed", "4", "--requests", str(REQUESTS), "--rate", "60", "--every", "200",
         "--api", loop.url, "--out", str(out)],
        cwd=ROOT, env=loop.env(), capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{loop.logs()}"
    assert "simulation summary" in done.stdout
    print(done.stdout[-3000:])

    summary = json.loads((out / "summary.json").read_text())
    shown = REQUESTS * 5  # top 5 of 20 candidates
    assert (summary["requests"], summary["predictions"]) == (REQUESTS, REQUESTS * 20)
    assert summary["failed_calls"] == 0, summary["last_error"]
    assert summary["labels"] == shown and summary["forced_labels"] == 0
    assert summary["events_sent"] == summary["events_accepted"] == shown + summary["clicks"]
    assert summary["events_rejected"] == 0
    assert (summary["frozen_version"], summary["champion"]) == ("ctr-v1.0", "ctr-v1.0")
    loss = summary["logloss"]
    # The truth is the best possible on average; the cold-start prior is far from useless.
    assert loss["optimal"] <= loss["frozen"] and loss["optimal"] <= loss["system"]
    assert 0.05 < loss["optimal"] < loss["system"] < 1.0
    assert 0.0 < summary["ctr"]["served_expected"] <= summary["ctr"]["oracle_expected"]

    with open(out / "timeseries.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["labels"]) for r in rows[:-1]] == list(range(200, shown + 1, 200))
    assert int(rows[-1]["labels"]) == shown
    for row in rows:
        assert float(row["optimal"]) <= float(row["frozen"]) + 0.05
        assert 0.0 < float(row["system"]) < 2.0 and row["champion"] == "ctr-v1.0"

    # What the simulator sent reached Kafka: the joiner labels it (every shown prediction's
    # window closes within a few seconds of event time).
    wait_for(lambda: _examples_out(loop) >= shown, 30,
             f"the joiner to emit {shown} examples (has {_examples_out(loop)})", loop.logs)
    loop.check_alive()
