"""Learners: the ``Model`` protocol, the torch and river models, and the factory."""

from models.learners.base import Model, load_model
from models.learners.factory import DEFAULT_MODEL, MODEL_NAMES, build_model

__all__ = ["DEFAULT_MODEL", "MODEL_NAMES", "Model", "build_model", "load_model"]
