"""The models package: the factory ships the configured names and refuses bad input."""

from __future__ import annotations

import pytest

from models import MODEL_NAMES, HyperparameterError, build_model


def test_factory_ships_the_configured_names() -> None:
    assert set(MODEL_NAMES) == {"fm", "logreg", "deepfm", "river_logreg", "river_hoeffding"}
    assert build_model().name == "logreg"


@pytest.mark.parametrize(
    ("name", "hyperparams", "match"),
    [
        ("svm", {}, "unknown model 'svm'"),
        ("fm", {"learning_rate": 0.1}, "unknown hyperparameter.*learning_rate"),
        ("logreg", {"factors": 4}, "unknown hyperparameter.*factors"),
        ("fm", {"prior_ctr": 1.5}, "prior_ctr"),
        ("deepfm", {"hidden": [0]}, "hidden"),
        ("river_logreg", {"features": "dense"}, "features"),
        ("river_hoeffding", {"leaf_prediction": "xx"}, "leaf_prediction"),
        ("fm", {"hash_bits": 40}, "hash_bits"),
    ],
)
def test_factory_refuses_bad_configuration(
    name: str, hyperparams: dict[str, object], match: str
) -> None:
    with pytest.raises(HyperparameterError, match=match):
        build_model(name, **hyperparams)
