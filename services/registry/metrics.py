"""Every Prometheus object of the model registry (names ``streamlearn_registry_*``).

The registry is a library, not a process: whichever process changes the champion (serving's
admin API and cold start, the trainer's gate) registers these in its own metrics registry and
exposes them on its own ``/metrics``. A counter therefore counts the changes *that process*
made; ``sum without (instance, job)`` gives the whole system's.

Label values are bounded: ``forced`` is ``true``/``false``, ``rule`` is one of the gate's
reject rules (or ``other``), ``action`` and ``reason`` are fixed codes. Every child is
created here, so each series exists (at 0) from the first scrape: ``increase()`` then sees the
first promotion too.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter

# The gate rules that reject (models/gate/decision.py); anything else a caller names is ``other``.
REJECT_RULES: Final = ("finite", "calibration", "auc_floor", "worse", "forgetting", "other")
ACTIONS: Final = ("promote", "rollback")
# Why a champion change was refused: the artifact failed verification, a compare-and-set
# found another champion, or the registry refused the transition (unknown, rejected, no
# previous champion).
FAILURES: Final = ("artifact", "champion_changed", "refused")


class RegistryMetrics:
    """The registry's counters, registered in ``registry`` (the process's own, or a fresh one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        promotions = Counter(
            "streamlearn_registry_promotions",
            "Champion changes by promotion made by this process, by whether they were forced "
            "past a gate rejection", ["forced"], registry=r,
        )
        self._promotions = {f: promotions.labels(forced=str(f).lower()) for f in (False, True)}
        self.rollbacks = Counter(
            "streamlearn_registry_rollbacks",
            "Champion changes by rollback to the previous champion made by this process",
            registry=r,
        )
        rejections = Counter(
            "streamlearn_registry_rejections",
            "Candidates marked rejected by this process, by the gate rule that rejected them",
            ["rule"], registry=r,
        )
        self._rejections = {rule: rejections.labels(rule=rule) for rule in REJECT_RULES}
        failures = Counter(
            "streamlearn_registry_change_failures",
            "Promotions and rollbacks refused, by action and reason; the champion did not move",
            ["action", "reason"], registry=r,
        )
        self._failures = {
            (a, why): failures.labels(action=a, reason=why) for a in ACTIONS for why in FAILURES
        }

    def promoted(self, *, forced: bool) -> None:
        """Count one promotion that changed the champion."""
        self._promotions[forced].inc()

    def rolled_back(self) -> None:
        """Count one rollback that changed the champion."""
        self.rollbacks.inc()

    def rejected(self, rule: str) -> None:
        """Count one rejection by the gate rule ``rule`` (unknown names count as ``other``)."""
        self._rejections[rule if rule in REJECT_RULES else "other"].inc()

    def failed(self, action: str, reason: str) -> None:
        """Count one refused promotion or rollback (``action`` in ACTIONS, ``reason`` in
        FAILURES)."""
        self._failures[(action, reason)].inc()
