"""The trainer's metrics: names, bounded labels, per-version series forgotten on a swap."""

from __future__ import annotations

from prometheus_client import generate_latest

from services.trainer.metrics import GATE_RULES, TrainerMetrics


def test_every_gate_rule_has_a_child_and_unknown_rules_stay_bounded() -> None:
    m = TrainerMetrics()
    m.decision("reject", "worse")
    m.decision("keep_training", "something new")
    get = m.registry.get_sample_value
    assert get("streamlearn_trainer_gate_decisions_total",
               {"outcome": "reject", "rule": "worse"}) == 1
    assert get("streamlearn_trainer_gate_decisions_total",
               {"outcome": "keep_training", "rule": "not_significant"}) == 1
    assert "better" in GATE_RULES


def test_prequential_series_of_old_versions_are_removed() -> None:
    m = TrainerMetrics()
    m.prequential("ctr-v1.0", "champion", 0.3, 0.7)
    m.prequential("ctr-v1.0", "challenger", 0.2, 0.8)
    m.prequential("ctr-v1.1", "champion", 0.2, 0.8)
    m.forget_versions("ctr-v1.1")
    text = generate_latest(m.registry).decode()
    assert 'model_version="ctr-v1.0"' not in text
    assert 'streamlearn_trainer_prequential_logloss{arm="champion",model_version="ctr-v1.1"}' \
        in text


def test_every_trainer_metric_follows_the_naming_rule() -> None:
    text = generate_latest(TrainerMetrics().registry).decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    ours = {n for n in names if not n.startswith("process_")}
    assert ours and all(n.startswith(("streamlearn_trainer_", "streamlearn_drift_"))
                        for n in ours)


def test_the_off_policy_ctr_of_both_arms_follows_the_decisions_that_had_it() -> None:
    m = TrainerMetrics()

    def value(arm: str) -> float | None:
        return m.registry.get_sample_value("streamlearn_trainer_ranking_ctr", {"arm": arm})

    m.decision("keep_training", "not_significant", {"n": 2048.0})  # no explored traffic
    assert value("champion") is None
    m.decision("reject", "ranking", {"ranking_champion_ctr": 0.3, "ranking_challenger_ctr": 0.1})
    assert (value("champion"), value("challenger")) == (0.3, 0.1)
    m.decision("promote", "better", {"n": 4096.0})  # the last estimate stays shown
    assert value("challenger") == 0.1
