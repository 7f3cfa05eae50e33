"""River learners behind the ``Model`` protocol: logistic regression and an adaptive Hoeffding tree.

River learns one example at a time; ``learn_many`` loops ``learn_one`` in batch order, so a
batch of size 1 is exactly river's own test-then-train. Features reach river either raw
(``features="raw"``, the default: numbers as they are, scaled by river's ``StandardScaler`` for
the linear model; categoricals one-hot for the linear model, nominal for the tree) or hashed
through the shared ``FeatureEncoder`` (``features="hashed"``: bounded memory whatever the number
of ids). River is pure Python: expect thousands, not tens of thousands, of examples a second.

Saved as a pickle behind the common JSON header, so the registry can check its HMAC before
``load_model`` unpickles it.
"""

from __future__ import annotations

import copy
import pickle
from abc import abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from river import linear_model, optim, preprocessing, tree

from models.errors import BlobError, HyperparameterError
from models.evaluation.metrics import log_loss
from models.features.encoding import (
    NOT_CROSSED,
    Batch,
    FeatureDict,
    FeatureEncoder,
    FeatureSpec,
    stable_hash,
    value_kind,
)
from models.learners.base import (
    Model,
    check_keep,
    check_labels,
    check_weights,
    logit,
    pack_blob,
)

FeatureMode = Literal["raw", "hashed"]
# One prepared example: (numeric features, categorical features); hashed rows are all numeric.
_Row = tuple[dict[Any, float], dict[str, str]]


@dataclass(frozen=True)
class RiverLogRegConfig:
    """``StandardScaler | LogisticRegression`` with SGD (river's defaults unless set).

    Attributes:
        features: ``"raw"`` feature dicts or ``"hashed"`` indices.
        lr: SGD learning rate of the weights.
        intercept_lr: Learning rate of the intercept.
        l2: L2 penalty.
        prior_ctr: The intercept starts at its logit (0.5 gives river's default of 0).
        seed: Unused by this deterministic learner; kept so every model takes a seed.
    """

    features: FeatureMode = "raw"
    lr: float = 0.01
    intercept_lr: float = 0.01
    l2: float = 0.0
    prior_ctr: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self.features, self.prior_ctr)
        if not self.lr > 0 or self.intercept_lr < 0 or self.l2 < 0:
            raise HyperparameterError("need lr > 0, intercept_lr >= 0 and l2 >= 0")


@dataclass(frozen=True)
class RiverHoeffdingConfig:
    """``tree.HoeffdingAdaptiveTreeClassifier`` (river's defaults unless set).

    Attributes:
        features: ``"raw"`` feature dicts or ``"hashed"`` indices.
        grace_period: Examples a leaf sees between split attempts.
        delta: Allowed split error (Hoeffding bound confidence).
        leaf_prediction: ``"mc"``, ``"nb"`` or ``"nba"``.
        max_depth: Depth limit, None for none.
        max_categories: Raw categorical values are hashed into this many nominal values per
            key. River evaluates a binary nominal split in time quadratic in a key's distinct
            values, and an id key has unboundedly many: 100k user ids took a split attempt to
            seconds. Categories colliding in one bucket are merged.
        prior_ctr: Score of a tree that has not seen any example yet.
        seed: Seeds the tree's bootstrap sampling.
    """

    features: FeatureMode = "raw"
    grace_period: int = 200
    delta: float = 1e-7
    leaf_prediction: Literal["mc", "nb", "nba"] = "nba"
    max_depth: int | None = None
    max_categories: int = 64
    prior_ctr: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        _check_common(self.features, self.prior_ctr)
        if self.grace_period < 1 or not 0 < self.delta < 1 or self.max_categories < 2:
            raise HyperparameterError("need grace_period >= 1, 0 < delta < 1, max_categories >= 2")
        if self.leaf_prediction not in ("mc", "nb", "nba"):
            got = self.leaf_prediction
            raise HyperparameterError(f"leaf_prediction: expected mc, nb or nba, got {got!r}")


def _check_common(features: str, prior_ctr: float) -> None:
    if features not in ("raw", "hashed"):
        raise HyperparameterError(f"features: expected 'raw' or 'hashed', got {features!r}")
    if not 0.0 < prior_ctr < 1.0:
        raise HyperparameterError(f"prior_ctr: expected 0 < p < 1, got {prior_ctr}")


