"""Feature encoding shared by serving and training: flat feature dicts → hashed sparse rows.

A feature dict is exactly what ``predictions``/``examples`` log in ``features``: string, number
or boolean values under any keys, any of which may be missing, new keys at any time. Encoding:

* strings and booleans are categorical: one index ``h("key=value")`` with value 1;
* numbers get two entries: their z-score (running mean/variance, clipped) at ``h("key")``, and
  an equal-frequency bucket ``h("key#b=<bucket>")`` with value 1, bucket edges read off a
  bounded reservoir sketch of the values seen; non-finite numbers and ``None`` count as missing;
* numbers under a key in ``categorical`` (codes, cyclic values such as the hour of day, whose
  order means nothing to one weight) are categorical too: ``h("hour=13")``; so are those of a
  key whose first numbers learnt are all integers below ``coded_below``, whatever its name;
* each configured cross ``(a, b)`` present in the dict adds ``h("a=<va>&b=<vb>")`` with value 1
  (numbers are crossed by their exact value, so cross categoricals or small integers);
* the ``cross_anchor`` (default ``user_id``, which serving always logs) is crossed the same way
  with every other string or boolean feature, whatever its name: per-user taste with no cross
  named. ``item_id`` is left out: a weight per user and item is seen too rarely to learn (the
  FM's latent vectors learn that term).

``h`` is CRC-32 of the UTF-8 text masked to ``hash_bits`` bits: stable across processes,
machines and Python versions (unlike the salted built-in ``hash``) and about 70 ns a call.

Statistics change only when the encoder is asked to learn (``encode(..., learn=True)``), so
scoring never mutates the encoder. A key, value, user or cross never seen in training maps to a
weight not learnt yet (continuous cold start: the model falls back on what it does know).

Example:
    >>> enc = FeatureEncoder(FeatureSpec(hash_bits=18, crosses=()))
    >>> rows = enc.encode([{"device": "mobile"}, {}])
    >>> rows.indices.tolist(), rows.values.tolist(), rows.lengths.tolist()
    ([[134967], [0]], [[1.0], [0.0]], [1, 0])
    >>> auto = FeatureEncoder(FeatureSpec(hash_bits=18))  # crosses from the anchor, user_id
    >>> row = auto.encode([{"user_id": "u1", "genre": "jazz", "item_id": "i9"}]).row_dict(0)
    >>> stable_hash("user_id=u1&genre=jazz") & (2**18 - 1) in row, len(row)
    (True, 4)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from numbers import Real
from typing import Any

import numpy as np

from models.errors import BatchError, HyperparameterError
from models.features.stats import ReservoirSketch, RunningStats

FeatureValue = str | int | float | bool
FeatureDict = Mapping[str, FeatureValue]
Batch = Sequence[FeatureDict]

# Never crossed with the anchor: the contract's item id (see the module docstring).
NOT_CROSSED = frozenset({"item_id"})

# Numbers at or beyond this magnitude (and NaN, infinities) are treated as missing: they would
# overflow float64 maths and carry no usable signal.
_MAX_NUM = 1e300


def stable_hash(text: str) -> int:
    """CRC-32 of ``text`` as UTF-8: the same value in every process.

    Example:
        >>> stable_hash("device=mobile")
        4081717047
    """
    return zlib.crc32(text.encode())


@dataclass(frozen=True)
class FeatureSpec:
    """How flat feature dicts become hashed indices.

    Attributes:
        hash_bits: Size of the hashed index space, ``2**hash_bits`` rows.
        crosses: Pairs of keys whose values are combined into one categorical feature.
        cross_anchor: A key crossed with every other string or boolean feature of a dict
            but ``item_id``, named or not; None: only ``crosses``. ``user_id`` is in every
            dict serving logs, so a client's own names need no configuration.
        n_buckets: Equal-frequency buckets per numeric feature.
        sketch_size: Values kept per numeric feature to estimate bucket edges (bounded memory).
        clip: Z-scores are clipped to ``[-clip, clip]`` so an outlier cannot blow up a logit.
        max_numeric_keys: Numeric keys with statistics; further new keys still contribute a
            presence bucket but no statistics, so a stream of junk keys cannot grow memory.
        categorical: Keys whose numbers are categories, one weight per value. The default
            ``hour``: as a z-score, hour 23 is far from hour 0 and a model extrapolates to
            hours it has not seen. In the quality replay a champion trained on hours 8 to 23,
            while clicks fell after a drift, scored 0.30 instead of 0.03 when the clock
            wrapped to 0.
        coded_below: A numeric key whose values in the first batch learnt are all integers
            in ``[0, coded_below)`` is categorical from then on (an hour of day under any
            name); 0: only ``categorical``.
    """

    hash_bits: int = 18
    crosses: tuple[tuple[str, str], ...] = ()
    cross_anchor: str | None = "user_id"
    n_buckets: int = 16
    sketch_size: int = 256
    clip: float = 5.0
    max_numeric_keys: int = 1024
    categorical: tuple[str, ...] = ("hour",)
    coded_below: int = 32

    def __post_init__(self) -> None:
        # Accept lists (e.g. from JSON or YAML) but store hashable, immutable tuples.
        try:
            crosses = tuple((str(a), str(b)) for a, b in self.crosses)
        except (TypeError, ValueError) as exc:
            msg = f"crosses: expected pairs of keys, got {self.crosses!r}"
            raise HyperparameterError(msg) from exc
        object.__setattr__(self, "crosses", crosses)
        if self.cross_anchor is not None and not isinstance(self.cross_anchor, str):
            raise HyperparameterError(f"cross_anchor: expected a key, got {self.cross_anchor!r}")
        if isinstance(self.categorical, str) or not all(
                isinstance(k, str) for k in self.categorical):
            raise HyperparameterError(
                f"categorical: expected a list of keys, got {self.categorical!r}")
        object.__setattr__(self, "categorical", tuple(self.categorical))
        if not 4 <= self.hash_bits <= 30:
            raise HyperparameterError(f"hash_bits: expected 4..30, got {self.hash_bits}")
        if self.coded_below < 0:
            raise HyperparameterError(f"coded_below: expected >= 0, got {self.coded_below}")
        if self.n_buckets < 1 or self.sketch_size < 1 or self.max_numeric_keys < 0:
            raise HyperparameterError("need n_buckets, sketch_size >= 1 and max_numeric_keys >= 0")
        if not self.clip > 0:
            raise HyperparameterError(f"clip: expected > 0, got {self.clip}")

    @property
    def n_rows(self) -> int:
        """Number of hashed indices, ``2**hash_bits``."""
        return 1 << self.hash_bits

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; ``FeatureSpec(**spec.to_dict()) == spec``."""
        out = asdict(self)
        out["crosses"] = [list(pair) for pair in self.crosses]
        out["categorical"] = list(self.categorical)
        return out


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """A batch as padded sparse rows: row ``r`` is ``sum(values[r, j] * e[indices[r, j]])``.

    Padding entries have index 0 and value 0.0, so they add nothing to a weighted sum.
    """

    indices: np.ndarray  # int64, shape (n, width)
    values: np.ndarray  # float32, shape (n, width)
    lengths: np.ndarray  # int64, shape (n,): real entries per row

    def row_dict(self, r: int) -> dict[int, float]:
        """Row ``r`` as ``{index: value}`` (for learners that take dicts, e.g. river)."""
        n = int(self.lengths[r])
        out: dict[int, float] = {}
        for i, v in zip(self.indices[r, :n].tolist(), self.values[r, :n].tolist(), strict=True):
            out[i] = out.get(i, 0.0) + v  # two features hashed to one index add up
        return out


