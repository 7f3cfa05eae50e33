"""Off-policy estimates from logged propensities: IPS, self-normalised IPS, and a ranking test.

Serving logs, for every candidate, the probability with which it got its slot (``propensity``,
``services/serving/exploration.py``). A label then says what one *logged* choice earned; these
functions say what another policy would have earned on the same traffic, by weighting each
logged outcome with ``target / propensity`` (inverse propensity scoring, Horvitz–Thompson):

- ``ips``: ``mean(w · r)``. Unbiased when every propensity is the true one and positive
  wherever the target acts; its variance grows with the largest weight.
- ``snips``: ``sum(w · r) / sum(w)`` (self-normalised). Slightly biased, far steadier: a rare
  action's weight cannot blow the estimate past the range of the rewards. Its standard error
  is the delta method's, ``sqrt(sum(w² (r − V)²)) / sum(w)``.

Weights may be clipped (``clip``): bias towards the logging policy for less variance.

**Ranking.** The gate asks which of two models would show users what they click: CTR@k. An
exact off-policy CTR@k needs every candidate of a request, and the trainer sees only the shown
ones as examples (the others never get a label). What it does see on explored traffic is a
sample of candidates drawn *without* regard to the ranking: an explored slot takes a candidate
the greedy order did not pick, with a logged probability. Over those examples, weighted by
inverse propensity, a model's top ``share`` of candidates (``share`` = k / candidates per
request: 5 of 20 is 0.25) is the set above its weighted score quantile, and ``top_share_ctr``
is the SNIPS click rate of that set: what the model would show, estimated on candidates it did
not choose. It equals the per-request CTR@k when candidate pools are alike across requests
(the model's k-th best score then sits near that quantile in every request). ``compare_ranking``
runs it for two models on the same examples and tests the difference, paired (delta method).

Example:
    >>> rewards = np.array([1.0, 0.0, 1.0, 0.0])
    >>> propensity = np.array([0.5, 0.5, 0.25, 0.25])  # weights 2, 2, 4, 4
    >>> round(ips(rewards, propensity).value, 3), round(snips(rewards, propensity).value, 3)
    (1.5, 0.5)
    >>> y = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=float)
    >>> good = np.array([.9, .1, .2, .1, .8, .7, .3, .2])  # ranks the clicked ones first
    >>> bad = 1.0 - good
    >>> c = compare_ranking(y, bad, good, np.full(8, 0.1), share=0.375)
    >>> c.champion.value, c.challenger.value, c.n
    (0.0, 1.0, 8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from models.errors import OffPolicyError


@dataclass(frozen=True, slots=True)
class Estimate:
    """One policy's estimated mean reward.

    Attributes:
        value: The estimate (NaN when no example carried weight).
        se: Its standard error (NaN likewise).
        n: Examples with a positive weight.
        ess: Effective sample size, ``sum(w)² / sum(w²)``: how many equally weighted examples
            the estimate is worth.
    """

    value: float
    se: float
    n: int
    ess: float

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Two-sided normal ``1 - alpha`` confidence interval."""
        z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
        return self.value - z * self.se, self.value + z * self.se


@dataclass(frozen=True, slots=True)
class RankingComparison:
    """Two models' ``top_share_ctr`` on the same explored examples, and the paired test.

    Attributes:
        champion: The champion's estimate.
        challenger: The challenger's estimate.
        diff: ``challenger.value - champion.value`` (> 0: the challenger ranks better).
        se: Standard error of ``diff``, paired over the shared examples.
        z: ``diff / se`` (0 when both are equal; ±1e6 for a difference with no spread).
        n: Explored examples used.
        clicks: Clicks among them.
        ess: Their effective sample size, ``sum(w)² / sum(w²)``: under ε-greedy the greedy
            slots weigh ~1 and the explored ones ~n/ε, so it is about the explored count.
        click_ess: The same over the clicked ones: how many clicks the estimates rest on.
    """

    champion: Estimate
    challenger: Estimate
    diff: float
    se: float
    z: float
    n: int
    clicks: int
    ess: float = 0.0
    click_ess: float = 0.0


