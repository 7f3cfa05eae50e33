"""The click simulator's pure core: a world with a known truth, scenarios, behaviour, accounting.

``world`` draws users, items, context and the true click probability; ``scenarios`` turns a
request index into the world's state (presets ``stationary``, ``sudden``, ``gradual``,
``cyclic``, ``rare-event``, ``cold-start``, ``bot-attack``, composable with ``+``);
``behaviour`` shows a served ranking, draws clicks and their delays and produces the events;
``accounting`` compares the served scores, a frozen model and the truth (log loss, regret, CTR
vs the oracle, recovery after a drift). No HTTP, Kafka or clocks here: the driver
(``streamlearn simulate``) calls these and does the I/O.
"""

from __future__ import annotations

from services.simulator.accounting import (
    Accounting,
    CtrTracker,
    Figures,
    RecoveryTracker,
    expected_log_loss,
    recovery_labels,
    within_tolerance_share,
)
from services.simulator.behaviour import Behaviour, EventQueue, Outcome, Truth, respond
from services.simulator.scenarios import Scenario, build, scenario_names
from services.simulator.world import Request, SimulatorError, State, World, WorldConfig

__all__ = [
    "Accounting",
    "Behaviour",
    "CtrTracker",
    "EventQueue",
    "Figures",
    "Outcome",
    "RecoveryTracker",
    "Request",
    "Scenario",
    "SimulatorError",
    "State",
    "Truth",
    "World",
    "WorldConfig",
    "build",
    "expected_log_loss",
    "recovery_labels",
    "respond",
    "scenario_names",
    "within_tolerance_share",
]
