"""The promotion gate: a pure decision on a challenger from paired, prequential losses.

The trainer scores each fresh micro-batch with both the champion and the challenger *before*
either learns from it, collects the per-example losses since the last decision, and calls
``decide``. The rules run in this order; the first that fires decides:

1. ``finite``        any non-finite challenger score (fresh or sanity set) → reject
2. ``min_examples``  fewer fresh paired examples than ``min_examples`` → keep_training
3. ``calibration``   challenger's mean prediction off the observed CTR by more than
                     ``calibration_tolerance`` (relative) *and* significantly so, *and*
                     further from it than the champion's (by 0.05 or more) → reject
4. ``auc_floor``     challenger AUC below ``auc_floor`` and significantly below the
                     champion's (DeLong's paired test, one-sided at ``alpha``) → reject
                     (skipped while the fresh labels are all 0 or all 1)

Rules 3 and 4 judge the challenger against the champion as well as against a fixed bar: after
a drift the champion itself may be off the observed CTR or rank worse than the floor, and
refusing a challenger that is closer to the truth would keep the worse model serving (and, as
a rejection discards the challenger, keep any challenger from ever catching up). On the
champion's own top-k exposures both AUCs sit near 0.5 and differ by noise: in the quality
replay, rejections for an AUC 0.03 under the champion's (about 50 clicks in 1,024) discarded
the challenger again and again right after a drift, so rule 4 asks for a significant gap.
5. ``ranking``       on the explored traffic (propensity < 1), the challenger's CTR@k off-policy
                     (``models.evaluation.offpolicy``: SNIPS click rate of its top
                     ``ranking_share``) significantly below the champion's (paired z-test,
                     one-sided at ``alpha``) → reject, however good its log loss (which rewards
                     calibration: a model still showing what users stopped liking can win it).
                     Needs ``ranking_min_explored`` explored examples: silent without exploration
6. ``worse``         challenger's loss significantly higher (one-sided paired t-test) → reject
7. ``forgetting``    on the sanity set, challenger's mean loss more than ``sanity_tolerance``
                     (relative) above the champion's, significantly so (one-sided paired
                     t-test at ``alpha``) → reject. The set is small (1,000 examples, tens of
                     clicks): without the test, a challenger 1 % worse on it by chance was
                     rejected again and again while it relearnt a shifted world
8. ``better``        champion loss − challenger loss ≥ ``margin`` with a one-sided paired t-test
                     at ``alpha`` → promote
9. ``ranks_better``  rule 5's test says the challenger ranks significantly better → promote
                     (after a slow drift CTR@k may show it before the log loss does)
10. ``not_significant`` otherwise → keep_training

Example:
    >>> import numpy as np
    >>> y = np.tile([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], 100)
    >>> champion = np.where(y == 1, 0.2, 0.1)
    >>> challenger = np.where(y == 1, 0.5, 0.05)
    >>> fresh = PairedLosses.from_scores(y, champion, challenger)
    >>> d = decide(fresh, None, GateConfig(min_examples=500, auc_floor=0.5))
    >>> d.outcome, d.rule
    ('promote', 'better')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Final, Literal

import numpy as np

from models.errors import GateError
from models.evaluation.metrics import auc, auc_difference_z, log_losses, t_sf
from models.evaluation.offpolicy import ranking_figures

Outcome = Literal["promote", "keep_training", "reject"]
# How much further from the observed CTR than the champion (relative error) a challenger must
# be for rule 3: a replica a batch or two apart from the champion differs by a hair, and
# rejecting on that ended relearning after a drift (quality replay, continual, sudden seed 0).
_CALIBRATION_SLACK: Final = 0.05
OUTCOMES: Final[tuple[Outcome, ...]] = ("promote", "keep_training", "reject")
# Effective clicks (ESS of the clicked examples' weights) the ranking rules rest on at least:
# a delta-method z on a dozen weighted clicks is not a test (a racer was rejected on 13).
_MIN_CLICK_ESS: Final = 10.0


@dataclass(frozen=True, slots=True)
class GateConfig:
    """The gate's thresholds (the trainer builds it from ``GateSettings``; same field names).

    Attributes:
        min_examples: Fresh paired examples needed before any verdict on quality.
        margin: Required improvement of the mean log loss, in nats per example.
        alpha: Significance level of the one-sided paired tests (and of the calibration test).
        sanity_tolerance: Allowed relative increase of the sanity-set loss (0.01 = 1 %).
        calibration_tolerance: Allowed relative gap between mean prediction and observed CTR.
        auc_floor: Lowest acceptable challenger AUC on the fresh examples.
        ranking_share: The share of a request's candidates it shows (k / candidates; 5 of
            20 is 0.25): the top share whose click rate the ranking rules compare.
        ranking_min_explored: Effective explored examples (propensity < 1; the effective
            sample size of their inverse-propensity weights) the ranking rules need; and
            they need ``_MIN_CLICK_ESS`` effective clicks among them.
    """

    min_examples: int = 1024
    margin: float = 0.0
    alpha: float = 0.05
    sanity_tolerance: float = 0.01
    calibration_tolerance: float = 0.25
    auc_floor: float = 0.55
    ranking_share: float = 0.25
    ranking_min_explored: int = 200

    def __post_init__(self) -> None:
        if self.min_examples < 1 or self.margin < 0 or not 0.0 < self.alpha < 1.0:
            raise GateError("need min_examples >= 1, margin >= 0 and 0 < alpha < 1")
        if self.sanity_tolerance < 0 or self.calibration_tolerance < 0:
            raise GateError("tolerances must be >= 0")
        if not 0.0 <= self.auc_floor <= 1.0:
            raise GateError(f"auc_floor must be in [0, 1], got {self.auc_floor}")
        if not 0.0 < self.ranking_share <= 1.0 or self.ranking_min_explored < 2:
            raise GateError("need 0 < ranking_share <= 1 and ranking_min_explored >= 2")


@dataclass(frozen=True, eq=False)
class PairedLosses:
    """Champion and challenger on the same examples: labels, scores and per-example losses.

    Arrays are coerced to 1-D float64 and must have equal lengths; losses must be finite and
    non-negative (``log_losses`` maps a non-finite score to the worst clipped loss).
    ``propensities`` (optional) is each example's logged propensity, NaN where unknown.
    """

    labels: np.ndarray
    champion_scores: np.ndarray
    challenger_scores: np.ndarray
    champion_losses: np.ndarray
    challenger_losses: np.ndarray
    propensities: np.ndarray | None = None

    def __post_init__(self) -> None:
        names: tuple[str, ...] = ("labels", "champion_scores", "challenger_scores",
                                  "champion_losses", "challenger_losses")
        if self.propensities is not None:
            names += ("propensities",)
        for name in names:
            value = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            object.__setattr__(self, name, value)
        lengths = {name: getattr(self, name).size for name in names}
        if len(set(lengths.values())) != 1:
            raise GateError(f"paired arrays differ in length: {lengths}")
        if not np.all((self.labels == 0.0) | (self.labels == 1.0)):
            raise GateError("labels must be 0 or 1")
        for name in ("champion_losses", "challenger_losses"):
            loss = getattr(self, name)
            if not (np.all(np.isfinite(loss)) and np.all(loss >= 0.0)):
                raise GateError(f"{name} must be finite and >= 0")
        p = self.propensities
        if p is not None and not np.all(np.isnan(p) | ((p > 0.0) & (p <= 1.0))):
            raise GateError("propensities must be in (0, 1] or NaN (unknown)")

    @classmethod
    def from_scores(
        cls, labels: np.ndarray, champion_scores: np.ndarray, challenger_scores: np.ndarray,
        propensities: np.ndarray | None = None,
    ) -> PairedLosses:
        """Pair two models' scores on the same labelled examples, computing their log losses."""
        return cls(
            labels=labels,
            champion_scores=champion_scores,
            challenger_scores=challenger_scores,
            champion_losses=log_losses(labels, champion_scores),
            challenger_losses=log_losses(labels, challenger_scores),
            propensities=propensities,
        )

    @property
    def n(self) -> int:
        """Number of paired examples."""
        return int(self.labels.size)


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What the gate decided, why, and the figures it decided on (all finite floats).

    Attributes:
        outcome: ``promote``, ``keep_training`` or ``reject``.
        reason: One human sentence naming the rule and the numbers that decided.
        figures: Every figure computed so far (``n``, losses, p-values, AUC, …).
        rule: The deciding rule's short name (a bounded metrics label), see the module doc.
    """

    outcome: Outcome
    reason: str
    figures: dict[str, float] = field(default_factory=dict)
    rule: str = ""


def decide(fresh: PairedLosses, sanity: PairedLosses | None, cfg: GateConfig) -> GateDecision:
    """Decide on a challenger; see the module docstring for the rules and their order.

    Args:
        fresh: Both models on the examples since the last decision, scored before training.
        sanity: Both models on the frozen sanity set, or None when there is none yet (the
            forgetting rule is then skipped and ``sanity_n`` is 0).
        cfg: Thresholds.

    Returns:
        The decision. Its figures never hold NaN or inf, so they serialise as JSON.
    """
    figures: dict[str, float] = {"n": float(fresh.n), "sanity_n": float(_n(sanity))}
    bad = int(np.sum(~np.isfinite(fresh.challenger_scores)))
    if sanity is not None:
        bad += int(np.sum(~np.isfinite(sanity.challenger_scores)))
    figures["challenger_nonfinite"] = float(bad)
    figures["champion_nonfinite"] = float(np.sum(~np.isfinite(fresh.champion_scores)))
    if bad:
        return GateDecision(
            "reject", f"finite: challenger produced {bad} NaN/inf score(s)", figures, "finite"
        )
    needed = max(cfg.min_examples, 2)
    if fresh.n < needed:
        return GateDecision(
            "keep_training",
            f"min_examples: {fresh.n} paired examples so far, need {needed}",
            figures,
            "min_examples",
        )
    figures.update(_calibration(fresh))
    figures.update(_paired(fresh, cfg.margin))
    area = auc(fresh.labels, fresh.challenger_scores)
    if not math.isnan(area):
        figures["challenger_auc"] = area
        figures["champion_auc"] = _finite_auc(fresh)
        z = auc_difference_z(fresh.labels, fresh.challenger_scores, _finite(fresh))
        if not math.isnan(z):
            figures["auc_z"] = max(-1e6, min(1e6, z))  # JSON: no infinities
    if sanity is not None and sanity.n:
        figures.update(_sanity(sanity, cfg.sanity_tolerance))
    figures.update(_ranking(fresh, cfg.ranking_share))
    return _apply_rules(figures, cfg)


def _apply_rules(f: dict[str, float], cfg: GateConfig) -> GateDecision:
    z_crit = NormalDist().inv_cdf(1.0 - cfg.alpha / 2.0)
    if (f["calibration_error"] > cfg.calibration_tolerance and abs(f["calibration_z"]) > z_crit
            and f["calibration_error"] > f["champion_calibration_error"] + _CALIBRATION_SLACK):
        return GateDecision(
            "reject",
            f"calibration: mean prediction {f['challenger_mean_score']:.4f} vs observed CTR "
            f"{f['observed_ctr']:.4f}, relative error {f['calibration_error']:.2f} > "
            f"calibration_tolerance {cfg.calibration_tolerance:g} (z={f['calibration_z']:.1f}) "
            f"and above the champion's {f['champion_calibration_error']:.2f}",
            f,
            "calibration",
        )
    z_one_sided = NormalDist().inv_cdf(1.0 - cfg.alpha)
    if ("challenger_auc" in f and f["challenger_auc"] < cfg.auc_floor
            and f.get("auc_z", 0.0) < -z_one_sided):
        return GateDecision(
            "reject",
            f"auc_floor: challenger AUC {f['challenger_auc']:.4f} < auc_floor {cfg.auc_floor:g} "
            f"and significantly below the champion's {f['champion_auc']:.4f} "
            f"(DeLong z={f['auc_z']:.1f})",
            f,
            "auc_floor",
        )
    ranked = (f.get("ranking_ess", 0.0) >= cfg.ranking_min_explored
              and f.get("ranking_click_ess", 0.0) >= _MIN_CLICK_ESS)
    ranking = (
        f"CTR@k on {f.get('ranking_ess', 0.0):.0f} effective explored examples: challenger "
        f"{f.get('ranking_challenger_ctr', 0.0):.4f} vs champion "
        f"{f.get('ranking_champion_ctr', 0.0):.4f} (SNIPS, top {cfg.ranking_share:.0%}, "
        f"z={f.get('ranking_z', 0.0):.1f})"
    )
    if ranked and f["ranking_z"] < -z_one_sided:
        return GateDecision("reject", f"ranking: {ranking}, worse at alpha {cfg.alpha:g}", f,
                            "ranking")
    losses = (
        f"challenger log loss {f['challenger_loss']:.5f} vs champion {f['champion_loss']:.5f}"
    )
    if f["p_worse"] < cfg.alpha:
        return GateDecision(
            "reject",
            f"worse: {losses}, one-sided paired t-test p={f['p_worse']:.2g} < alpha {cfg.alpha:g}",
            f,
            "worse",
        )
    if ("sanity_rel_change" in f and f["sanity_rel_change"] > cfg.sanity_tolerance
            and f["sanity_p_worse"] < cfg.alpha):
        return GateDecision(
            "reject",
            f"forgetting: sanity-set log loss {f['sanity_challenger_loss']:.5f} vs champion "
            f"{f['sanity_champion_loss']:.5f} (+{f['sanity_rel_change']:.1%} > "
            f"sanity_tolerance {cfg.sanity_tolerance:.1%}, one-sided paired t-test "
            f"p={f['sanity_p_worse']:.2g} < alpha {cfg.alpha:g})",
            f,
            "forgetting",
        )
    test = (
        f"improvement {f['mean_diff']:.5f} over margin {cfg.margin:g}, "
        f"one-sided paired t-test p={f['p_better']:.2g}"
    )
    if f["p_better"] < cfg.alpha:
        return GateDecision(
            "promote", f"better: {losses}, {test} < alpha {cfg.alpha:g}", f, "better"
        )
    if ranked and f["ranking_z"] > z_one_sided:
        return GateDecision("promote", f"ranks_better: {ranking}; {losses}", f, "ranks_better")
    return GateDecision(
        "keep_training",
        f"not_significant: {losses}, {test} >= alpha {cfg.alpha:g}",
        f,
        "not_significant",
    )


def _n(pairs: PairedLosses | None) -> int:
    return 0 if pairs is None else pairs.n


def _paired(fresh: PairedLosses, margin: float) -> dict[str, float]:
    """One-sided paired t-tests on d = champion loss − challenger loss (> 0: challenger better)."""
    d = fresh.champion_losses - fresh.challenger_losses
    n = d.size
    mean = float(d.mean())
    se = float(d.std(ddof=1)) / math.sqrt(n)
    t_better = _ratio(mean - margin, se)
    t_worse = _ratio(-mean, se)
    return {
        "champion_loss": float(fresh.champion_losses.mean()),
        "challenger_loss": float(fresh.challenger_losses.mean()),
        "mean_diff": mean,
        "diff_se": se,
        "p_better": t_sf(t_better, n - 1),
        "p_worse": t_sf(t_worse, n - 1),
    }


def _ratio(num: float, se: float) -> float:
    # Identical loss differences (se = 0): the sign alone is the evidence.
    if se > 0.0:
        return num / se
    return math.copysign(math.inf, num) if num else 0.0


def _calibration(fresh: PairedLosses) -> dict[str, float]:
    """Relative gap of mean prediction to observed CTR, and its z-score under the model.

    The relative error divides by ``max(ctr, 1/n)`` so a batch without clicks still gives a
    finite figure; the z-score (clicks vs the sum of predicted probabilities) keeps pure
    sampling noise in a small batch from rejecting a calibrated challenger.
    """
    p = fresh.challenger_scores
    ctr = float(fresh.labels.mean())
    mean_p = float(p.mean())
    # The floor keeps z finite for scores of exactly 0 or 1 (a wildly overconfident model).
    variance = max(float(np.sum(p * (1.0 - p))), 1e-12)
    z = float(fresh.labels.sum() - p.sum()) / math.sqrt(variance)
    floor = max(ctr, 1.0 / fresh.n)
    champion_p = np.nan_to_num(fresh.champion_scores, nan=0.5, posinf=1.0, neginf=0.0)
    return {
        "observed_ctr": ctr,
        "challenger_mean_score": mean_p,
        "calibration_error": abs(mean_p - ctr) / floor,
        "calibration_z": z,
        "champion_mean_score": float(champion_p.mean()),
        "champion_calibration_error": abs(float(champion_p.mean()) - ctr) / floor,
    }


def _finite(fresh: PairedLosses) -> np.ndarray:
    return np.nan_to_num(fresh.champion_scores, nan=0.5, posinf=1.0, neginf=0.0)


def _finite_auc(fresh: PairedLosses) -> float:
    return auc(fresh.labels, _finite(fresh))


def _sanity(sanity: PairedLosses, tolerance: float) -> dict[str, float]:
    """Relative change of the sanity-set loss, and the one-sided paired t-test that the
    challenger's loss exceeds the champion's by more than ``tolerance`` (relative)."""
    champion = float(sanity.champion_losses.mean())
    challenger = float(sanity.challenger_losses.mean())
    d = sanity.challenger_losses - sanity.champion_losses
    se = float(d.std(ddof=1)) / math.sqrt(d.size) if d.size > 1 else 0.0
    return {
        "sanity_champion_loss": champion,
        "sanity_challenger_loss": challenger,
        "sanity_rel_change": (challenger - champion) / max(champion, 1e-12),
        "sanity_p_worse": t_sf(_ratio(float(d.mean()) - tolerance * champion, se),
                               max(d.size - 1, 1)),
    }



def _ranking(fresh: PairedLosses, share: float) -> dict[str, float]:
    if fresh.propensities is None:
        return {}
    return ranking_figures(fresh.labels, _finite(fresh), fresh.challenger_scores,
                           fresh.propensities, share)
