"""The learning core: the model protocol, feature encoding and the learners we ship.

Nothing here does I/O or imports another streamlearn package; services and streams call in.

Example:
    >>> from models import build_model, load_model
    >>> model = build_model("logreg", hash_bits=10)
    >>> loss = model.learn_many([{"device": "tv"}], [1])
    >>> copy = load_model(model.save())
    >>> bool((copy.predict_proba_many([{"device": "tv"}])
    ...       == model.predict_proba_many([{"device": "tv"}])).all())
    True
"""

from __future__ import annotations

from models.errors import BatchError, BlobError, HyperparameterError, ModelError
from models.features.encoding import EncodedBatch, FeatureEncoder, FeatureSpec
from models.learners.base import Model, load_model
from models.learners.factory import DEFAULT_MODEL, MODEL_NAMES, build_model

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_NAMES",
    "BatchError",
    "BlobError",
    "EncodedBatch",
    "FeatureEncoder",
    "FeatureSpec",
    "HyperparameterError",
    "Model",
    "ModelError",
    "build_model",
    "load_model",
]
