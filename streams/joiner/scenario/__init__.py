"""Deterministic join scenarios whose expected examples are known without running the joiner.

``generate(variant, policy, ...)`` builds predictions and events from a seeded ground truth
(which predictions were shown, whether and when they were clicked) and delivers them in an
order chosen so that the outcome under the contract's semantics follows from that truth:
in-window events always reach their window before it closes, early events always meet their
prediction within the lead, duplicates always meet their marker. The expected examples,
late labels and orphans are then read off the ground truth; a final check walks the delivery
order with the watermark definition and raises ``ScenarioError`` if a timing assumption failed
(a knob combination the construction cannot honour), rather than quietly changing the truth.

Messages come out as raw ``(topic, partition, key, value)`` bytes, garbage included, so an
integration test can produce them to Kafka unchanged. Partitions follow Kafka's default
murmur2 partitioner.

Variants (``VARIANTS``): ``in_order``, ``shuffled`` (predictions delayed by up to the lead,
events jittered by up to the lateness), ``duplicates``, ``late_clicks`` (clicks past the
window, and in-window clicks delivered after the close), ``garbage``, ``orphans``, and
``everything``.

Kafka note: a consumer interleaves the predictions and events topics as it likes, so the
delivery order here is only what a single merged stream would see. For a Kafka run, use a
policy whose ``allowed_lateness_ms`` and ``max_event_lead_ms`` exceed the scenario's event-time
span (``Scenario.span_ms``): then no window closes before the idle timeout and the expected
sets hold for any interleaving (except ``after_close`` late labels, which need the order).

Example:
    >>> from streams.joiner.policy import JoinPolicy
    >>> s = generate("in_order", JoinPolicy(), predictions=50, seed=7)
    >>> len(s.expected_examples) + s.expected_unshown
    50
    >>> s.messages == generate("in_order", JoinPolicy(), predictions=50, seed=7).messages
    True
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from streams.joiner.policy import JoinPolicy
from streams.joiner.scenario.delivery import check, schedule
from streams.joiner.scenario.model import (
    VARIANTS,
    ExpectedExample,
    ExpectedLateLabel,
    RawMessage,
    Scenario,
    ScenarioError,
    ScenarioSpec,
    summarize,
)
from streams.joiner.scenario.truth import Item, Truth, ground_truth
from streams.schemas import Prediction, encode

__all__ = [
    "VARIANTS",
    "ExpectedExample",
    "ExpectedLateLabel",
    "RawMessage",
    "Scenario",
    "ScenarioError",
    "ScenarioSpec",
    "generate",
    "summarize",
]


def generate(variant: str | ScenarioSpec, policy: JoinPolicy, **knobs: Any) -> Scenario:
    """Build a scenario: ``variant`` names a preset in ``VARIANTS`` (or is a full spec);
    ``knobs`` override ScenarioSpec fields. The policy's window, lateness, lead and retention
    shape the delivery order; ``max_pending`` must exceed the scenario's size.

    Raises:
        ScenarioError: the requested variant, knobs and policy cannot be honoured.
    """
    if isinstance(variant, ScenarioSpec):
        spec = replace(variant, **knobs)
    elif variant in VARIANTS:
        spec = ScenarioSpec(**{**VARIANTS[variant], **knobs})
    else:
        raise ScenarioError(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    if spec.predictions < 1 or spec.partitions < 1 or spec.max_candidates < 1:
        raise ScenarioError("predictions, partitions and max_candidates must be >= 1")
    rng = random.Random(spec.seed)  # noqa: S311 -- reproducible test data, not secrets
    truths, items, orphan_ids = ground_truth(spec, policy, rng)
    schedule(items, truths, spec, policy, rng)
    items.sort(key=lambda item: item.sort)
    check(items, truths, policy)
    return _assemble(spec, policy, truths, items, orphan_ids)


def _assemble(
    spec: ScenarioSpec,
    policy: JoinPolicy,
    truths: dict[str, Truth],
    items: list[Item],
    orphan_ids: set[str],
) -> Scenario:
    window = policy.attribution_window_ms
    required: set[ExpectedExample] = set()
    served: set[ExpectedExample] = set()
    late: set[ExpectedLateLabel] = set()
    unshown = 0
    for pid, truth in truths.items():
        end = truth.prediction.ts + window
        if truth.click_kind == "in_window":
            example = ExpectedExample(pid, 1, max(_known(truth.click_ts), truth.prediction.ts))
        else:
            example = ExpectedExample(pid, 0, end)
            if truth.click_kind:
                late.add(ExpectedLateLabel(pid, _known(truth.click_ts), truth.click_kind))
        served.add(example)
        if truth.shown:
            required.add(example)
        else:
            unshown += 1
    messages: list[RawMessage] = []
    for item in items:
        key, message = item.key.encode(), item.message
        if message is None:
            topic, value = item.garbage or ("", b"")
            messages.append(RawMessage(topic, item.partition, key, value, garbage=True))
        else:
            topic = (
                spec.predictions_topic if isinstance(message, Prediction) else spec.events_topic
            )
            messages.append(RawMessage(topic, item.partition, key, encode(message)))
    stamps = [i.message.ts for i in items if i.message is not None]
    return Scenario(
        spec=spec,
        policy=policy,
        messages=tuple(messages),
        expected_by_policy={"impression_required": frozenset(required),
                            "all_served": frozenset(served)},
        expected_late_labels=frozenset(late),
        expected_orphans=frozenset(orphan_ids),
        expected_unshown=unshown,
        span_ms=max(stamps) - min(stamps),
    )


def _known(value: int | None) -> int:
    """``value`` known to be set (a clicked truth always has a click ts)."""
    if value is None:
        raise ScenarioError("internal: a click kind without a click ts")
    return value
