"""The delivery order of a scenario, chosen so the expected outcome follows from the truth.

``schedule`` assigns partitions and positions (with shuffling, duplicates, late deliveries and
garbage); ``check`` then walks the order with the contract's watermark and raises
``ScenarioError`` if the construction failed for the given knobs and policy.
"""

from __future__ import annotations

import random
from bisect import bisect_right

from streams.joiner.output import AFTER_CLOSE
from streams.joiner.partitioning import murmur2_partition
from streams.joiner.policy import JoinPolicy
from streams.joiner.scenario.garbage import garbage_value
from streams.joiner.scenario.model import ScenarioError, ScenarioSpec
from streams.joiner.scenario.truth import Item, Truth
from streams.schemas import Event, Prediction


def schedule(
    items: list[Item],
    truths: dict[str, Truth],
    spec: ScenarioSpec,
    policy: JoinPolicy,
    rng: random.Random,
) -> None:
    """Give every item its partition and delivery position; add duplicates and garbage."""
    # Predictions lag by up to the lead (held events still meet them); events jitter by up
    # to the lateness (an in-window event still finds its window open).
    lag = policy.max_event_lead_ms if spec.shuffle else 0
    jitter = policy.allowed_lateness_ms if spec.shuffle else 0
    partitions: dict[str, int] = {}
    extra: list[Item] = []
    for seq, item in enumerate(items, start=1):
        if item.key not in partitions:
            partitions[item.key] = murmur2_partition(item.key.encode(), spec.partitions)
        item.partition = partitions[item.key]
        arrival = item.sort[0] + rng.randint(0, lag if item.role == "prediction" else jitter)
        item.sort = (arrival, 0, 2 * seq)
        if item.role in ("prediction", "event") and rng.random() < spec.p_duplicate:
            delay = rng.randint(0, policy.attribution_window_ms // 2)
            extra.append(_copy(item, (arrival + delay, 0, 2 * seq + 1)))
    items.extend(extra)
    place_late_deliveries(items, truths, policy, rng, spec.p_duplicate)
    if spec.p_garbage:
        keys = sorted(truths)
        garbage = []
        for item in items:
            if rng.random() < spec.p_garbage:
                topic_value = garbage_value(rng, item.key, rng.choice(keys), item.sort[0], spec)
                garbage.append(
                    Item(item.sort, item.partition, item.key, None, "garbage", topic_value)
                )
        items.extend(garbage)  # equal sort keys: the stable sort keeps it after its anchor


def _copy(item: Item, sort: tuple[int, int, int]) -> Item:
    return Item(sort, item.partition, item.key, item.message, item.role)


def place_late_deliveries(
    items: list[Item],
    truths: dict[str, Truth],
    policy: JoinPolicy,
    rng: random.Random,
    p_duplicate: float,
) -> None:
    """Deliver each ``late_click`` just after the messages of its partition that first push
    the watermark past its window end (or in time, if the stream ends before that)."""
    late = [i for i in items if i.role == "late_click"]
    if not late:
        return
    sorts: dict[int, list[tuple[int, int, int]]] = {}
    prefix: dict[int, list[int]] = {}  # running max ts per partition, in delivery order
    opened: dict[str, int] = {}  # where each prediction first arrives in its partition
    for item in sorted((i for i in items if i.role != "late_click"), key=lambda i: i.sort):
        if item.message is not None:
            top = prefix.setdefault(item.partition, [])
            top.append(max(item.message.ts, top[-1]) if top else item.message.ts)
            sorts.setdefault(item.partition, []).append(item.sort)
            if item.role == "prediction":
                opened.setdefault(item.key, len(top) - 1)
    lateness, window = policy.allowed_lateness_ms, policy.attribution_window_ms
    for item in late:
        truth = truths[item.key]
        end = truth.prediction.ts + window
        top, order = prefix.get(item.partition, []), sorts.get(item.partition, [])
        # After its prediction too: held until the prediction came, it would join in time.
        at = max(bisect_right(top, end + lateness), opened[item.key])
        if at < len(top):
            arrival = order[at][0]
            # It lands after every message with that arrival; all of them count.
            last = bisect_right(order, (arrival, 1, 0)) - 1
            if top[last] - lateness <= end + policy.retention_ms:
                item.sort = (arrival, 1, item.sort[2])
            else:
                truth.click_kind = "in_window"
        else:
            truth.click_kind = "in_window"  # nothing after it: it can only arrive in time
        item.role = "event"
        if rng.random() < p_duplicate:
            items.append(_copy(item, (item.sort[0], 1, item.sort[2] + 1)))


def check(items: list[Item], truths: dict[str, Truth], policy: JoinPolicy) -> None:
    """Walk the delivery order with the contract's watermark and confirm the construction.

    Closed means ``end < watermark``, expired means ``deadline < watermark``, the watermark
    being the partition's max ts before the message, minus the lateness.
    """
    lateness, lead = policy.allowed_lateness_ms, policy.max_event_lead_ms
    window, retention = policy.attribution_window_ms, policy.retention_ms
    top: dict[int, int] = {}
    arrived: set[str] = set()
    first_held: dict[str, int] = {}
    seen_events: set[str] = set()
    for item in items:
        message = item.message
        if message is None:
            continue
        if item.partition in top and item.role != "orphan":
            _check_one(item, message, truths, top[item.partition] - lateness, arrived,
                       first_held, seen_events, (window, lead, retention))
        if isinstance(message, Prediction):
            arrived.add(message.prediction_id)
        elif message.prediction_id not in arrived:
            first_held.setdefault(message.prediction_id, message.ts)
        if isinstance(message, Event) and message.event_id is not None:
            seen_events.add(message.event_id)
        top[item.partition] = max(top.get(item.partition, message.ts), message.ts)


def _check_one(
    item: Item,
    message: Prediction | Event,
    truths: dict[str, Truth],
    watermark: int,
    arrived: set[str],
    first_held: dict[str, int],
    seen_events: set[str],
    limits: tuple[int, int, int],
) -> None:
    window, lead, retention = limits
    pid = item.key
    truth = truths[pid]
    end = truth.prediction.ts + window
    problem = ""
    if end + retention < watermark and (pid in arrived or isinstance(message, Prediction)):
        problem = "its prediction would be too late or its done marker expired"
    elif isinstance(message, Prediction):
        held = first_held.get(pid)
        if pid not in arrived and held is not None and held + lead < watermark:
            problem = "its held events would have been orphaned first"
    elif message.event_id in seen_events:
        pass  # a duplicate: only its marker matters
    elif pid not in arrived:
        if message.type == "click" and truth.click_kind == AFTER_CLOSE:
            problem = "a late delivery would arrive before its prediction"
    else:
        is_late_click = message.type == "click" and truth.click_kind == AFTER_CLOSE
        if is_late_click and watermark <= end:
            problem = "a late delivery would arrive while its window is still open"
        elif not is_late_click and message.ts <= end < watermark and message.type != "conversion":
            problem = "an in-window event would arrive after its window closed"
    if problem:
        raise ScenarioError(
            f"{pid}: {problem} (watermark {watermark}, window end {end}); use a larger "
            "lateness, lead or retention for these knobs"
        )


