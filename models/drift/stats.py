"""The two-sample statistics the drift monitors report: PSI on histograms and Kolmogorov–Smirnov.

Example:
    >>> import numpy as np
    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
    0.0
"""

from __future__ import annotations

from typing import Final

import numpy as np

PSI_FLOOR: Final = 1e-4  # a bin empty on one side would make PSI infinite


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins (counts or shares).

    Shares are floored at 1e-4 so an empty bin gives a large, finite term. Rule of thumb:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift. Two samples of one
    distribution give about (bins − 1)·(1/n₁ + 1/n₂) from sampling alone.

    Example:
        >>> psi(np.array([50, 50]), np.array([50, 50]))
        0.0
        >>> round(psi(np.array([50, 50]), np.array([90, 10])), 3)
        0.879
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return 0.0
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_2samp(a: np.ndarray, b: np.ndarray,
             weights: np.ndarray | None = None) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and its asymptotic p-value.

    The p-value is the Kolmogorov distribution's tail at ``(√nₑ + 0.12 + 0.11/√nₑ)·D``,
    nₑ = n·m/(n+m) (Stephens' correction, as in Numerical Recipes); within 0.01 of
    ``scipy.stats.ks_2samp(method="asymp")`` for samples of a few hundred and more.

    Args:
        a: The first sample (the reference).
        b: The second sample.
        weights: Optional non-negative weights of ``a``'s values (its CDF is then the weighted
            one and n is Kish's effective size, (Σw)²/Σw²).

    Example:
        >>> d, p = ks_2samp(np.arange(100.0), np.arange(100.0) + 50)
        >>> d, p < 1e-6
        (0.5, True)
        >>> ks_2samp(np.array([1.0, 2.0]), np.array([2.0]), weights=np.array([0.0, 1.0]))[0]
        0.0
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.sort(np.asarray(b, dtype=np.float64))
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if not x.size or not y.size or w.sum() <= 0:
        return 0.0, 1.0
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    grid = np.concatenate([x, y])
    cum = np.concatenate([[0.0], np.cumsum(w)]) / w.sum()
    cdf_x = cum[np.searchsorted(x, grid, side="right")]
    cdf_y = np.searchsorted(y, grid, side="right") / y.size
    d = float(np.max(np.abs(cdf_x - cdf_y)))
    n_x = w.sum() ** 2 / np.sum(w**2)
    ne = n_x * y.size / (n_x + y.size)
    lam = (np.sqrt(ne) + 0.12 + 0.11 / np.sqrt(ne)) * d
    return d, _kolmogorov_sf(float(lam))


def _kolmogorov_sf(lam: float) -> float:
    if lam < 0.2:
        return 1.0
    k = np.arange(1, 101)
    terms = 2.0 * (-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2)
    return float(min(1.0, max(0.0, terms.sum())))
