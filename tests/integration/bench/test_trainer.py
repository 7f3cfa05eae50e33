"""`python -m bench trainer --quick --json` keeps its contract (issue 4's figures, last line)."""

from __future__ import annotations

import subprocess
import sys

import orjson

from config.settings import TrainerSettings, load
from services.local.stack.manager import Stack


def test_trainer_bench_reports_every_figure(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "trainer", "--quick", "--json"],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert set(figures) >= {
        "model", "train_samples_per_s", "score_samples_per_s", "update_ms_p50",
        "system_logloss", "inprocess_logloss", "logloss_ratio",
    }
    # The trainer's configured model (bench/trainer.py builds it from the trainer settings).
    assert figures["model"] == load(TrainerSettings).model and figures["examples"] == 12_000
    # The trainer was fed by a real joiner, which wrote exactly the stream's examples (the
    # bench fails on any lost, unexpected or duplicated example; this checks it reports so).
    assert "streamlearn join" in figures["feed"]
    assert figures["joined_examples"] == figures["expected_examples"] == 12_000
    assert figures["join_input_msgs"] > 2 * 12_000
    assert figures["train_samples_per_s"] > 0 and figures["score_samples_per_s"] > 0
    assert figures["update_ms_p50"] > 0
    # Same stream, learner and batches, labels revealed as the join contract reveals them:
    # joiner and trainer together must not change the loss beyond the order noise of the
    # joiner's two input topics.
    assert 0 < figures["inprocess_logloss"] < 0.69
    assert abs(figures["logloss_ratio"] - 1.0) <= 0.02
    # In the order the joiner wrote, the trainer's plumbing itself changes nothing.
    assert abs(figures["joined_order_logloss"] / figures["system_logloss"] - 1.0) <= 1e-4
    assert figures["logloss_ratio"] == figures["system_logloss"] / figures["inprocess_logloss"]
