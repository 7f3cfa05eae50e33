"""The ground truth of a scenario: who was shown, who clicked and when (seeded)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from streams.joiner.output import AFTER_CLOSE, AFTER_WINDOW
from streams.joiner.policy import JoinPolicy
from streams.joiner.scenario.model import ScenarioSpec
from streams.schemas import Event, Prediction


@dataclass(slots=True)
class Truth:
    """Ground truth of one prediction."""

    prediction: Prediction
    shown: bool = False
    click_ts: int | None = None
    click_kind: str = ""  # "in_window", AFTER_WINDOW or AFTER_CLOSE


@dataclass(slots=True)
class Item:
    """One message to deliver; ``sort`` orders delivery: (arrival, after-anchor, sequence)."""

    sort: tuple[int, int, int]
    partition: int
    key: str
    message: Prediction | Event | None
    role: str  # prediction, event, late_click, orphan or garbage
    garbage: tuple[str, bytes] | None = None


def ground_truth(
    spec: ScenarioSpec, policy: JoinPolicy, rng: random.Random
) -> tuple[dict[str, Truth], list[Item], set[str]]:
    """Draw the predictions and what happened to them; events are stamped in event time.

    Returns:
        The truth per prediction_id, the messages (sorted by timestamp, not yet scheduled)
        and the event_ids of orphan events (whose prediction never exists).
    """
    window, retention = policy.attribution_window_ms, policy.retention_ms
    truths: dict[str, Truth] = {}
    items: list[Item] = []
    orphan_ids: set[str] = set()
    ts = spec.start_ts
    request = 0
    while len(truths) < spec.predictions:
        request += 1
        ts += rng.randint(0, 2 * spec.mean_gap_ms)
        for _ in range(min(rng.randint(1, spec.max_candidates), spec.predictions - len(truths))):
            n = len(truths)
            p = Prediction(
                prediction_id=f"p{spec.seed}-{n:07d}",
                request_id=f"r{spec.seed}-{request:07d}",
                ts=ts,
                user_id=f"u{rng.randrange(1000)}",
                item_id=f"i{rng.randrange(5000)}",
                features={"category": rng.choice(("shoes", "books", "games")),
                          "price": round(rng.uniform(1, 200), 2), "hour": rng.randrange(24),
                          "mobile": rng.random() < 0.5},
                model_version="ctr-v1.0",
                arm=rng.choice(("champion", "champion", "challenger")),
                score=round(rng.random(), 6),
            )
            truth = Truth(p, shown=rng.random() < spec.p_shown)
            truths[p.prediction_id] = truth
            items.append(Item((ts, 0, 0), 0, p.prediction_id, p, "prediction"))
            if truth.shown:
                items.extend(_events(truth, spec, window, retention, rng))
        if rng.random() < spec.p_orphan_event:
            pid = f"x{spec.seed}-{request:07d}"
            orphan = Event(f"{pid}.o", rng.choice(("impression", "click")), pid, ts)
            orphan_ids.add(f"{pid}.o")
            items.append(Item((ts, 0, 0), 0, pid, orphan, "orphan"))
    return truths, items, orphan_ids


def _events(
    truth: Truth, spec: ScenarioSpec, window: int, retention: int, rng: random.Random
) -> list[Item]:
    p = truth.prediction
    pid = p.prediction_id
    impression_ts = p.ts + rng.randint(0, window // 10)
    impression_lost = False
    out: list[Item] = []
    if rng.random() < spec.p_click:
        if rng.random() < spec.p_late_click:
            truth.click_kind = AFTER_WINDOW
            truth.click_ts = p.ts + window + rng.randint(1, max(1, retention // 2))
        else:
            late = rng.random() < spec.p_late_delivery
            truth.click_kind = AFTER_CLOSE if late else "in_window"
            # Some clicks sit exactly on the window end: the window is inclusive.
            on_edge = rng.random() < 0.05
            truth.click_ts = p.ts + window if on_edge else rng.randint(impression_ts, p.ts + window)
            impression_lost = not late and rng.random() < spec.p_impression_lost
        role = "late_click" if truth.click_kind == AFTER_CLOSE else "event"
        click = Event(f"{pid}.c", "click", pid, truth.click_ts)
        out.append(Item((truth.click_ts, 0, 0), 0, pid, click, role))
        if rng.random() < spec.p_conversion:
            conversion_ts = truth.click_ts + rng.randint(0, window // 4)
            conversion = Event(f"{pid}.v", "conversion", pid, conversion_ts)
            out.append(Item((conversion_ts, 0, 0), 0, pid, conversion, "event"))
    if not impression_lost:
        impression = Event(f"{pid}.i", "impression", pid, impression_ts)
        out.append(Item((impression_ts, 0, 0), 0, pid, impression, "event"))
    return out