class RiverModel(Model):
    """Adapter from river's one-at-a-time classifiers to the batch ``Model`` protocol.

    Subclasses build their river estimators (``_build``) and say how one prepared example is
    scored and learnt (``_proba_one``, ``_learn_one``); the batching, label checks, loss and
    persistence live here.
    """

    config_class: type[RiverLogRegConfig] | type[RiverHoeffdingConfig]
    config: RiverLogRegConfig | RiverHoeffdingConfig

    def __init__(self, config: Any = None, spec: FeatureSpec | None = None) -> None:
        self.config = config or self.config_class()
        if type(self.config) is not self.config_class:
            raise HyperparameterError(f"{self.name} needs a {self.config_class.__name__}")
        self.encoder = FeatureEncoder(spec, seed=self.config.seed)
        self.river = self._build()

    @classmethod
    def from_hyperparams(cls, model_args: dict[str, Any], spec: FeatureSpec) -> RiverModel:
        """A fresh model from its config's keyword arguments and a feature spec."""
        return cls(cls.config_class(**model_args), spec)

    @abstractmethod
    def _build(self) -> dict[str, Any]:
        """The river estimators, by name (pickled together by ``save``)."""

    @abstractmethod
    def _proba_one(self, row: _Row) -> dict[Any, float]:
        """River's class distribution for one prepared example."""

    @abstractmethod
    def _learn_one(self, row: _Row, label: bool, weight: float = 1.0) -> None:
        """Learn one prepared example with its weight."""

    def _rows(self, batch: Batch, *, learn: bool) -> list[_Row]:
        if self.config.features == "hashed":
            enc = self.encoder.encode(batch, learn=learn)
            return [(enc.row_dict(r), {}) for r in range(len(batch))]
        spec = self.encoder.spec
        return [split_features(x, spec.crosses, spec.cross_anchor) for x in batch]

    def _score(self, row: _Row) -> float:
        dist = self._proba_one(row)
        total = sum(dist.values())
        if not total:
            return self.config.prior_ctr  # nothing learnt yet
        return float(dist.get(True, 0.0)) / total  # True == 1, whichever labels were learnt

    def predict_proba_many(self, batch: Batch) -> np.ndarray:
        """See ``Model.predict_proba_many``."""
        rows = self._rows(batch, learn=False)
        return np.array([self._score(row) for row in rows], dtype=np.float64).reshape(-1)

    def learn_many(self, batch: Batch, labels: Sequence[int] | np.ndarray,
                   weights: Sequence[float] | np.ndarray | None = None) -> float:
        """See ``Model.learn_many``; the loss is computed from scores taken before learning.
        Weights go to river's ``learn_one(x, y, w)``."""
        y = check_labels(batch, labels)
        w = check_weights(batch, weights)
        if not len(batch):
            return 0.0
        rows = self._rows(batch, learn=True)
        before = np.array([self._score(row) for row in rows], dtype=np.float64)
        for row, label, weight in zip(rows, y.tolist(), w.tolist(), strict=True):
            self._learn_one(row, label == 1.0, weight)
        return log_loss(y, before)

    def forget(self, keep: float) -> None:
        """See ``Model.forget``: river's estimators cannot shrink what they learnt, so any
        ``keep < 1`` rebuilds them fresh (the encoder's statistics stay)."""
        if check_keep(keep) < 1.0:
            self.river = self._build()

    def clone(self) -> RiverModel:
        """See ``Model.clone``."""
        return copy.deepcopy(self)

    def describe(self) -> dict[str, Any]:
        """See ``Model.describe``."""
        return {
            "model": self.name,
            "hyperparams": {**asdict(self.config), **self.encoder.spec.to_dict()},
            "features": {
                "spec": self.encoder.spec.to_dict(),
                "mode": self.config.features,
                "numeric": self.encoder.numeric_summary(),
            },
        }

    def save(self) -> bytes:
        """See ``Model.save``: the river estimators pickled behind the JSON header."""
        header = {
            "model": self.name,
            "config": asdict(self.config),
            "encoder": self.encoder.to_state(),
            "payload": "pickle",
        }
        return pack_blob(header, pickle.dumps(self.river, protocol=5))

    @classmethod
    def _from_blob(cls, header: dict[str, Any], payload: bytes) -> RiverModel:
        if header.get("payload") != "pickle":
            raise BlobError(f"{cls.name} blob must carry a pickle payload")
        try:
            encoder = FeatureEncoder.from_state(header["encoder"])
            model = cls(cls.config_class(**header["config"]), encoder.spec)
            model.encoder = encoder
            # Safe only because load_model's contract requires bytes the registry verified.
            model.river = pickle.loads(payload)  # noqa: S301
        except (KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
            raise BlobError(f"cannot rebuild {cls.name} from blob: {exc}") from exc
        return model


class RiverLogReg(RiverModel):
    """``river_logreg``: river's ``StandardScaler | LogisticRegression``.

    Raw mode scales the numeric features only and feeds categoricals one-hot (``key=value``:
    1.0): river's scaler sees sparse dicts, so scaling a rare indicator would inflate it to
    ``1/std`` (tens) whenever it is present and wreck SGD. On all-numeric data (river's
    Phishing) this is exactly river's pipeline. Hashed mode skips the scaler: the encoder has
    standardised the numerics already.
    """

    name = "river_logreg"
    config_class = RiverLogRegConfig
    config: RiverLogRegConfig

    def _build(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "scaler": preprocessing.StandardScaler(),
            "lr": linear_model.LogisticRegression(
                optimizer=optim.SGD(cfg.lr),
                l2=cfg.l2,
                intercept_init=logit(cfg.prior_ctr),
                intercept_lr=cfg.intercept_lr,
            ),
        }

    def _inputs(self, row: _Row) -> dict[Any, float]:
        numeric, categorical = row
        if self.config.features == "hashed":
            return numeric
        scaler = self.river["scaler"]
        # river's transform_one reads its defaultdicts, inserting every key it has not learnt:
        # scoring would then grow the model. Drop such keys first; river would scale them to
        # 0, which a linear model treats exactly like absence.
        x = scaler.transform_one({k: v for k, v in numeric.items() if k in scaler.counts})
        x.update({f"{k}={v}": 1.0 for k, v in categorical.items()})
        return x

    def _proba_one(self, row: _Row) -> dict[Any, float]:
        return self.river["lr"].predict_proba_one(self._inputs(row))

    def _learn_one(self, row: _Row, label: bool, weight: float = 1.0) -> None:
        if self.config.features == "raw":
            # river's Pipeline order: the scaler learns the example, then transforms it.
            self.river["scaler"].learn_one(row[0])
        self.river["lr"].learn_one(self._inputs(row), label, w=weight)


class RiverHoeffding(RiverModel):
    """``river_hoeffding``: river's Hoeffding adaptive tree (drift-aware subtree swaps).

    Categoricals stay nominal (hashed into ``max_categories`` values per key) and splits are
    binary (``value == v`` or not): multiway splits let a high-cardinality key such as a user
    id, or a user × category cross, win on noise with hundreds of one-example leaves. Hashed
    mode is available but weak for trees: river treats an absent key as missing, not 0, so a
    hashed indicator has nothing to split on.
    """

    name = "river_hoeffding"
    config_class = RiverHoeffdingConfig
    config: RiverHoeffdingConfig

    def _build(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "tree": tree.HoeffdingAdaptiveTreeClassifier(
                grace_period=cfg.grace_period,
                delta=cfg.delta,
                leaf_prediction=cfg.leaf_prediction,
                max_depth=cfg.max_depth,
                binary_split=True,
                seed=cfg.seed,
            )
        }

    def _inputs(self, row: _Row) -> dict[Any, Any]:
        numeric, categorical = row
        m = self.config.max_categories
        # Bucket names stay strings so river keeps treating them as nominal values.
        buckets = {k: f"#{stable_hash(v) % m}" for k, v in categorical.items()}
        return {**numeric, **buckets}

    def _proba_one(self, row: _Row) -> dict[Any, float]:
        return self.river["tree"].predict_proba_one(self._inputs(row))

    def _learn_one(self, row: _Row, label: bool, weight: float = 1.0) -> None:
        self.river["tree"].learn_one(self._inputs(row), label, w=weight)


def split_features(
    x: FeatureDict, crosses: Iterable[tuple[str, str]], anchor: str | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """A feature dict as raw (unhashed) numeric and categorical parts, for river learners.

    Numbers become floats, strings and booleans strings; missing and non-finite values are
    dropped; each cross present adds ``"a&b": "<va>|<vb>"`` to the categoricals, and so does
    each anchor cross (``FeatureSpec.cross_anchor``). Both parts keep the dict's key order, so
    river sees numerics exactly as it would the original dict.

    Example:
        >>> split_features({"device": "tv", "price": 3, "ok": True}, [("device", "ok")])
        ({'price': 3.0}, {'device': 'tv', 'ok': 'True', 'device&ok': 'tv|True'})
        >>> split_features({"user_id": "u1", "device": "tv", "item_id": "i"}, (), "user_id")[1]
        {'user_id': 'u1', 'device': 'tv', 'item_id': 'i', 'user_id&device': 'u1|tv'}
    """
    numeric: dict[str, float] = {}
    categorical: dict[str, str] = {}
    for key, value in x.items():
        kind = value_kind(key, value)
        if kind == "num":
            numeric[key] = float(value)
        elif kind == "cat":
            categorical[key] = str(value)
    for a, b in crosses:
        va = x.get(a)
        vb = x.get(b)
        if va is not None and vb is not None:
            categorical[f"{a}&{b}"] = f"{va}|{vb}"
    va = x.get(anchor) if anchor is not None else None
    if va is not None:
        for key, value in x.items():
            if isinstance(value, str | bool) and key != anchor and key not in NOT_CROSSED:
                categorical[f"{anchor}&{key}"] = f"{va}|{value}"
    return numeric, categorical
