"""Regression test: river's published Phishing figure, reproduced through our river wrapper.

River documents ``preprocessing.StandardScaler() | linear_model.LogisticRegression()`` scored
with ``evaluate.progressive_val_score`` on ``datasets.Phishing()`` at 89.28 % accuracy. Feeding
the same stream one example at a time through ``predict_proba_many`` then ``learn_many`` (test
then train) must land on the same figure: the wrapper adds nothing and loses nothing.
"""

from __future__ import annotations

from river import datasets, evaluate, linear_model, metrics, preprocessing

from models import build_model


def test_river_itself_still_publishes_89_28() -> None:
    pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    accuracy = evaluate.progressive_val_score(datasets.Phishing(), pipeline, metrics.Accuracy())
    assert round(accuracy.get() * 100, 2) == 89.28


def test_wrapper_reproduces_river_phishing_accuracy() -> None:
    # prior_ctr=0.5 starts the intercept at 0, river's default; raw features are the default.
    model = build_model("river_logreg", prior_ctr=0.5)
    correct = total = 0
    for x, y in datasets.Phishing():
        score = model.predict_proba_many([x])[0]
        # river's predict_one picks the likelier class and False on a tie.
        correct += (score > 0.5) == y
        total += 1
        model.learn_many([x], [y])
    assert total == 1250
    assert round(correct / total * 100, 2) == 89.28
