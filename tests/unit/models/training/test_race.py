"""The race after a drift alarm (models/training/race.py, models/training/loop.py): a replica
that forgot unlearns what fine-tuning cannot, and a false alarm costs nothing but its training.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models import Model, build_model
from models.drift import LossDriftDetector
from models.drift.detectors import DriftAlarm
from models.gate.decision import GateConfig
from models.training.loop import Learner
from models.training.policies import StatefulPolicy
from models.training.race import Race
from streams.schemas import Example
from tests.unit.models.factories import make_features
from tests.unit.models.training.factories import CLICK_RATE, batches, make_example, make_examples

LOGREG = {"hash_bits": 12, "seed": 0}
GATE = GateConfig(min_examples=1024)
# After the shift "books" is what users click, and "games", the old favourite, is not.
FLIPPED = {"books": 0.5, "shoes": 0.02, "games": 0.02, "toys": 0.02}


def trained(examples: list[Example]) -> Model:
    model = build_model("logreg", **LOGREG)
    for batch in batches(examples, 512):
        model.learn_many([e.features for e in batch], [e.label for e in batch])
    return model


def shown_by(champion: Model, n: int, seed: int, rates: dict[str, float]) -> list[Example]:
    """The degenerate feedback loop: users only ever see the champion's favourite category
    (ranked first), and click it with the world's rate."""
    scores = {c: float(champion.predict_proba_many([make_features(item_category=c)])[0])
              for c in FLIPPED}
    top = max(scores, key=scores.__getitem__)
    rng = np.random.default_rng(seed)
    return [make_example(int(rng.random() < rates[top]), prediction_id=f"f{seed}-{i}",
                         user_id=f"u{rng.integers(200)}", item_id=f"i{rng.integers(50)}",
                         item_category=top, hour=int(rng.integers(24)))
            for i in range(n)]


def run_shift(forget_on_drift: float) -> Learner:
    champion = trained(make_examples(8_192, seed=1, rates=CLICK_RATE))
    # On a log of one category, AUC is noise: no AUC floor to reject on it by chance.
    learner = Learner(champion, StatefulPolicy(champion), replace(GATE, auc_floor=0.0),
                      gate_every=512,
                      sanity_size=0, drift=LossDriftDetector("adwin"),
                      forget_on_drift=forget_on_drift)
    for i in range(32):  # what is shown follows the champion of the moment
        rates = CLICK_RATE if i < 8 else FLIPPED
        learner.step(shown_by(learner.champion, 512, 100 + i, rates), now_ms=1_000 * i)
    return learner


def score(model: Model, category: str) -> float:
    return float(model.predict_proba_many([make_features(item_category=category)])[0])


def test_a_forgotten_replica_unlearns_what_the_ranking_stopped_showing() -> None:
    raced = run_shift(forget_on_drift=0.0)
    assert raced.counts.alarms >= 1 and raced.counts.races == 1
    assert raced.counts.races_won == 1
    # "books" was never shown after the shift: the racer does not hold the old world's
    # verdict on it, so the champion now ranks it above the old favourite.
    assert score(raced.champion, "books") > score(raced.champion, "games")
    tuned = run_shift(forget_on_drift=1.0)
    assert tuned.counts.races == 0
    # Fine-tuning alone keeps "books" where the old world left it: below "games".
    assert score(tuned.champion, "books") < score(tuned.champion, "games")


class _OneAlarm(LossDriftDetector):
    """Raises one alarm on its first batch, whatever the losses (a false alarm)."""

    def __init__(self) -> None:
        super().__init__("adwin")
        self.raised = False

    def update(self, losses: np.ndarray, residuals: np.ndarray | None = None,
               ) -> DriftAlarm | None:
        if self.raised:
            return None
        self.raised = True
        return DriftAlarm("adwin", 0, 1, 0.1, 0.2)


def test_a_false_alarm_costs_the_challenger_nothing() -> None:
    examples = make_examples(16_384, seed=1)
    champion = trained(examples[:8_192])
    stream = batches(examples[8_192:], 512)
    alarmed = Learner(champion, StatefulPolicy(champion), GATE, gate_every=1_024,
                      sanity_size=0, drift=_OneAlarm(), forget_on_drift=0.0, race_labels=4_096)
    quiet = Learner(champion, StatefulPolicy(champion), GATE, gate_every=1_024, sanity_size=0)
    for i, batch in enumerate(stream):
        a, q = alarmed.step(batch, now_ms=i), quiet.step(batch, now_ms=i)
        assert (a.decision is None) == (q.decision is None)
        if a.decision is not None and q.decision is not None:
            assert a.decision.reason == q.decision.reason  # the same challenger, judged alike
    assert alarmed.counts.races == 1 and alarmed.counts.races_won == 0
    assert alarmed.race is None  # ended: rejected, or no win within race_labels
    assert score(alarmed.challenger, "games") == score(quiet.challenger, "games")


def test_the_racer_is_scored_before_it_learns() -> None:
    champion = trained(make_examples(2_048, seed=1))
    batch = make_examples(512, seed=3)
    race = Race.start(champion, keep=0.0, recent=(), left=10_000)
    before = race.model.predict_proba_many([e.features for e in batch])
    race.step(champion, batch)
    (evidence,) = race.evaluation._results  # one batch of pairs
    assert np.array_equal(evidence.challenger_scores, before)
    assert not np.array_equal(race.model.predict_proba_many([e.features for e in batch]), before)
    assert race.due(512) and not race.due(1_024)


def test_after_a_win_the_race_goes_on_from_the_champion() -> None:
    champion = trained(make_examples(2_048, seed=1))
    race = Race.start(champion, keep=0.0, recent=make_examples(512, seed=2), left=3_000)
    won = race.next(2_000)  # the racer became champion: a replica of it races on
    probe = [e.features for e in make_examples(20, seed=4)]
    assert won.wins == 1 and won.evaluation.n == 0
    np.testing.assert_array_equal(won.model.predict_proba_many(probe),
                                  race.model.predict_proba_many(probe))
    again = won.restart(champion)  # rejected after a win: from the champion, same budget
    assert (again.wins, again.left) == (1, 2_000)
    np.testing.assert_array_equal(again.model.predict_proba_many(probe),
                                  champion.predict_proba_many(probe))
    assert again.model is not champion
