"""Deterministic builders of labelled ``examples`` messages for the trainer-core tests.

They build real ``streams.schemas.Example`` objects: the trainer core takes them as they come
off Kafka, through its ``Labeled`` protocol, without ``models`` importing ``streams``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from streams.schemas import Example
from tests.unit.models.factories import CATEGORIES, CLICK_RATE, make_features

TS0 = 1_763_800_000_000
_ids = itertools.count()

# After the drift, the popular category changes: what the champion learnt is now wrong.
DRIFTED_CLICK_RATE = {"books": 0.5, "shoes": 0.02, "games": 0.02, "toys": 0.02}


def make_example(
    label: int = 0,
    *,
    prediction_id: str | None = None,
    ts: int = TS0,
    label_delay_ms: int = 1_000,
    **features: Any,
) -> Example:
    """One ``Example``; ``features`` override ``make_features``'s defaults (``key=None`` drops)."""
    return Example(
        prediction_id=prediction_id or f"p{next(_ids)}",
        ts_prediction=ts,
        ts_label=ts + label_delay_ms,
        label=label,
        features=make_features(**features),
        model_version="fm-v1.0",
        arm="champion",
        score=0.05,
    )


def make_examples(
    n: int, seed: int = 0, *, rates: Mapping[str, float] = CLICK_RATE, users: int = 200
) -> list[Example]:
    """``n`` examples from ``users`` users; labels drawn from ``rates`` by item category."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        out.append(
            make_example(
                int(rng.random() < rates[category]),
                prediction_id=f"s{seed}-{i}",
                ts=TS0 + i,
                user_id=f"u{rng.integers(users)}",
                item_id=f"i{rng.integers(50)}",
                item_category=category,
                hour=int(rng.integers(24)),
            )
        )
    return out


def batches(examples: list[Example], size: int) -> list[list[Example]]:
    """Consecutive micro-batches of ``size`` (the last may be shorter)."""
    return [examples[i : i + size] for i in range(0, len(examples), size)]
