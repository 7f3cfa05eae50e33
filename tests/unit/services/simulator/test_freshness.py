"""`streamlearn freshness`: staler training data costs log loss in a changing world."""

from __future__ import annotations

import csv
from pathlib import Path

from services.cli import main
from services.simulator import build
from services.simulator.freshness import freshness


def test_staler_training_data_costs_more_in_a_rotating_world() -> None:
    scenario = build("gradual", seed=3, drift_at=0, duration=3_000)
    rows = freshness(scenario, "logreg", {"hash_bits": 12}, lags=(0, 2_000), window=600,
                     evaluate=300)
    fresh, stale = rows
    assert fresh.optimal == stale.optimal and fresh.examples == stale.examples == 3_000
    assert fresh.optimal < fresh.log_loss < stale.log_loss


def test_the_command_writes_a_table_and_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "fresh"
    code = main(["freshness", "--lags", "0,500", "--window", "200", "--evaluate", "100",
                 "--model", "logreg", "--out", str(out)])
    assert code == 0
    with open(out / "freshness.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["lag"] for r in rows] == ["0", "500"]
    assert (out / "freshness.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_lags_are_refused_with_a_message() -> None:
    assert main(["freshness", "--lags", "-5"]) == 2
