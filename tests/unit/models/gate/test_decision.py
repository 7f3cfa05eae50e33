"""The gate on constructed loss streams: every rule decides exactly where it should.

The streams are deterministic. Each block of 40 examples has two groups of 20: group A with
6 clicks (CTR 0.30) and group B with 1 click (CTR 0.05), 7/40 = 0.175 overall. A model is
described by how sharply it separates the groups: ``sharpness=1`` predicts the true group CTRs,
``0`` predicts the overall CTR for everyone (calibrated on average, no discrimination).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from config.settings import GateSettings, load
from models.errors import GateError
from models.gate.decision import GateConfig, GateDecision, PairedLosses, decide

CTR = 7 / 40
CFG = GateConfig(min_examples=1000, margin=0.0, alpha=0.05, sanity_tolerance=0.01,
                 calibration_tolerance=0.25, auc_floor=0.55)


def make_labels(blocks: int) -> np.ndarray:
    group_a = [1] * 6 + [0] * 14
    group_b = [1] * 1 + [0] * 19
    return np.tile(np.array(group_a + group_b, dtype=np.float64), blocks)


def make_scores(blocks: int, sharpness: float = 1.0, scale: float = 1.0,
                flip: bool = False) -> np.ndarray:
    a, b = (0.05, 0.30) if flip else (0.30, 0.05)
    per_group = [CTR + sharpness * (a - CTR), CTR + sharpness * (b - CTR)]
    block = np.repeat(np.array(per_group) * scale, 20)
    return np.tile(block, blocks)


def make_pairs(blocks: int = 50, champion: dict[str, float] | None = None,
               challenger: dict[str, float] | None = None) -> PairedLosses:
    return PairedLosses.from_scores(
        make_labels(blocks),
        make_scores(blocks, **(champion or {})),
        make_scores(blocks, **(challenger or {})),
    )


def assert_serialisable(decision: GateDecision) -> None:
    json.dumps(decision.figures, allow_nan=False)
    assert all(isinstance(v, float) and math.isfinite(v) for v in decision.figures.values())


def test_better_challenger_is_promoted() -> None:
    d = decide(make_pairs(champion={"sharpness": 0.3}), None, CFG)
    assert (d.outcome, d.rule) == ("promote", "better")
    assert d.reason == ("better: challenger log loss 0.40469 vs champion 0.43580, improvement "
                        "0.03111 over margin 0, one-sided paired t-test p=5.8e-10 < alpha 0.05")
    assert d.figures["n"] == 2000.0 and d.figures["p_better"] < 1e-9
    assert d.figures["sanity_n"] == 0.0
    assert_serialisable(d)


def test_equal_challenger_keeps_training() -> None:
    d = decide(make_pairs(), make_pairs(blocks=10), CFG)
    assert d == GateDecision(
        "keep_training",
        "not_significant: challenger log loss 0.40469 vs champion 0.40469, improvement 0.00000"
        " over margin 0, one-sided paired t-test p=0.5 >= alpha 0.05",
        d.figures,
        "not_significant",
    )
    assert d.figures["mean_diff"] == 0.0 and d.figures["sanity_rel_change"] == 0.0


def test_worse_challenger_is_rejected() -> None:
    d = decide(make_pairs(challenger={"sharpness": 0.3}), None, CFG)
    assert (d.outcome, d.rule) == ("reject", "worse")
    assert d.reason == ("worse: challenger log loss 0.43580 vs champion 0.40469, "
                        "one-sided paired t-test p=5.8e-10 < alpha 0.05")
    assert_serialisable(d)


def test_forgetting_on_the_sanity_set_is_rejected() -> None:
    fresh = make_pairs(champion={"sharpness": 0.3})
    sanity = make_pairs(blocks=10, challenger={"sharpness": 0.3})
    d = decide(fresh, sanity, CFG)
    assert d == GateDecision(
        "reject",
        "forgetting: sanity-set log loss 0.43580 vs champion 0.40469 (+7.7% > "
        "sanity_tolerance 1.0%, one-sided paired t-test p=0.009 < alpha 0.05)",
        d.figures,
        "forgetting",
    )
    assert d.figures["sanity_n"] == 400.0


def test_forgetting_beyond_tolerance_by_chance_is_not_rejected() -> None:
    # One block of 40 sanity examples: the challenger's loss is 7.7 % higher, which such a
    # small set cannot tell from noise. Rejecting on it discarded challengers again and again
    # while they relearnt a shifted world (BENCHMARKS.md, quality).
    fresh = make_pairs(champion={"sharpness": 0.3})
    sanity = make_pairs(blocks=1, challenger={"sharpness": 0.3})
    d = decide(fresh, sanity, CFG)
    assert d.figures["sanity_rel_change"] > CFG.sanity_tolerance
    assert d.figures["sanity_p_worse"] >= CFG.alpha
    assert (d.outcome, d.rule) == ("promote", "better")


def test_forgetting_within_tolerance_still_promotes() -> None:
    fresh = make_pairs(champion={"sharpness": 0.3})
    sanity = make_pairs(blocks=10, challenger={"sharpness": 0.8})
    d = decide(fresh, sanity, CFG)
    assert 0.0 < d.figures["sanity_rel_change"] < CFG.sanity_tolerance
    assert (d.outcome, d.rule) == ("promote", "better")


def test_nan_scores_are_rejected_whatever_the_count() -> None:
    labels = make_labels(1)
    challenger = make_scores(1)
    challenger[3] = np.nan
    challenger[7] = np.inf
    fresh = PairedLosses.from_scores(labels, make_scores(1), challenger)
    d = decide(fresh, None, CFG)
    assert d == GateDecision("reject", "finite: challenger produced 2 NaN/inf score(s)",
                             d.figures, "finite")
    assert_serialisable(d)


def test_nan_on_the_sanity_set_alone_is_rejected() -> None:
    sanity_scores = make_scores(1)
    sanity_scores[0] = np.nan
    sanity = PairedLosses.from_scores(make_labels(1), make_scores(1), sanity_scores)
    d = decide(make_pairs(champion={"sharpness": 0.3}), sanity, CFG)
    assert (d.outcome, d.reason) == ("reject", "finite: challenger produced 1 NaN/inf score(s)")


def test_miscalibrated_challenger_is_rejected() -> None:
    d = decide(make_pairs(challenger={"scale": 2.0}), None, CFG)
    assert d.rule == "calibration"
    assert d.reason == ("calibration: mean prediction 0.3500 vs observed CTR 0.1750, relative "
                        "error 1.00 > calibration_tolerance 0.25 (z=-19.3) and above the "
                        "champion's 0.00")
    assert d.outcome == "reject"


def test_challenger_closer_to_the_ctr_than_a_drifted_champion_is_not_rejected() -> None:
    # After a drift the champion predicts 2.4x the observed CTR; the adapting challenger is
    # still 1.4x off (beyond the tolerance) but closer, and better: refusing it would keep
    # the worse model serving.
    d = decide(make_pairs(champion={"scale": 2.4}, challenger={"scale": 1.4}), None, CFG)
    assert d.figures["calibration_error"] > CFG.calibration_tolerance
    assert d.figures["champion_calibration_error"] == pytest.approx(1.4)
    assert (d.outcome, d.rule) == ("promote", "better")


def test_challenger_as_far_off_as_the_champion_is_not_rejected_for_calibration() -> None:
    # A challenger judged on evidence it scored exactly as the champion (a replica before its
    # first update) is no worse calibrated: rejecting it discarded every replica of a
    # miscalibrated champion before it could learn anything (quality replay, after a drift).
    d = decide(make_pairs(champion={"scale": 2.0}, challenger={"scale": 2.0}), None, CFG)
    assert d.figures["calibration_error"] == d.figures["champion_calibration_error"] > 0.25
    assert (d.outcome, d.rule) == ("keep_training", "not_significant")


def test_calibration_gap_within_sampling_noise_is_not_rejected() -> None:
    # 50 clicks in 1000, challenger expects 65: 30 % relative error but z = -1.92 > -1.96.
    labels = np.tile(np.array([1.0] + [0.0] * 19), 50)
    challenger = np.where(labels == 1.0, 0.2, 0.058)
    champion = np.where(labels == 1.0, 0.1, 0.06)
    d = decide(PairedLosses.from_scores(labels, champion, challenger), None, CFG)
    assert d.figures["calibration_error"] > CFG.calibration_tolerance
    assert abs(d.figures["calibration_z"]) < 1.96
    assert d.rule != "calibration"


def test_auc_under_the_floor_is_rejected() -> None:
    d = decide(make_pairs(challenger={"flip": True}), None, CFG)
    assert (d.outcome, d.rule) == ("reject", "auc_floor")
    assert d.reason == ("auc_floor: challenger AUC 0.2835 < auc_floor 0.55 and significantly "
                        "below the champion's 0.7165 (DeLong z=-19.4)")
    assert d.figures["champion_auc"] == pytest.approx(0.7165, abs=1e-4)


def test_auc_under_the_floor_by_noise_alone_is_judged_on_loss() -> None:
    # Top-k exposures: both models rank near chance; the challenger's AUC is a little lower
    # (about 50 clicks in 1,200: within noise) but its loss is clearly lower. Rejecting it
    # would discard what it learnt; the loss decides.
    rng = np.random.default_rng(3)
    labels = (rng.random(1200) < 0.05).astype(float)
    champion = np.clip(0.2 + 0.02 * rng.standard_normal(1200), 0.01, 0.99)
    challenger = np.clip(0.05 + 0.01 * rng.standard_normal(1200), 0.01, 0.99)
    d = decide(PairedLosses.from_scores(labels, champion, challenger), None, CFG)
    assert d.figures["challenger_auc"] < min(d.figures["champion_auc"], CFG.auc_floor)
    assert -1.645 < d.figures["auc_z"] < 0
    assert (d.outcome, d.rule) == ("promote", "better")


def test_auc_under_the_floor_but_above_the_champions_is_judged_on_loss() -> None:
    # Both rank worse than the floor (the challenger, constant, not at all); it ranks better
    # than the champion and has the lower loss.
    d = decide(make_pairs(champion={"flip": True}, challenger={"sharpness": 0.0}),
               None, CFG)
    assert d.figures["champion_auc"] < d.figures["challenger_auc"] < CFG.auc_floor
    assert (d.outcome, d.rule) == ("promote", "better")


def test_too_few_examples_keep_training() -> None:
    d = decide(make_pairs(blocks=5, champion={"sharpness": 0.0}), None, CFG)
    assert d == GateDecision("keep_training",
                             "min_examples: 200 paired examples so far, need 1000",
                             d.figures, "min_examples")


def test_margin_demands_a_larger_improvement() -> None:
    d = decide(make_pairs(champion={"sharpness": 0.3}), None,
               GateConfig(min_examples=1000, margin=0.05))
    assert (d.outcome, d.rule) == ("keep_training", "not_significant")
    assert "improvement 0.03111 over margin 0.05" in d.reason


def test_one_class_batch_skips_auc_and_bounds_calibration() -> None:
    labels = np.zeros(1200)
    fresh = PairedLosses.from_scores(labels, np.full(1200, 0.001), np.full(1200, 0.01))
    d = decide(fresh, None, CFG)
    assert "challenger_auc" not in d.figures
    assert d.figures["calibration_error"] == pytest.approx(0.01 * 1200)
    assert (d.outcome, d.rule) == ("reject", "calibration")


def test_config_mirrors_gate_settings() -> None:
    assert GateConfig(**load(GateSettings).model_dump()) == GateConfig()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"champion_losses": np.zeros(3)}, "differ in length"),
        ({"labels": np.full(4, 2.0)}, "labels must be 0 or 1"),
        ({"challenger_losses": np.array([0.1, np.nan, 0.1, 0.1])}, "challenger_losses"),
    ],
)
def test_paired_losses_refuse_bad_input(kwargs: dict[str, np.ndarray], match: str) -> None:
    base = {name: np.full(4, 0.1) for name in (
        "champion_scores", "challenger_scores", "champion_losses", "challenger_losses")}
    base["labels"] = np.array([0.0, 1.0, 0.0, 0.0])
    with pytest.raises(GateError, match=match):
        PairedLosses(**{**base, **kwargs})


def test_config_refuses_bad_thresholds() -> None:
    with pytest.raises(GateError, match="alpha"):
        GateConfig(alpha=1.5)


# Ranking rules: the same deterministic blocks, every example logged as explored (propensity
# 0.05); group A's items are the ones users click (CTR 0.30 against 0.05).

def _explored(blocks: int = 50) -> np.ndarray:
    return np.full(40 * blocks, 0.05)


def test_ranking_rejects_a_better_log_loss_that_ranks_worse() -> None:
    y = make_labels(50)
    # The champion ranks right but predicts 2.5 times the true rates (poor log loss); the
    # challenger is calibrated on average and puts the wrong group first.
    champion = make_scores(50, scale=2.5)
    challenger = make_scores(50, sharpness=0.1, flip=True)
    cfg = GateConfig(min_examples=1000, auc_floor=0.0)
    without = decide(PairedLosses.from_scores(y, champion, challenger), None, cfg)
    assert (without.outcome, without.rule) == ("promote", "better")
    d = decide(PairedLosses.from_scores(y, champion, challenger, _explored()), None, cfg)
    assert (d.outcome, d.rule) == ("reject", "ranking"), d.reason
    # Top quarter: the champion takes group A (CTR 0.30), the challenger group B (0.05).
    assert d.figures["ranking_champion_ctr"] == pytest.approx(0.30)
    assert d.figures["ranking_challenger_ctr"] == pytest.approx(0.05)
    assert d.figures["ranking_z"] < -3
    assert d.figures["ranking_n"] == 2000 and d.figures["ranking_clicks"] == 350
    json.dumps(d.figures, allow_nan=False)


def test_ranks_better_promotes_when_log_loss_cannot_tell() -> None:
    y = make_labels(50)
    champion = make_scores(50, sharpness=0.0)  # the overall CTR for everyone
    challenger = make_scores(50, sharpness=0.05)  # a hair of the right order
    cfg = GateConfig(min_examples=1000, auc_floor=0.0, margin=0.01)  # log loss: not enough
    base = decide(PairedLosses.from_scores(y, champion, challenger), None, cfg)
    assert base.rule == "not_significant"
    d = decide(PairedLosses.from_scores(y, champion, challenger, _explored()), None, cfg)
    assert (d.outcome, d.rule) == ("promote", "ranks_better"), d.reason
    assert d.figures["ranking_challenger_ctr"] == pytest.approx(0.30)
    assert d.figures["ranking_champion_ctr"] == pytest.approx(CTR)  # ties: all of them


def test_ranking_rules_are_silent_without_enough_exploration() -> None:
    y = make_labels(50)
    champion = make_scores(50, scale=2.5)
    challenger = make_scores(50, sharpness=0.1, flip=True)
    cfg = GateConfig(min_examples=1000, auc_floor=0.0, ranking_min_explored=200)
    greedy = np.full(y.size, 1.0)  # served without exploration: propensity 1
    d = decide(PairedLosses.from_scores(y, champion, challenger, greedy), None, cfg)
    assert d.rule == "better" and "ranking_n" not in d.figures
    few = greedy.copy()
    few[:120] = 0.05  # 120 explored examples < 200
    d = decide(PairedLosses.from_scores(y, champion, challenger, few), None, cfg)
    assert d.rule == "better" and d.figures["ranking_n"] == 120
    unknown = np.full(y.size, np.nan)  # producers that log no propensity
    d = decide(PairedLosses.from_scores(y, champion, challenger, unknown), None, cfg)
    assert d.rule == "better"


def test_ranking_rules_need_effective_explored_examples_not_just_propensities() -> None:
    """Under ε-greedy every shown slot has a propensity below 1 (the greedy one 1 − ε + ε/n),
    but only the few explored slots carry weight: 2,000 examples of which 40 explored weigh
    as ~40, and a test on them would rest on a handful of clicks."""
    y = make_labels(50)
    champion = make_scores(50, scale=2.5)
    challenger = make_scores(50, sharpness=0.1, flip=True)
    p = np.full(y.size, 0.95)
    p[::50] = 0.003  # 40 explored slots
    cfg = GateConfig(min_examples=1000, auc_floor=0.0)
    d = decide(PairedLosses.from_scores(y, champion, challenger, p), None, cfg)
    assert d.figures["ranking_n"] == 2000 and d.figures["ranking_ess"] < 60
    assert d.rule == "better"  # not "ranking": 40 effective examples < 200


def test_propensities_and_ranking_settings_are_checked() -> None:
    y = make_labels(1)
    with pytest.raises(GateError, match="propensities"):
        PairedLosses.from_scores(y, make_scores(1), make_scores(1), np.zeros(40))
    with pytest.raises(GateError, match="ranking_share"):
        GateConfig(ranking_share=0.0)
