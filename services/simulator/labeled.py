"""A deterministic labelled stream for the trainer's benchmark and integration tests.

Predictions every ``step_ms``; users have a favourite category that they click far more often
(a learnable user×category signal on top of per-category base rates). A click comes
``click_delay_ms`` after its prediction (or, with ``click_delay_sigma``, a log-normal delay with
that median, capped at the attribution window); a non-click is labelled when the window closes.
The stream is returned in *label* order, so the delay is part of what the trainer sees.
``join_inputs`` turns it back into what the joiner consumes: predictions, impressions, clicks.

Example:
    >>> s = labeled_stream(1_000, seed=1, t0_ms=1_763_800_000_000)
    >>> len(s), len({e.prediction_id for e in s})
    (1000, 1000)
    >>> all(a.ts_label <= b.ts_label for a, b in zip(s, s[1:]))
    True
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from streams.joiner.partitioning import murmur2_partition
from streams.joiner.scenario import RawMessage
from streams.schemas import Event, Example, Prediction, encode

CATEGORIES = ("books", "shoes", "games", "toys", "music", "garden")
BASE_RATE: Mapping[str, float] = {
    "books": 0.03, "shoes": 0.05, "games": 0.12, "toys": 0.04, "music": 0.02, "garden": 0.03,
}
DEVICES = ("mobile", "desktop", "tv")


def labeled_stream(
    n: int,
    seed: int = 0,
    *,
    users: int = 500,
    items: int = 200,
    favourite_rate: float = 0.45,
    base_rate: Mapping[str, float] = BASE_RATE,
    step_ms: int = 2,
    click_delay_ms: int = 1_500,
    click_delay_sigma: float = 0.0,
    window_ms: int = 30_000,
    t0_ms: int | None = None,
    prefix: str = "",
    world_seed: int | None = None,
) -> list[Example]:
    """``n`` labelled examples in label order (see the module docstring).

    Args:
        n: Number of examples.
        seed: Seeds users, items and labels.
        users: Distinct users; each has one favourite category.
        items: Distinct items (each with a fixed category).
        favourite_rate: Click probability on a user's favourite category.
        base_rate: Click probability of each category otherwise.
        step_ms: Time between two predictions.
        click_delay_ms: Prediction to click (the median with ``click_delay_sigma``).
        click_delay_sigma: 0: every click after exactly ``click_delay_ms``; else the sigma of a
            log-normal delay (drawn from its own generator, so the labels do not change),
            between 1 ms and ``window_ms``.
        window_ms: Prediction to the label of a non-click (the attribution window).
        t0_ms: Time of the first prediction; default: now minus the stream's span.
        prefix: Prepended to the prediction ids (distinct streams, distinct ids).
        world_seed: Seeds who likes what and which item is in which category (default
            ``seed``): two streams with one world seed show the same behaviour.
    """
    world = np.random.default_rng(seed if world_seed is None else world_seed)
    favourite = world.integers(len(CATEGORIES), size=users)
    item_category = world.integers(len(CATEGORIES), size=items)
    rng = np.random.default_rng(seed + 1_000_003)
    delays = np.random.default_rng(seed + 2_000_003)
    t0 = t0_ms if t0_ms is not None else int(time.time() * 1000) - n * step_ms - window_ms
    out = []
    for i in range(n):
        user, item = int(rng.integers(users)), int(rng.integers(items))
        category = CATEGORIES[int(item_category[item])]
        fav = int(favourite[user]) == int(item_category[item])
        rate = favourite_rate if fav else base_rate[category]
        label = int(rng.random() < rate)
        ts = t0 + i * step_ms
        delay = click_delay_ms
        if click_delay_sigma > 0:
            drawn = click_delay_ms * delays.lognormal(0.0, click_delay_sigma)
            delay = int(min(window_ms, max(1, round(drawn))))
        out.append(Example(
            prediction_id=f"{prefix}s{seed}-{i}",
            ts_prediction=ts,
            ts_label=ts + (delay if label else window_ms),
            label=label,
            features={
                "user_id": f"u{user}", "item_id": f"i{item}", "item_category": category,
                "device": DEVICES[int(rng.integers(len(DEVICES)))],
                "hour": int(rng.integers(24)),
            },
            model_version="ctr-v1.0",
            arm="champion",
            score=0.05,
        ))
    out.sort(key=lambda e: (e.ts_label, e.ts_prediction))
    return out


def join_inputs(
    stream: list[Example],
    predictions_topic: str,
    events_topic: str,
    partitions: int = 1,
    impression_delay_ms: int = 100,
) -> list[RawMessage]:
    """What the joiner must turn back into ``stream``: each example's prediction (its
    features, keyed by prediction_id), an impression, and for a positive its click at
    ``ts_label``; in timestamp order, on the partition Kafka's murmur2 partitioner picks.

    Example:
        >>> s = labeled_stream(100, seed=1, t0_ms=1_763_800_000_000)
        >>> msgs = join_inputs(s, "p", "e")
        >>> len(msgs) == 2 * len(s) + sum(e.label for e in s)
        True
    """
    stamped: list[tuple[int, int, str, str, bytes]] = []
    for e in stream:
        pid = e.prediction_id
        prediction = Prediction(
            pid, f"r-{pid}", e.ts_prediction, str(e.features["user_id"]),
            str(e.features["item_id"]), dict(e.features), e.model_version, e.arm, e.score,
        )
        stamped.append((e.ts_prediction, 0, predictions_topic, pid, encode(prediction)))
        shown = e.ts_prediction + min(impression_delay_ms, e.ts_label - e.ts_prediction)
        stamped.append((shown, 1, events_topic, pid,
                        encode(Event(f"{pid}.i", "impression", pid, shown))))
        if e.label:
            click = Event(f"{pid}.c", "click", pid, e.ts_label)
            stamped.append((e.ts_label, 2, events_topic, pid, encode(click)))
    stamped.sort(key=lambda m: (m[0], m[1]))
    return [RawMessage(topic, murmur2_partition(pid.encode(), partitions), pid.encode(), value)
            for _, _, topic, pid, value in stamped]