class _Numeric:
    """Statistics of one numeric key."""

    __slots__ = ("stats", "sketch")

    def __init__(self, stats: RunningStats, sketch: ReservoirSketch) -> None:
        self.stats = stats
        self.sketch = sketch


class FeatureEncoder:
    """Encodes batches of feature dicts; holds the online statistics of numeric features."""

    def __init__(self, spec: FeatureSpec | None = None, seed: int = 0) -> None:
        self.spec = spec or FeatureSpec()
        self.seed = seed
        self._mask = self.spec.n_rows - 1
        self._coded = frozenset(self.spec.categorical)
        self._numeric: dict[str, _Numeric] = {}
        # Numeric keys found to hold codes (``FeatureSpec.coded_below``): categorical now.
        self._found_coded: set[str] = set()
        # Stand-in for keys without statistics: z-score 0, bucket 0, never updated.
        self._unknown = _Numeric(RunningStats(), ReservoirSketch(1, 0))
        # Derived from the spec alone, so cached rather than saved.
        self._key_index: dict[str, int] = {}
        self._bucket_index: dict[str, np.ndarray] = {}

    def encode(self, batch: Batch, *, learn: bool = False) -> EncodedBatch:
        """Encode a batch; with ``learn=True`` first fold its numerics into the statistics.

        Args:
            batch: Flat feature dicts. Not modified.
            learn: Update running statistics and sketches (training only, never serving).

        Returns:
            The padded sparse rows, one per dict.

        Raises:
            BatchError: A value is not a string, number, boolean or None.
        """
        mask = self._mask
        crc = zlib.crc32
        crosses = self.spec.crosses
        anchor = self.spec.cross_anchor
        coded = self._coded
        found = self._found_coded
        # Every entry has value 1.0 except numeric z-scores, filled in below: no value list.
        idx: list[int] = []
        lengths: list[int] = []
        num_pos: dict[str, list[int]] = {}
        num_val: dict[str, list[float]] = {}
        for x in batch:
            start = len(idx)
            va = x.get(anchor) if anchor is not None else None
            # "anchor=<value>&": the prefix of every anchor cross of this dict.
            prefix = f"{anchor}={va}&" if va is not None else None
            for key, value in x.items():
                # Exact-class checks inline: this loop is the hot path of training and serving.
                cls = value.__class__
                if cls is str or cls is bool:
                    kind = "cat"
                elif cls is float or cls is int:
                    # NaN fails the comparison too. (mypy cannot narrow on an exact-class test.)
                    kind = "num" if -_MAX_NUM < value < _MAX_NUM else "skip"  # type: ignore[operator]
                else:
                    kind = value_kind(key, value)
                if kind == "num" and (key in coded or key in found):
                    kind = "cat"
                if kind == "cat":
                    text = f"{key}={value}"
                    idx.append(crc(text.encode()) & mask)
                    if prefix is not None and (cls is str or cls is bool) and key != anchor \
                            and key not in NOT_CROSSED:
                        idx.append(crc((prefix + text).encode()) & mask)
                elif kind == "num":
                    # Two placeholders (z-score, bucket), filled in per key with numpy below.
                    num_pos.setdefault(key, []).append(len(idx))
                    num_val.setdefault(key, []).append(value)  # type: ignore[arg-type]
                    idx.extend((0, 0))
            for a, b in crosses:
                va = x.get(a)
                vb = x.get(b)
                if va is not None and vb is not None:
                    idx.append(crc(f"{a}={va}&{b}={vb}".encode()) & mask)
            lengths.append(len(idx) - start)
        flat_idx = np.array(idx, dtype=np.int64)
        flat_val = np.ones(flat_idx.size, dtype=np.float32)
        for key, positions in num_pos.items():
            self._fill_numeric(key, positions, num_val[key], flat_idx, flat_val, learn)
        return _pad(flat_idx, flat_val, np.array(lengths, dtype=np.int64))

    def _fill_numeric(
        self,
        key: str,
        positions: list[int],
        raw: list[float],
        flat_idx: np.ndarray,
        flat_val: np.ndarray,
        learn: bool,
    ) -> None:
        xs = np.array(raw, dtype=np.float64)
        numeric = self._numeric.get(key)
        if numeric is None and learn and self._holds_codes(xs):
            self._found_coded.add(key)
            # As the categorical path encodes them from now on; the second entry is padding.
            pos = np.array(positions, dtype=np.int64)
            mask = self._mask
            flat_idx[pos] = [stable_hash(f"{key}={v}") & mask for v in raw]
            flat_idx[pos + 1] = 0
            flat_val[pos + 1] = 0.0
            return
        if numeric is None and learn and len(self._numeric) < self.spec.max_numeric_keys:
            sketch = ReservoirSketch(self.spec.sketch_size, self.seed ^ stable_hash(key))
            numeric = self._numeric[key] = _Numeric(RunningStats(), sketch)
        if numeric is None:
            numeric = self._unknown
        elif learn:
            numeric.stats.update(xs)
            numeric.sketch.update(xs)
        pos = np.array(positions, dtype=np.int64)
        flat_idx[pos] = self._index_of_key(key)
        flat_val[pos] = numeric.stats.standardise(xs, self.spec.clip)
        buckets = numeric.sketch.bucketise(xs, self.spec.n_buckets)
        flat_idx[pos + 1] = self._buckets_of_key(key)[buckets]

    def _holds_codes(self, xs: np.ndarray) -> bool:
        """A new key's first values look like codes (and it fits in ``max_numeric_keys``)."""
        room = len(self._numeric) + len(self._found_coded) < self.spec.max_numeric_keys
        below = self.spec.coded_below
        return bool(room and below and np.all((xs >= 0) & (xs < below) & (xs == np.floor(xs))))

    def _index_of_key(self, key: str) -> int:
        index = self._key_index.get(key)
        if index is None:
            index = self._key_index[key] = stable_hash(key) & self._mask
        return index

    def _buckets_of_key(self, key: str) -> np.ndarray:
        table = self._bucket_index.get(key)
        if table is None:
            names = (f"{key}#b={b}" for b in range(self.spec.n_buckets))
            table = np.array([stable_hash(n) & self._mask for n in names], dtype=np.int64)
            self._bucket_index[key] = table
        return table

    def numeric_summary(self) -> dict[str, dict[str, float]]:
        """Count, mean and standard deviation of each tracked numeric key."""
        return {
            key: {
                "count": num.stats.count,
                "mean": num.stats.mean,
                "std": math.sqrt(num.stats.variance),
            }
            for key, num in self._numeric.items()
        }

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable state: spec, seed and per-key statistics and sketches."""
        return {
            "spec": self.spec.to_dict(),
            "seed": self.seed,
            "numeric": {
                key: {"stats": num.stats.to_state(), "sketch": num.sketch.to_state()}
                for key, num in self._numeric.items()
            },
            "coded": sorted(self._found_coded),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FeatureEncoder:
        """Inverse of ``to_state``."""
        # Blobs written before ``categorical`` existed encoded every number as a number.
        # Blobs written before ``cross_anchor`` and ``coded_below`` existed had only named
        # crosses and numbers.
        spec = {"categorical": (), "cross_anchor": None, "coded_below": 0, **state["spec"]}
        enc = cls(FeatureSpec(**spec), int(state["seed"]))
        for key, num in state["numeric"].items():
            sketch = ReservoirSketch.from_state(
                num["sketch"], enc.spec.sketch_size, enc.seed ^ stable_hash(key)
            )
            enc._numeric[key] = _Numeric(RunningStats.from_state(num["stats"]), sketch)
        enc._found_coded = set(state.get("coded", ()))
        return enc


def value_kind(key: str, value: object) -> str:
    """'cat', 'num' or 'skip' (missing) for one feature value."""
    if value is None:
        return "skip"
    if isinstance(value, bool | np.bool_ | str):
        return "cat"
    if isinstance(value, Real):
        try:
            number = float(value)
        except OverflowError:
            return "skip"
        return "num" if -_MAX_NUM < number < _MAX_NUM else "skip"
    kind = value.__class__.__name__
    raise BatchError(f"feature {key!r}: expected a string, number or boolean, got {kind}")


def _pad(flat_idx: np.ndarray, flat_val: np.ndarray, lengths: np.ndarray) -> EncodedBatch:
    n = lengths.size
    width = max(1, int(lengths.max())) if n else 1
    indices = np.zeros((n, width), dtype=np.int64)
    values = np.zeros((n, width), dtype=np.float32)
    if flat_idx.size:
        starts = np.cumsum(lengths) - lengths
        rows = np.repeat(np.arange(n), lengths)
        cols = np.arange(flat_idx.size) - np.repeat(starts, lengths)
        indices[rows, cols] = flat_idx
        values[rows, cols] = flat_val
    return EncodedBatch(indices, values, lengths)
