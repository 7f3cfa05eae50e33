"""``Race``: after a concept-drift alarm, a replica that forgot races the fine-tuned challenger.

Fine-tuning does not unlearn. After a shift, the weights of what the ranking stopped showing
stay where the old world left them, so the champion keeps showing what users used to like and
never learns that what it hides is now liked (``BENCHMARKS.md``, quality: the stateful ranking
stayed at 0.19 of the oracle's CTR while a from-scratch retrain reached 0.77). A ``Race`` holds
a replica of the challenger that kept only a share of its weights (``Model.forget``; 0: a fresh
start with the bias and feature statistics) and relearnt the alarm's batch. Every later batch it
is scored with the champion *before* it learns the batch (the same prequential pairs as the
challenger's), and once ``min_examples`` pairs are in, every ``min_examples`` examples, the gate
judges it like any challenger. A win makes it champion, and a replica of it races on (the
ranking changes with every promotion, so relearning comes in rounds whatever the training
policy's cadence); a rejection then restarts it from the champion, until ``race_labels``
pass without a win. A rejection before any win ends the race. A false alarm costs one
model's training, never the challenger's progress: the challenger keeps learning beside it.

Example:
    >>> from models import build_model
    >>> from models.training.step import LabeledExample
    >>> challenger = build_model("logreg", hash_bits=8)
    >>> batch = [LabeledExample(f"p{i}", int(i % 4 == 0), {"c": str(i % 4)}) for i in range(16)]
    >>> race = Race.start(challenger, keep=0.0, recent=batch, left=1_000)
    >>> race.step(challenger, batch)
    >>> race.evaluation.n, race.since
    (16, 16)
"""

from __future__ import annotations

from collections.abc import Sequence

from models.learners.base import Model
from models.training.step import Evaluation, Labeled, learn_examples, score_both


class Race:
    """A forgotten replica scored against the champion, then taught, batch by batch."""

    def __init__(self, model: Model, left: int, window_max: int | None = None,
                 wins: int = 0, ips_clip: float | None = None) -> None:
        self.model = model
        self.evaluation = Evaluation(window_max)
        self.since = 0  # examples since the gate last judged it
        self.wins = wins  # promotions so far
        self.left = left  # labels before the race ends without a win
        self.ips_clip = ips_clip  # learns as the challenger does (ips_weights)

    @classmethod
    def start(cls, challenger: Model, *, keep: float, recent: Sequence[Labeled], left: int,
              window_max: int | None = None, ips_clip: float | None = None) -> Race:
        """A replica of ``challenger`` that kept ``keep`` of its weights and learnt ``recent``
        (the alarm's batch: the new world, as far as anyone knows it yet); it learns as the
        challenger does (``ips_clip``: ``models.training.step.ips_weights``)."""
        model = challenger.clone()
        model.forget(keep)
        if recent:
            learn_examples(model, recent, ips_clip)
        return cls(model, left, window_max, ips_clip=ips_clip)

    def step(self, champion: Model, batch: Sequence[Labeled]) -> None:
        """Score ``batch`` with the champion and the racer, then let the racer learn it."""
        if not batch:
            return
        self.evaluation.add(score_both(champion, self.model, batch))
        learn_examples(self.model, batch, self.ips_clip)
        self.since += len(batch)
        self.left -= len(batch)

    def due(self, min_examples: int) -> bool:
        """Enough fresh pairs since the last verdict for the gate to judge the racer."""
        return self.evaluation.n >= min_examples and self.since >= min_examples

    def next(self, left: int) -> Race:
        """The race after a win: a replica of the winner, now champion, races on for
        ``left`` more labels."""
        return Race(self.model.clone(), left, self.evaluation.max_examples, self.wins + 1,
                    self.ips_clip)

    def restart(self, champion: Model) -> Race:
        """The race after a rejection that followed a win: a replica of the champion races
        on with the labels it had left."""
        return Race(champion.clone(), self.left, self.evaluation.max_examples, self.wins,
                    self.ips_clip)

    def new_champion(self) -> None:
        """Another champion serves: pairs with the old one describe another contest."""
        self.evaluation.reset()
        self.since = 0
