"""Feature drift compared like with like across rankings (models.drift.exposure): constructed
streams where the ranking changes and the world does not (quiet), and where the world changes
(fires), with and without exploration."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np
import pytest

from models.drift import FeatureDriftMonitor, ScoreDriftMonitor
from models.drift.exposure import _RETIRED, ExposureWindows, Quantiles, carry

CATEGORIES = tuple("abcdefgh")
UNIFORM = np.full(8, 1 / 8)
# What a ranking prefers, per category (logit units): a cold start prefers nothing, a trained
# champion likes a..c, and after a taste flip its successor likes e..g.
COLD = np.zeros(8)
LIKES_ABC = np.array([3.0, 2.5, 2.0, 0.0, -1.0, -2.0, -2.0, 0.0])
LIKES_EFG = LIKES_ABC[::-1].copy()
KINDS = {"device": "categorical", "item_category": "categorical", "price": "numeric"}


@dataclass
class Traffic:
    """Requests of 20 candidates; a ranking shows the top 5 (ε-greedy slot by slot)."""

    seed: int = 0
    n: int = 0  # requests so far: the request ids and serving times
    rows: list[dict[str, object]] = field(default_factory=list)
    keys: list[Hashable] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)

    def serve(self, requests: int, ranking: str, prefers: np.ndarray, *,
              world: np.ndarray = UNIFORM, mobile: float = 0.6, epsilon: float = 0.0) -> None:
        rng = np.random.default_rng([self.seed, self.n])
        for _ in range(requests):
            cats = rng.choice(8, size=20, p=world)
            price = rng.lognormal(3.0 + 0.1 * cats, 0.5)  # an item feature tied to category
            device = "mobile" if rng.random() < mobile else "desktop"
            scores = prefers[cats] + rng.normal(0.0, 0.5, 20)
            remaining = list(np.argsort(-scores))
            for _slot in range(5):
                pick = int(rng.integers(len(remaining))) if rng.random() < epsilon else 0
                i = remaining.pop(pick)
                self.rows.append({"device": device, "item_category": CATEGORIES[cats[i]],
                                  "price": float(price[i])})
                self.keys.append(ranking)
                self.requests.append(self.n)
            self.n += 1

    def feed(self, monitor: FeatureDriftMonitor, *, keyed: bool = True,
             batch: int = 512) -> list[dict[str, float]]:
        """Feed what was served since the last feed; the figures after each batch."""
        figures = []
        for lo in range(0, len(self.rows), batch):
            hi = lo + batch
            monitor.update(self.rows[lo:hi], self.keys[lo:hi] if keyed else None,
                           self.requests[lo:hi], self.requests[lo:hi])
            figures.append({f: d.psi for f, d in monitor.drift().items()})
        self.rows, self.keys, self.requests = [], [], []
        return figures


def highest(figures: list[dict[str, float]]) -> dict[str, float]:
    return {f: max(fig[f] for fig in figures if f in fig) for f in KINDS}


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_champions_that_show_other_items_move_no_psi(epsilon: float) -> None:
    t = Traffic()
    t.serve(1_000, "v1.0", COLD, epsilon=epsilon)  # the reference: a cold start's ranking
    for version, prefers in (("v1.1", LIKES_ABC), ("v1.2", LIKES_ABC), ("v1.3", LIKES_EFG),
                             ("v1.4", LIKES_EFG)):
        t.serve(1_500, version, prefers, epsilon=epsilon)
    monitor = FeatureDriftMonitor(KINDS)
    worst = highest(t.feed(monitor))
    assert all(psi < 0.1 for psi in worst.values()), worst  # psi_alarm is 0.25
    assert monitor._monitors["item_category"].links == 2  # cold → trained, then the flip

    # The same traffic compared regardless of the ranking: exposure looks like drift.
    t = Traffic()
    t.serve(1_000, "v1.0", COLD, epsilon=epsilon)
    t.serve(3_000, "v1.1", LIKES_ABC, epsilon=epsilon)
    blind = highest(t.feed(FeatureDriftMonitor(KINDS), keyed=False))
    assert blind["item_category"] > 1.0 and blind["device"] < 0.1


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
@pytest.mark.parametrize(("successor", "links"), [(LIKES_ABC, 0), (LIKES_ABC / 3, 1)],
                         ids=["look-alike", "broader"])
def test_a_shift_of_the_world_fires_and_stays_across_later_champions(
        epsilon: float, successor: np.ndarray, links: int) -> None:
    t = Traffic()
    moved = np.array([4, 4, 1, 1, 1, 1, 1, 1]) / 14  # the catalogue fills with a and b
    t.serve(1_500, "v1.1", LIKES_ABC, epsilon=epsilon)
    monitor = FeatureDriftMonitor(KINDS)
    before = highest(t.feed(monitor))
    t.serve(1_500, "v1.1", LIKES_ABC, world=moved, epsilon=epsilon)
    after_shift = t.feed(monitor)[-1]
    # A successor in the moved world: one that shows alike keeps the reference; one that
    # shows more categories carries it over (bins both rankings show say how).
    t.serve(2_000, "v1.2", successor, world=moved, epsilon=epsilon)
    after_promotion = t.feed(monitor)[-1]
    assert before["item_category"] < 0.1
    assert after_shift["item_category"] > 0.25
    assert after_promotion["item_category"] > 0.25
    assert monitor._monitors["item_category"].links == links


def test_request_features_are_never_carried_over_even_when_they_move_at_a_promotion() -> None:
    t = Traffic()
    t.serve(1_500, "v1.0", COLD)
    t.serve(1_500, "v1.1", LIKES_ABC, mobile=0.2)  # a new client arrives with the promotion
    monitor = FeatureDriftMonitor(KINDS)
    last = t.feed(monitor)[-1]
    assert monitor._monitors["device"].per_request
    assert not monitor._monitors["item_category"].per_request
    assert last["device"] > 0.25  # seen, though it moved exactly when the ranking did
    assert last["item_category"] < 0.1  # what v1.1 shows is its ranking's doing


def test_a_rollback_is_followed_and_late_examples_of_an_old_ranking_are_dropped() -> None:
    w = ExposureWindows("categorical", reference_size=100, window=100, bridge=100)
    w.update(["a"] * 50 + ["b"] * 50, ["u"] * 100, times=range(100))
    w.update(["a"] * 20 + ["b"] * 80, ["v"] * 100, times=range(100, 200))
    assert w.anchor == "v" and w.links == 1
    w.update(["c"] * 30, ["u"] * 30, times=[99] * 30)  # u's last labels, served before v
    assert w.drift("item").psi == pytest.approx(0.0, abs=1e-9) and "u" not in w.windows
    w.update(["a"] * 50 + ["b"] * 50, ["u"] * 100, times=range(300, 400))  # rolled back to u
    assert w.anchor == "u" and w.links == 2
    assert w.drift("item").psi == pytest.approx(0.0, abs=0.01)


def test_memory_stays_bounded_whatever_the_number_of_rankings() -> None:
    w = ExposureWindows("categorical", reference_size=500, window=500, bridge=500)
    w.update(["a", "b"] * 250, ["v0"] * 500)
    for v in range(1, 300):  # promotions faster than a bridge: none is ever complete
        w.update(["a", "b"] * 100, [f"v{v}"] * 200)
    assert len(w.windows) <= 4 and len(w.retired) <= _RETIRED and len(w.first) <= 3
    assert w.anchor == "v0"


def test_carry_scales_known_bins_and_lets_unknown_ones_follow_the_new_ranking() -> None:
    # u showed a and b half each in the reference and at the end; v shows a, b, c 1:3:6.
    out = carry(np.array([0.5, 0.5, 0.0]), np.array([500.0, 500.0, 0.0]),
                np.array([100.0, 300.0, 600.0]))
    assert out == pytest.approx([0.1, 0.3, 0.6])
    # The world had moved under u (a: 0.5 → 0.25 of what u showed): v's reference keeps it.
    out = carry(np.array([0.5, 0.5, 0.0]), np.array([250.0, 750.0, 0.0]),
                np.array([100.0, 300.0, 600.0]))
    assert out[0] / out[1] == pytest.approx((0.5 * 0.1 / 0.25) / (0.5 * 0.3 / 0.75))
    assert out.sum() == pytest.approx(1.0)


def test_a_constant_reference_still_sees_a_move() -> None:
    bins = Quantiles(np.full(100, 8.0), 10)  # an hour that did not change in the reference
    assert bins.histogram([7.0, 8.0, 8.0, 12.0]).tolist() == [1, 2, 1]
    m = FeatureDriftMonitor({"hour": "numeric"}, reference_size=100, window=100)
    m.update([{"hour": 8}] * 100)
    m.update([{"hour": 12}] * 100)
    assert m.drift()["hour"].psi > 5  # the old binning put 12 in the bin of 8: PSI 0


def test_served_scores_restart_with_each_model_and_fire_within_one() -> None:
    rng = np.random.default_rng(3)
    m = ScoreDriftMonitor(reference_size=1_000, window=1_000)
    m.update(np.full(1_000, 0.05), ["v1.0"] * 1_000)  # a cold start scores the prior
    for version, a in (("v1.1", 2), ("v1.2", 4)):  # trained models score otherwise
        m.update(rng.beta(a, 40, 2_000), [version] * 2_000)
        d = m.drift()
        assert d is not None and d.psi < 0.05
    m.update(rng.beta(8, 40, 1_000), ["v1.2"] * 1_000)  # the same model, other inputs
    d = m.drift()
    assert d is not None and d.psi > 0.25 and d.links == 2
