"""Deterministic builders of feature dicts, batches and labelled streams for model tests."""

from __future__ import annotations

from typing import Any

import numpy as np

CATEGORIES = ("books", "shoes", "games", "toys")
DEVICES = ("mobile", "desktop", "tv")
# The learnable signal: "games" is clicked often, everything else rarely.
CLICK_RATE = {"books": 0.02, "shoes": 0.02, "games": 0.5, "toys": 0.02}


def make_features(**overrides: Any) -> dict[str, Any]:
    """One flat feature dict as logged in ``examples.features``; ``key=None`` drops a key."""
    base: dict[str, Any] = {
        "user_id": "u1",
        "item_id": "i1",
        "item_category": "shoes",
        "device": "mobile",
        "hour": 13,
        "price": 39.9,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def make_batch(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` varied feature dicts (200 users, 50 items, every category, device and hour)."""
    rng = np.random.default_rng(seed)
    return [
        make_features(
            user_id=f"u{rng.integers(200)}",
            item_id=f"i{rng.integers(50)}",
            item_category=CATEGORIES[int(rng.integers(len(CATEGORIES)))],
            device=DEVICES[int(rng.integers(len(DEVICES)))],
            hour=int(rng.integers(24)),
            price=round(float(rng.gamma(2.0, 20.0)), 2),
        )
        for _ in range(n)
    ]


def make_labels(batch: list[dict[str, Any]], seed: int = 0) -> np.ndarray:
    """0/1 labels drawn from ``CLICK_RATE`` of each dict's category."""
    rng = np.random.default_rng(seed + 10_000)
    rates = np.array([CLICK_RATE[x["item_category"]] for x in batch])
    return (rng.random(len(batch)) < rates).astype(np.int64)


def make_stream(
    n_batches: int, batch_size: int, seed: int = 0
) -> list[tuple[list[dict[str, Any]], np.ndarray]]:
    """Labelled micro-batches carrying the category signal."""
    out = []
    for b in range(n_batches):
        batch = make_batch(batch_size, seed=seed * 1_000 + b)
        out.append((batch, make_labels(batch, seed=seed * 1_000 + b)))
    return out
