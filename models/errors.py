"""Exceptions of the models package: one root, ``ModelError``, and a subclass per kind of fault.

``ModelError`` is the models family of ``config.errors.StreamlearnError`` (the only thing
``models`` imports from ``config``).

Callers that only want "the learning core refused this" catch ``ModelError``; the subclasses
let a trainer tell bad input (route to the DLQ) from a bad blob (refuse to load) from a bad
configuration (fail at start-up).
"""

from __future__ import annotations

from config.errors import StreamlearnError


class ModelError(StreamlearnError):
    """Root of every error raised by ``models``."""


class HyperparameterError(ModelError, ValueError):
    """An unknown model name, an unknown hyperparameter or a value out of range."""


class BatchError(ModelError, ValueError):
    """A batch the models cannot learn from: lengths differ, labels not 0/1, bad feature type."""


class BlobError(ModelError, ValueError):
    """Bytes that are not a model saved by ``Model.save`` (bad magic, header or checksum)."""


class GateError(ModelError, ValueError):
    """Gate inputs that cannot be compared: lengths differ, labels not 0/1, non-finite losses."""


class OffPolicyError(ModelError, ValueError):
    """Inputs an off-policy estimate cannot use: lengths differ, a propensity outside (0, 1]."""


class RegistryError(ModelError):
    """A registry operation refused: bad version name, unknown version, forbidden transition."""


class VersionExistsError(RegistryError):
    """A version name is already registered (two writers allocated the same one)."""


class ChampionChangedError(RegistryError):
    """A compare-and-set promotion found another champion than the one it expected."""


class ArtifactError(RegistryError):
    """An artifact that must not be loaded: missing, pruned, unsigned, tampered or unreadable."""
