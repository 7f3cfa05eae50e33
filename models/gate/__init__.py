"""The promotion gate: a pure ``decide(fresh, sanity, cfg) -> GateDecision``."""

from models.gate.decision import (
    OUTCOMES,
    GateConfig,
    GateDecision,
    Outcome,
    PairedLosses,
    decide,
)

__all__ = ["OUTCOMES", "GateConfig", "GateDecision", "Outcome", "PairedLosses", "decide"]
