"""``build_model``: the one place that turns a model name and flat hyperparameters into a model.

Example:
    >>> model = build_model("fm", hash_bits=12, factors=4, seed=1)
    >>> model.describe()["hyperparams"]["factors"]
    4
    >>> round(float(model.predict_proba_many([{"device": "mobile"}])[0]), 3)  # the prior CTR
    0.05
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Final

from models.errors import HyperparameterError
from models.features.encoding import FeatureSpec
from models.learners.base import Model
from models.learners.river_models import RiverHoeffding, RiverLogReg, RiverModel
from models.learners.torch_models import TorchDeepFM, TorchFM, TorchLogReg, TorchModel

_CLASSES: Final[dict[str, type[TorchModel] | type[RiverModel]]] = {
    cls.name: cls for cls in (TorchFM, TorchLogReg, TorchDeepFM, RiverLogReg, RiverHoeffding)
}
MODEL_NAMES: Final = tuple(_CLASSES)
# The trainer's default too (config/defaults.yaml): on the simulator's drifts a logistic
# regression over hashed features and crosses adapted faster than the FM (BENCHMARKS.md).
DEFAULT_MODEL: Final = "logreg"
_SPEC_FIELDS: Final = frozenset(f.name for f in fields(FeatureSpec))


def build_model(name: str = DEFAULT_MODEL, **hyperparams: Any) -> Model:
    """A fresh, untrained model.

    Args:
        name: One of ``MODEL_NAMES``: ``fm``, ``logreg``, ``deepfm``, ``river_logreg``,
            ``river_hoeffding``.
        **hyperparams: Flat keyword arguments: the model's own (``lr``, ``seed``, ``factors``,
            …) and the feature spec's (``hash_bits``, ``crosses``, …). Anything omitted keeps
            its default; ``describe()["hyperparams"]`` lists them all.

    Returns:
        The model.

    Raises:
        HyperparameterError: Unknown name, unknown hyperparameter or invalid value.
    """
    cls = _CLASSES.get(name)
    if cls is None:
        known = ", ".join(MODEL_NAMES)
        raise HyperparameterError(f"unknown model {name!r}; expected one of {known}")
    model_fields = {f.name for f in fields(cls.config_class)}
    unknown = set(hyperparams) - model_fields - _SPEC_FIELDS
    if unknown:
        allowed = ", ".join(sorted(model_fields | _SPEC_FIELDS))
        raise HyperparameterError(
            f"{name}: unknown hyperparameter(s) {', '.join(sorted(unknown))}; allowed: {allowed}"
        )
    spec_args = {k: v for k, v in hyperparams.items() if k in _SPEC_FIELDS}
    model_args = {k: v for k, v in hyperparams.items() if k in model_fields}
    try:
        return cls.from_hyperparams(model_args, FeatureSpec(**spec_args))
    except TypeError as exc:
        raise HyperparameterError(f"{name}: {exc}") from exc
