"""Package-level rules: doctests hold, imports point one way, the factory refuses bad input."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import models
from models import MODEL_NAMES, HyperparameterError, build_model

_MODELS_DIR = Path(models.__file__).parent
# Our other top-level packages: models must not import them (STYLE.md, "Imports point one way").
_OURS = {"config", "streams", "services", "bench", "tests"}


def _modules() -> list[str]:
    return [f"models.{m.name}" for m in pkgutil.iter_modules([str(_MODELS_DIR)])]


@pytest.mark.parametrize("module", ["models", *_modules()])
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_models_imports_nothing_of_ours_outside_models() -> None:
    offenders = []
    for path in sorted(_MODELS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in _OURS]
    assert offenders == []


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
