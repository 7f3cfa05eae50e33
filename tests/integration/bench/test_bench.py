"""`python -m bench NAME --quick --json` keeps its contract: the last stdout line is the figures."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from config.settings import GateSettings, TrainerSettings
from services.local.stack.manager import Stack
from services.simulator import WorldConfig, build
from services.simulator.replay import QualityConfig, StageResult, run_stage, warm_champion


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


def test_quality_bench_reports_the_four_stages_against_the_truth() -> None:
    """In process (no stack needed): the four stages on one seeded replay."""
    figures = run_bench("quality")
    assert figures["scenario"] == "sudden"
    regret = figures["regret"]
    assert set(regret) == {"frozen", "stateless", "stateful", "continual"}
    # Regret is loss above the truth's: never negative on average, and a learning stage that
    # promoted something differs from the frozen model.
    assert all(r is not None and r > 0 for r in regret.values())
    stages = figures["stages"]
    assert stages["frozen"]["promotions"] == 0 and stages["frozen"]["decisions"] == {}
    assert figures["promotions"] == stages["stateful"]["promotions"] >= 1
    assert regret["stateful"] < regret["frozen"]
    assert figures["drift_alarm_batches"] is not None and figures["drift_alarm_batches"] >= 1
    assert isinstance(figures["bot_attack_logloss_delta"], float)
    # Every stage saw the same labels: same traffic, same truth.
    assert len({s["labels"] for s in stages.values()}) == 1
    # The floor of a model that does not know the user, on every stage's labels: positive
    # (the world has personal taste) and below the frozen model's regret.
    assert figures["nonpersonal_regret"] == round(stages["stateful"]["nonpersonal_regret"], 5)
    assert all(s["nonpersonal_regret"] > 0 for s in stages.values())
    assert 0 < stages["frozen"]["nonpersonal_regret"] < stages["frozen"]["regret"]
    share = figures["pre_drift_within_tolerance"]
    assert share is not None and 0.0 <= share <= 1.0
    # What users were shown: served over oracle expected CTR for every stage and phase, the
    # same before the drift for every stage that starts from the warm champion, and the drift
    # (the favourite category becomes the least liked) takes the frozen ranking far down.
    ctr = figures["ctr_share"]
    assert set(ctr) == set(stages)
    assert all(set(s) == {"before", "after", "tail"} for s in ctr.values())
    assert all(0.0 < v <= 1.0 for s in ctr.values() for v in s.values())
    assert ctr["frozen"]["after"] < 0.5 * ctr["frozen"]["before"]
    recovered = figures["ctr_recovery_labels"]
    assert recovered is None or recovered == 0 or recovered >= 1_000  # 0: it never fell


def _frozen_stage(scenario: str, affinity: float) -> StageResult:
    """A short frozen stage of the quality bench in a world with the given personal affinity."""
    cfg = QualityConfig(scenario=scenario, warmup=300, requests=900, drift_after=400)
    built = build(scenario, cfg.seed, drift_at=cfg.warmup + cfg.drift_after)
    world = built.world(WorldConfig(affinity=affinity))
    settings, gate = TrainerSettings(), GateSettings()
    initial = warm_champion(built, world, cfg, settings)
    return run_stage("frozen", built, world, initial, cfg, settings, gate)


def test_quality_bench_runs_the_loop_class_the_trainer_service_runs() -> None:
    """``bench quality`` drives the trainer's own decision loop, built from its settings."""
    import services.simulator.replay as replay
    import services.trainer.service as service
    from models.training.loop import Learner
    from services.trainer.build import build_learner

    assert replay.build_learner is build_learner is service.build_learner
    settings, gate = TrainerSettings(), GateSettings()
    for stage in ("stateless", "stateful", "continual"):
        learner = build_learner(replay.stage_settings(stage, settings, gate), gate)
        assert type(learner) is Learner


def test_quality_bench_nonpersonal_regret_is_zero_exactly_without_personal_taste() -> None:
    """In process, no stack: without affinity the users' average truth is the truth, so its
    regret vanishes (bots' labels, which it cannot score, are left out); with affinity it is
    the part of the regret no model without the user can remove."""
    without = _frozen_stage("sudden", affinity=0.0)
    assert without.nonpersonal_regret == pytest.approx(0.0, abs=1e-12)
    with_bots = _frozen_stage("bot-attack", affinity=0.0)
    assert with_bots.nonpersonal_regret == pytest.approx(0.0, abs=1e-12)
    personal = _frozen_stage("sudden", affinity=1.0)
    assert 0.01 < personal.nonpersonal_regret < personal.regret
