"""Drift of what the trainer sees besides the labels: its examples' features and served scores.

All pure and bounded in memory; the trainer feeds them each micro-batch and exports what they
say (``services.trainer.metrics``). Concept drift on the labels is ``models.drift.detectors``;
rolling figures per slice are ``models.drift.slices``; the windows behind both monitors are
``models.drift.exposure``.

* ``FeatureDriftMonitor``: per-feature drift of the current window against a reference window:
  PSI for categorical features (top categories of the reference, the rest pooled as "other")
  and for numeric ones (binned at the reference's quantiles, with a bin below its minimum and
  one above its maximum), plus the two-sample Kolmogorov–Smirnov statistic for numeric ones.
* ``ScoreDriftMonitor``: the same numeric PSI/KS on the served scores.

**Like with like.** The trainer only sees what was *shown*, and the ranking chooses what is
shown: an untrained cold-start champion shows candidates nearly at random, a trained one shows
the categories users liked, exploration a few more of the others. A window of examples mixes
the world's traffic with the ranking's choice, so a new champion used to move the PSI although
the world had not moved (measured on the simulator's stationary world: ``item_category`` PSI
2.4 against a cold start's reference, 15 after a taste flip's promotions). So each example
comes with the key of the ranking that showed it (``exposure``: serving model version, arm and
exploration policy), and

- the reference is the first ``reference_size`` values of one ranking; the current window
  holds the last ``window`` values of the ranking serving (the newest, once it has shown
  ``bridge`` of them; until then the one before it);
- when the ranking changes from *u* to *v*, *u*'s last ``bridge`` values and *v*'s first
  ``bridge`` show the same world through two rankings. If they differ by more than
  ``tolerance`` (PSI), the reference is carried over: each bin is scaled by *v*'s share over
  *u*'s (``exposure.carry``), which makes it the reference world as *v* would have shown it
  and keeps a drift already under way. Rankings that show alike leave it as it is;
- a feature that never differs within a request (device, hour: the adapter passes request ids)
  is not the ranking's doing and is never carried over;
- the served scores belong to the model: each change of ranking restarts their reference from
  the new ranking's first ``bridge`` scores, so the score PSI says whether the champion's own
  scores moved while it served.

What the trainer's examples cannot tell: a change of the world within ``bridge`` examples of a
change of ranking that shows otherwise is partly taken for the ranking's; and across a change
to a ranking that shows none of what its predecessor showed, a drift of what only the
predecessor showed is lost (nothing relates the two). Look-alike promotions, the common kind,
carry nothing over and lose nothing.

Example:
    >>> import numpy as np
    >>> m = ScoreDriftMonitor(reference_size=200, window=200)
    >>> m.update(np.linspace(0.01, 0.1, 200)); m.update(np.linspace(0.01, 0.1, 200))
    >>> m.drift().psi, m.drift().ks
    (0.0, 0.0)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from models.drift.exposure import (
    BRIDGE,
    TOLERANCE,
    ExposureWindows,
    FeatureDrift,
    FeatureKind,
)
from models.drift.slices import MISSING, OTHER
from models.drift.stats import ks_2samp, psi

__all__ = ["MISSING", "OTHER", "FeatureDrift", "FeatureDriftMonitor", "FeatureKind",
           "ScoreDriftMonitor", "ks_2samp", "psi"]


def _numbers(values: Sequence[Any]) -> list[int]:
    """The positions of the numbers in ``values``.

    Missing values, text and booleans are not part of the distribution (type(), not
    isinstance: a bool is an int); nor is NaN (x == x).

    Example:
        >>> _numbers([1, "a", True, None, float("nan"), 2.5])
        [0, 5]
    """
    return [i for i, x in enumerate(values) if type(x) in (int, float) and x == x]


class FeatureDriftMonitor:
    """Per-feature drift of a sliding window against a reference window, like with like.

    The reference is the first ``reference_size`` values of each feature shown by one
    ranking; after that, the last ``window`` values of the ranking now serving form the
    current window, and a change of ranking is bridged as the module's docstring says. Memory
    is bounded by those sizes, a few rankings and, for categorical features,
    ``max_categories`` (the reference's most frequent; later and rarer values are pooled as
    ``other``).

    Example:
        >>> m = FeatureDriftMonitor({"device": "categorical", "price": "numeric"},
        ...                         reference_size=100, window=100)
        >>> m.update([{"device": "tv", "price": float(i)} for i in range(100)])
        >>> m.update([{"device": "mobile", "price": float(i) + 50} for i in range(100)])
        >>> {f: (round(d.psi, 2), d.ks) for f, d in m.drift().items()}
        {'device': (18.42, None), 'price': (7.71, 0.5)}
    """

    def __init__(
        self,
        features: Mapping[str, FeatureKind],
        *,
        reference_size: int = 5_000,
        window: int = 5_000,
        bins: int = 10,
        max_categories: int = 20,
        bridge: int = BRIDGE,
        tolerance: float = TOLERANCE,
    ) -> None:
        if min(reference_size, window, bins, max_categories, bridge) < 1:
            raise ValueError("reference_size, window, bins, max_categories and bridge must "
                             "be >= 1")
        self._monitors: dict[str, ExposureWindows] = {}
        for name, kind in features.items():
            if kind not in ("categorical", "numeric"):
                raise ValueError(f"feature {name!r}: kind must be categorical or numeric, "
                                 f"got {kind!r}")
            self._monitors[name] = ExposureWindows(
                kind, reference_size=reference_size, window=window, bins=bins,
                max_categories=max_categories, bridge=bridge, tolerance=tolerance)

    @property
    def features(self) -> tuple[str, ...]:
        """The monitored features (the only values a ``feature`` metrics label takes)."""
        return tuple(self._monitors)

    def update(self, rows: Sequence[Mapping[str, Any]],
               exposure: Sequence[Hashable] | None = None,
               requests: Sequence[Hashable] | None = None,
               times: Sequence[int] | None = None) -> None:
        """Add one batch of feature dicts (a missing feature counts as ``missing``).

        Args:
            rows: The examples' features, in arrival order.
            exposure: Per row, the key of the ranking that showed it (the serving model
                version and exploration policy); None: one ranking throughout.
            requests: Per row, the id of the request it was shown for; it tells request-level
                features (which no ranking moves) from item-level ones. None: not known.
            times: Per row, when it was served (any increasing unit); it tells a ranking
                that serves again (a rollback) from late rows of one left behind.
        """
        n = len(rows)
        keys: Sequence[Hashable] = [None] * n if exposure is None else exposure
        for name, monitor in self._monitors.items():
            values: list[Any] = [row.get(name) for row in rows]
            if monitor.kind == "numeric":
                kept = _numbers(values)
                monitor.update([float(values[i]) for i in kept], [keys[i] for i in kept],
                               None if requests is None else [requests[i] for i in kept],
                               None if times is None else [times[i] for i in kept])
            else:
                monitor.update([MISSING if v is None else str(v) for v in values], keys,
                               requests, times)

    def drift(self) -> dict[str, FeatureDrift]:
        """Each feature's figures, once its reference is complete and its window has at least
        ``bridge`` values (or ``window``, if smaller) of the ranking serving."""
        out = {name: m.drift(name) for name, m in self._monitors.items()}
        return {name: d for name, d in out.items() if d is not None}


class ScoreDriftMonitor:
    """Drift of the served scores' distribution (PSI on reference deciles, and KS) under one
    model: every change of ranking restarts the reference from the new one's first ``bridge``
    scores, and a figure follows once ``bridge`` more are in.

    Example:
        >>> m = ScoreDriftMonitor(reference_size=200, window=200)
        >>> m.update(np.full(200, 0.05), ["v1"] * 200)  # a cold start scores the prior
        >>> m.update(np.tile(np.linspace(0.01, 0.1, 200), 2), ["v2"] * 400)  # trained: not
        >>> d = m.drift(); d.psi, d.links, d.n_current
        (0.0, 1, 200)
    """

    def __init__(self, *, reference_size: int = 5_000, window: int = 5_000, bins: int = 10,
                 bridge: int = BRIDGE) -> None:
        self._numeric = ExposureWindows("numeric", reference_size=reference_size,
                                        window=window, bins=bins, bridge=bridge, restart=True)

    def update(self, scores: np.ndarray, exposure: Sequence[Hashable] | None = None,
               times: Sequence[int] | None = None) -> None:
        """Add one batch of predicted click probabilities (``exposure`` and ``times`` as for
        features)."""
        values = np.asarray(scores, dtype=np.float64).reshape(-1).tolist()
        keys: Sequence[Hashable] = [None] * len(values) if exposure is None else exposure
        kept = _numbers(values)
        self._numeric.update([values[i] for i in kept], [keys[i] for i in kept],
                             times=None if times is None else [times[i] for i in kept])

    def drift(self) -> FeatureDrift | None:
        """The figures (feature ``score``), once the reference is complete."""
        return self._numeric.drift("score")
