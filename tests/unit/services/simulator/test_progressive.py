"""Progressive scores on a logged stream: what served each example, before anything learnt it."""

from __future__ import annotations

import numpy as np
import pytest
from river import linear_model, optim

from config.settings import GateSettings, TrainerSettings
from models import build_model
from models.evaluation import log_loss
from models.training.step import LabeledExample
from services.simulator.progressive import batch_trained, river_progressive, through_learner


def make_stream(n: int, users: int = 50) -> list[LabeledExample]:
    """Category "a" is liked, "b" not; users rotate."""
    return [LabeledExample(f"p{i}", int(i % 2 == 0),
                           {"user_id": f"u{i % users}", "cat": "ab"[i % 2]}) for i in range(n)]


def settings(**changes: object) -> TrainerSettings:
    return TrainerSettings(**{"batch_size": 64, "gate_every_examples": 256, "hash_bits": 10,
                              "sanity_size": 64, **changes})


def test_the_cold_start_serves_until_the_gate_promotes_and_every_example_is_scored() -> None:
    stream = make_stream(1_024)
    served = through_learner(stream, settings(), GateSettings(min_examples=128))
    assert served.champion.shape == served.challenger.shape == served.labels.shape == (1_024,)
    assert served.promotions >= 1
    first = int(np.flatnonzero(np.abs(served.champion - 0.05) > 1e-6)[0])
    assert first >= 128 and first % 64 == 0  # a batch boundary after the first verdict
    assert np.allclose(served.champion[:first], 0.05)  # the prior CTR: nothing learnt yet
    # The challenger had learnt the earlier batches when it scored the second one.
    assert not np.allclose(served.challenger[64:128], 0.05)


def test_examples_kept_from_learning_are_still_scored() -> None:
    # One user clicking everything: the bot guard keeps it from the challenger, not from
    # what serving served.
    stream = [LabeledExample(f"p{i}", 1, {"user_id": "bot"}) for i in range(256)]
    served = through_learner(stream, settings(guard_min_labels=8), GateSettings())
    assert served.guarded > 0 and served.champion.size == 256


def test_river_scores_a_batch_before_learning_it() -> None:
    stream = make_stream(200)
    one = river_progressive(linear_model.LogisticRegression(optim.SGD(0.05)), stream)
    batched = river_progressive(linear_model.LogisticRegression(optim.SGD(0.05)), stream,
                                batch_size=100)
    assert one[0] == batched[0] == 0.5
    assert one[1] != 0.5  # learnt the first example already
    assert np.all(batched[:100] == 0.5)  # nothing learnt within the first batch
    assert batched[100] == pytest.approx(
        river_progressive(linear_model.LogisticRegression(optim.SGD(0.05)),
                          stream[:101])[100])


def test_river_progress_is_reported_for_every_example() -> None:
    seen: list[int] = []
    river_progressive(linear_model.LogisticRegression(), make_stream(250), batch_size=7,
                      advance=seen.append, every=100)
    assert sum(seen) == 250


def test_batch_training_is_seeded() -> None:
    stream = make_stream(300)
    probe = [{"cat": "a", "user_id": "u0"}, {"cat": "b", "user_id": "u1"}]
    a, b = (batch_trained(build_model("logreg", hash_bits=10), stream, epochs=2,
                          batch_size=32, seed=3).predict_proba_many(probe) for _ in range(2))
    assert np.array_equal(a, b) and a[0] > a[1]


def test_defaults_learn_a_click_rate_far_from_the_cold_start_prior() -> None:
    """Issue 14: 55 % positives against the 5 % prior. With the defaults a user gets, the
    first promotion comes within about 2,000 labels and the served log loss falls below a
    constant predictor's (the stream's own rate, known in hindsight) soon after."""
    rng = np.random.default_rng(5)
    stream = [LabeledExample(f"p{i}", int(rng.random() < (0.75 if i % 3 else 0.15)),
                             {"user_id": f"u{rng.integers(300)}", "genre": "ab"[i % 3 == 0],
                              "hour": int(rng.integers(24))}) for i in range(8_192)]
    served = through_learner(stream, TrainerSettings(), GateSettings())
    first = int(np.flatnonzero(np.abs(served.champion - 0.05) > 1e-6)[0])
    assert first <= 2_048  # the first promotion serves from the next micro-batch on
    rate = served.labels.mean()
    constant = log_loss(served.labels, np.full(len(stream), rate))
    after = slice(first + 2_048, None)
    assert log_loss(served.labels[after], served.champion[after]) < constant
    assert served.promotions >= 1
