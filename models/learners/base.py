"""The model protocol every learner we ship follows, and the self-describing blob format.

A model scores and learns whole micro-batches of flat feature dicts (``models.features.encoding``).
Like river's estimators, a model owns no I/O: the trainer and the serving API move bytes and
messages around it. Optional methods raise ``NotImplementedError``.

Blob layout (``Model.save``)::

    b"SLM1" | header length (4 bytes, big endian) | JSON header | payload

The header names the model class, its hyperparameters, the encoder state, the payload kind
(``"torch"``: ``torch.save`` of tensors only; ``"pickle"``: river estimators) and the payload's
SHA-256. The checksum catches truncation and corruption; it is *not* authentication — the
registry signs blobs (HMAC) and must verify them before calling ``load_model``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Final

import numpy as np

from models.errors import BatchError, BlobError, HyperparameterError
from models.features.encoding import Batch

MAGIC: Final = b"SLM1"
FORMAT_VERSION: Final = 1
_LENGTH = struct.Struct(">I")
# A header holds hyperparameters and small sketches; anything bigger is a corrupt length field.
_MAX_HEADER_BYTES: Final = 64 * 1024 * 1024


class Model(ABC):
    """A CTR learner: scores and learns micro-batches of flat feature dicts.

    Scoring never changes a model's state (serving may score with the champion while nothing
    else touches it); learning changes it in place. Subclasses set ``name`` (the factory name,
    e.g. ``"fm"``), which also registers them for ``load_model``.
    """

    name: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[Model]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            Model._registry[cls.name] = cls

    @abstractmethod
    def predict_proba_many(self, batch: Batch) -> np.ndarray:
        """Click probabilities of a batch, without learning from it.

        Args:
            batch: Flat feature dicts; missing and never-seen keys are fine.

        Returns:
            float64 array of shape ``(len(batch),)`` with values in [0, 1].
        """

    @abstractmethod
    def learn_many(self, batch: Batch, labels: Sequence[int] | np.ndarray,
                   weights: Sequence[float] | np.ndarray | None = None) -> float:
        """One update on a micro-batch; no argument is modified.

        Args:
            batch: Flat feature dicts.
            labels: 0/1 (or bool) per dict.
            weights: How much each example counts (e.g. a clipped inverse propensity), scaled
                to a mean of 1 over the batch so the step size stays what it is; None: all 1.

        Returns:
            The batch's mean progressive log loss: each example scored before the update
            that learns it (for a model that learns a batch in one update, the loss before
            it). 0.0 for an empty batch, which is a no-op.

        Raises:
            BatchError: Lengths differ, a label is not 0/1, a weight is negative or not
                finite, or a feature has a bad type.
        """

    def logit_std_many(self, batch: Batch) -> np.ndarray:
        """Optional: the model's uncertainty about each dict's log-odds (a standard deviation),
        for Thompson-style exploration: large for features seen little, small for known ones.

        Raises:
            NotImplementedError: The model keeps no measure of its uncertainty.
        """
        raise NotImplementedError(f"{type(self).__name__} has no uncertainty estimate")

    @abstractmethod
    def clone(self) -> Model:
        """A deep replica: same parameters and statistics, independent from now on."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description.

        Returns:
            ``{"model": name, "hyperparams": {...}, "features": {...}}`` where
            ``build_model(d["model"], **d["hyperparams"])`` builds a fresh model with the same
            configuration and ``"features"`` adds what the encoder has learnt about numerics.
        """

    @abstractmethod
    def save(self) -> bytes:
        """Serialise the model into a self-describing blob for ``load_model``."""

    @classmethod
    @abstractmethod
    def _from_blob(cls, header: dict[str, Any], payload: bytes) -> Model:
        """Rebuild a model from its parsed header and payload (called by ``load_model``)."""

    @abstractmethod
    def forget(self, keep: float) -> None:
        """Unlearn in place after a concept drift: keep only a share ``keep`` of what was
        learnt per feature and learn the next examples at full step size again.

        Fine-tuning alone does not unlearn: after a shift, weights of what the ranking stopped
        showing stay where the old world left them (BENCHMARKS.md, quality). ``keep=0`` is a
        fresh start that keeps only the calibration (the bias) and the feature statistics.

        Raises:
            HyperparameterError: ``keep`` outside [0, 1].
        """

    def embed_many(self, batch: Batch) -> np.ndarray:
        """Optional: a latent vector per dict (e.g. for retrieval or drift monitoring).

        Raises:
            NotImplementedError: The model has no latent space.
        """
        raise NotImplementedError(f"{type(self).__name__} has no embeddings")


def load_model(blob: bytes) -> Model:
    """Rebuild a model saved with ``Model.save``.

    Call this only on bytes whose origin has been verified (the registry's HMAC): river models
    are pickles, and unpickling untrusted bytes can run arbitrary code. Torch payloads are read
    with ``weights_only=True``.

    Args:
        blob: The bytes ``save`` returned.

    Returns:
        The model, scoring exactly as the saved one did.

    Raises:
        BlobError: Not a model blob, an unknown format version or model name, or a checksum
            mismatch.
    """
    header, payload = unpack_blob(blob)
    cls = Model._registry.get(header.get("model", ""))
    if cls is None:
        known = ", ".join(sorted(Model._registry))
        raise BlobError(f"unknown model {header.get('model')!r} in blob (known: {known})")
    return cls._from_blob(header, payload)


def pack_blob(header: dict[str, Any], payload: bytes) -> bytes:
    """Frame a JSON header and a payload into a blob (adds format version and checksum)."""
    full = {**header, "format": FORMAT_VERSION, "sha256": hashlib.sha256(payload).hexdigest()}
    text = json.dumps(full, separators=(",", ":"), allow_nan=False).encode()
    return MAGIC + _LENGTH.pack(len(text)) + text + payload


def unpack_blob(blob: bytes) -> tuple[dict[str, Any], bytes]:
    """Split and check a blob made by ``pack_blob``.

    Raises:
        BlobError: Bad magic, length, JSON, format version or checksum.
    """
    view = memoryview(blob)
    head = len(MAGIC) + _LENGTH.size
    if len(view) < head or bytes(view[: len(MAGIC)]) != MAGIC:
        raise BlobError("not a streamlearn model blob (bad magic)")
    (length,) = _LENGTH.unpack(view[len(MAGIC) : head])
    if length > min(_MAX_HEADER_BYTES, len(view) - head):
        raise BlobError(f"header length {length} exceeds the blob")
    try:
        header = json.loads(bytes(view[head : head + length]))
    except ValueError as exc:
        raise BlobError(f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise BlobError(f"unsupported blob format (expected version {FORMAT_VERSION})")
    payload = bytes(view[head + length :])
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise BlobError("payload checksum mismatch (truncated or corrupt blob)")
    return header, payload


def check_labels(batch: Batch, labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """Labels as a fresh float64 0/1 array the same length as ``batch``.

    Raises:
        BatchError: Lengths differ or a label is not 0/1.

    Example:
        >>> check_labels([{}, {}], [True, 0]).tolist()
        [1.0, 0.0]
    """
    raw = np.asarray(labels)
    if raw.dtype.kind not in "biuf":
        raise BatchError(f"labels must be 0/1 numbers or booleans, got dtype {raw.dtype}")
    y = raw.astype(np.float64).reshape(-1)  # astype copies: the caller's labels stay untouched
    if y.size != len(batch):
        raise BatchError(f"{len(batch)} feature dicts but {y.size} labels")
    if not np.all((y == 0.0) | (y == 1.0)):
        raise BatchError("labels must be 0 or 1")
    return y


def check_weights(batch: Batch, weights: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """Example weights scaled to a mean of 1 (all 1 when None or all 0).

    Raises:
        BatchError: Lengths differ, or a weight is negative or not finite.

    Example:
        >>> check_weights([{}, {}], [1.0, 3.0]).tolist(), check_weights([{}], None).tolist()
        ([0.5, 1.5], [1.0])
    """
    if weights is None:
        return np.ones(len(batch))
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size != len(batch):
        raise BatchError(f"{len(batch)} feature dicts but {w.size} weights")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0.0)):
        raise BatchError("weights must be finite and >= 0")
    total = float(w.sum())
    return w * (w.size / total) if total > 0 else np.ones(w.size)


def check_keep(keep: float) -> float:
    """``keep`` as a float in [0, 1] (``Model.forget``'s argument)."""
    if not 0.0 <= keep <= 1.0:
        raise HyperparameterError(f"forget: keep must be in [0, 1], got {keep}")
    return float(keep)


def logit(p: float) -> float:
    """Log-odds of a probability in (0, 1).

    Example:
        >>> logit(0.5)
        0.0
    """
    return float(np.log(p) - np.log1p(-p))
