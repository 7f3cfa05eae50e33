"""The registry's counters: bounded labels, every series present from the start."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from services.registry.metrics import ACTIONS, FAILURES, REJECT_RULES, RegistryMetrics


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"streamlearn_registry_{name}_total", labels)


def test_every_series_is_exported_at_zero_before_the_first_change() -> None:
    registry = CollectorRegistry()
    RegistryMetrics(registry)
    text = generate_latest(registry).decode()
    for forced in ("true", "false"):
        assert f'streamlearn_registry_promotions_total{{forced="{forced}"}} 0.0' in text
    assert "streamlearn_registry_rollbacks_total 0.0" in text
    for rule in REJECT_RULES:
        assert sample(registry, "rejections", rule=rule) == 0.0
    for action in ACTIONS:
        for reason in FAILURES:
            assert sample(registry, "change_failures", action=action, reason=reason) == 0.0


def test_counts_go_to_their_own_series_and_unknown_rules_are_bounded() -> None:
    registry = CollectorRegistry()
    metrics = RegistryMetrics(registry)
    metrics.promoted(forced=False)
    metrics.promoted(forced=False)
    metrics.promoted(forced=True)
    metrics.rolled_back()
    metrics.rejected("calibration")
    for free_text in ("manual", "user 42 did it", ""):
        metrics.rejected(free_text)
    metrics.failed("rollback", "artifact")
    assert sample(registry, "promotions", forced="false") == 2.0
    assert sample(registry, "promotions", forced="true") == 1.0
    assert sample(registry, "rollbacks") == 1.0
    assert sample(registry, "rejections", rule="calibration") == 1.0
    assert sample(registry, "rejections", rule="other") == 3.0
    assert sample(registry, "change_failures", action="rollback", reason="artifact") == 1.0
    assert sample(registry, "change_failures", action="promote", reason="artifact") == 0.0
    rules = {
        s.labels["rule"] for f in registry.collect() for s in f.samples
        if s.name == "streamlearn_registry_rejections_total"
    }
    assert rules == set(REJECT_RULES)