def weights(propensities: ArrayLike, target: ArrayLike | None = None,
            clip: float | None = None) -> np.ndarray:
    """``target / propensity``, clipped at ``clip`` when given.

    Raises:
        OffPolicyError: A propensity outside (0, 1], a target probability outside [0, 1],
            mismatched lengths, or ``clip`` <= 0.
    """
    p = np.asarray(propensities, dtype=np.float64).reshape(-1)
    if not np.all((p > 0.0) & (p <= 1.0)):  # also rejects NaN
        raise OffPolicyError("propensities must be in (0, 1]")
    t = np.ones_like(p) if target is None else np.asarray(target, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise OffPolicyError(f"target has {t.size} values for {p.size} propensities")
    if not np.all((t >= 0.0) & (t <= 1.0)):
        raise OffPolicyError("target probabilities must be in [0, 1]")
    w = t / p
    if clip is not None:
        if not clip > 0:
            raise OffPolicyError(f"clip must be > 0, got {clip}")
        w = np.minimum(w, clip)
    return w


def ips(rewards: ArrayLike, propensities: ArrayLike, target: ArrayLike | None = None,
        clip: float | None = None) -> Estimate:
    """Inverse propensity scoring: the mean of ``w · r`` over every logged example.

    ``target`` is the evaluated policy's probability of each logged action (default 1: it
    takes every logged action, so IPS re-weights the log to the population it was drawn from).
    """
    r, w = _paired(rewards, propensities, target, clip)
    if not r.size:
        return Estimate(math.nan, math.nan, 0, 0.0)
    x = w * r
    se = float(x.std(ddof=1)) / math.sqrt(x.size) if x.size > 1 else math.nan
    return Estimate(float(x.mean()), se, int(np.sum(w > 0)), _ess(w))


def snips(rewards: ArrayLike, propensities: ArrayLike, target: ArrayLike | None = None,
          clip: float | None = None) -> Estimate:
    """Self-normalised IPS: ``sum(w · r) / sum(w)``, with the delta method's standard error."""
    r, w = _paired(rewards, propensities, target, clip)
    return _snips(r, w)


def top_share(scores: ArrayLike, weights_: ArrayLike, share: float) -> np.ndarray:
    """Which examples lie in the model's top ``share`` of the weighted population.

    Sorted by score, best first, the examples are taken until their weight reaches ``share``
    of the total; ties with the last one taken are taken too (a tie is not an order).

    Example:
        >>> top_share(np.array([0.1, 0.9, 0.5, 0.3]), np.ones(4), 0.5).tolist()
        [False, True, True, False]
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    w = np.asarray(weights_, dtype=np.float64).reshape(-1)
    if not 0.0 < share <= 1.0:
        raise OffPolicyError(f"share must be in (0, 1], got {share}")
    if s.shape != w.shape:
        raise OffPolicyError(f"{s.size} scores for {w.size} weights")
    if not s.size or not w.sum() > 0:
        return np.zeros(s.size, dtype=bool)
    order = np.argsort(-s, kind="stable")
    reached = np.cumsum(w[order]) >= share * float(w.sum()) * (1.0 - 1e-12)
    last = int(np.argmax(reached))  # reached[-1] is always True
    return s >= s[order[last]]


def top_share_ctr(labels: ArrayLike, scores: ArrayLike, propensities: ArrayLike, share: float,
                  clip: float | None = None) -> Estimate:
    """SNIPS click rate of the candidates in the model's top ``share`` (module docstring)."""
    y, w = _paired(labels, propensities, None, clip)
    chosen = top_share(_scores(scores, y.size), w, share)
    return _snips(y, w * chosen)


def compare_ranking(labels: ArrayLike, champion_scores: ArrayLike, challenger_scores: ArrayLike,
                    propensities: ArrayLike, share: float, clip: float | None = None,
                    ) -> RankingComparison:
    """Both models' ``top_share_ctr`` on the same examples and the paired test of the gap.

    The difference's standard error comes from the per-example influence of each SNIPS ratio,
    ``a_i (y_i − V) / sum(a)`` with ``a`` the weights of the model's chosen examples, summed
    over the shared examples: an example both models choose moves both estimates together.
    """
    y, w = _paired(labels, propensities, None, clip)
    a = w * top_share(_scores(champion_scores, y.size), w, share)
    b = w * top_share(_scores(challenger_scores, y.size), w, share)
    champion, challenger = _snips(y, a), _snips(y, b)
    ess, click_ess = _ess(w), _ess(w * y)
    if not (a.sum() > 0 and b.sum() > 0):
        return RankingComparison(champion, challenger, math.nan, math.nan, 0.0, y.size,
                                 int(y.sum()), ess, click_ess)
    influence = (b * (y - challenger.value) / b.sum()) - (a * (y - champion.value) / a.sum())
    se = float(np.sqrt(np.sum(influence**2)))
    diff = challenger.value - champion.value
    if se > 0.0:
        z = diff / se
    else:
        z = 0.0 if diff == 0.0 else math.copysign(1e6, diff)
    return RankingComparison(champion, challenger, diff, se, z, y.size, int(y.sum()), ess,
                             click_ess)


def _paired(rewards: ArrayLike, propensities: ArrayLike, target: ArrayLike | None,
            clip: float | None) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    w = weights(propensities, target, clip)
    if r.shape != w.shape:
        raise OffPolicyError(f"{r.size} rewards for {w.size} propensities")
    if not np.all(np.isfinite(r)):
        raise OffPolicyError("rewards must be finite")
    return r, w


def _scores(scores: ArrayLike, n: int) -> np.ndarray:
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64).reshape(-1),
                      nan=0.0, posinf=1.0, neginf=0.0)  # a NaN score ranks last
    if s.size != n:
        raise OffPolicyError(f"{s.size} scores for {n} labels")
    return s


