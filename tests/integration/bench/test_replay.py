"""`python -m bench replay --quick --json`: MovieLens-100K in process and through the real
services, every model's figure present and sensible, every rating sent accounted for."""

from __future__ import annotations

import subprocess
import sys

import orjson

from services.local.stack.manager import Stack

QUICK_RATINGS = 12_000  # bench/replay.py's quick prefix (tests do not import bench)
QUICK_SERVICES = 10_000


def test_replay_bench_scores_every_model_and_the_services_on_the_same_ratings(
        stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "replay", "--quick", "--json"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = orjson.loads(result.stdout.strip().splitlines()[-1])

    assert figures["ratings"] == QUICK_RATINGS
    assert 0.5 < figures["positive_share"] < 0.6  # rating >= 4: 55 % of MovieLens-100K
    # Every model ranks better than chance on real data, none perfectly.
    for name in ("auc", "challenger_auc", "model_auc_at_batch", "river_logreg_auc",
                 "river_fm_auc", "river_best_auc", "river_logreg_auc_at_batch", "batch_auc",
                 "auc_last20"):
        assert 0.5 < figures[name] < 1.0, (name, figures[name])
    assert figures["river_best_auc"] == max(figures["river_logreg_auc"],
                                            figures["river_fm_auc"])
    assert figures["river_best"] in ("river_logreg", "river_fm")
    for name in ("logloss", "river_logreg_logloss", "river_fm_logloss", "batch_logloss"):
        assert 0.0 < figures[name] < 5.0, (name, figures[name])
    assert figures["promotions"] >= 1

    # Through the services: every rating served once, labelled once, with its own label.
    assert figures["services_ratings"] == figures["services_served"] == QUICK_SERVICES
    assert figures["services_examples"] == QUICK_SERVICES
    assert figures["services_failed_calls"] == 0
    assert figures["services_label_mismatches"] == 0
    assert figures["services_versions"] >= 1  # the cold start at least
    # The served scores (a cold start, then what the trainer promoted) rank at least as
    # well as a constant; the in-process figure is on exactly the same ratings.
    assert 0.5 <= figures["services_auc"] < 1.0
    assert 0.5 <= figures["auc_same_subset"] < 1.0
    ratio = figures["services_auc"] / figures["auc_same_subset"]
    assert abs(figures["services_ratio"] - ratio) < 1e-3
    assert set(figures["targets"]) == {"auc_at_least_river_best", "services_at_least_98pct"}