def _snips(r: np.ndarray, w: np.ndarray) -> Estimate:
    total = float(w.sum())
    if not total > 0:
        return Estimate(math.nan, math.nan, 0, 0.0)
    value = float(np.dot(w, r)) / total
    se = float(np.sqrt(np.sum((w * (r - value)) ** 2))) / total
    return Estimate(value, se, int(np.sum(w > 0)), _ess(w))


def _ess(w: np.ndarray) -> float:
    square = float(np.sum(w**2))
    return float(w.sum()) ** 2 / square if square > 0 else 0.0


def ranking_figures(labels: np.ndarray, champion_scores: np.ndarray,
                    challenger_scores: np.ndarray, propensities: np.ndarray, share: float,
                    ) -> dict[str, float]:
    """The gate's ranking figures (``ranking_*``): ``compare_ranking`` on the explored
    examples (propensity < 1; NaN, unknown, is not explored). Empty when fewer than two are,
    or when either model chose none of them.

    Example:
        >>> y = np.array([1.0, 0.0, 0.0, 1.0])
        >>> f = ranking_figures(y, np.array([.9, .1, .2, .1]), np.array([.1, .9, .2, .8]),
        ...                     np.array([.1, .1, .1, 1.0]), share=0.3)  # the last: not explored
        >>> f["ranking_n"], f["ranking_champion_ctr"], f["ranking_challenger_ctr"]
        (3.0, 1.0, 0.0)
    """
    explored = propensities < 1.0  # NaN compares False
    if explored.sum() < 2:
        return {}
    c = compare_ranking(labels[explored], champion_scores[explored],
                        challenger_scores[explored], propensities[explored], share)
    if math.isnan(c.diff):
        return {}
    return {
        "ranking_n": float(c.n),
        "ranking_clicks": float(c.clicks),
        "ranking_ess": c.ess,
        "ranking_click_ess": c.click_ess,
        "ranking_champion_ctr": c.champion.value,
        "ranking_challenger_ctr": c.challenger.value,
        "ranking_diff": c.diff,
        "ranking_z": max(-1e6, min(1e6, c.z)),
    }
