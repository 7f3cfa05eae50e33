"""The trainer's decision loop built from settings: the one place settings become a ``Learner``.

``streamlearn train`` (``services.trainer.service``), ``bench quality`` and the demo's warm-up
all build their models, policies and loops here, so what a benchmark measures is what the
service runs.

Example:
    >>> from config.settings import DriftSettings, GateSettings, TrainerSettings
    >>> learner = build_learner(TrainerSettings(), GateSettings(), drift=DriftSettings())
    >>> type(learner).__name__, learner.policy.mode, learner.gate_every
    ('Learner', 'stateful', 4096)
"""

from __future__ import annotations

from config.settings import DriftSettings, GateSettings, TrainerSettings, TriggerSettings
from models.drift import LossDriftDetector
from models.gate import GateConfig
from models.learners.base import Model
from models.learners.factory import build_model
from models.training.batching import ClickGuard
from models.training.loop import Learner
from models.training.policies import StatefulPolicy, StatelessPolicy, TrainingPolicy
from models.training.triggered import TriggeredPolicy
from models.triggers import Triggers


def new_model(cfg: TrainerSettings) -> Model:
    """A fresh model as configured (cold start, stateless retrains)."""
    return build_model(cfg.model, **cfg.model_hyperparams())


def gate_config(gate: GateSettings) -> GateConfig:
    """The pure gate's thresholds from settings (same field names)."""
    return GateConfig(**gate.model_dump())


def ips_clip(cfg: TrainerSettings) -> float | None:
    """``trainer.ips_clip`` as the training core takes it (0, off, is None)."""
    return cfg.ips_clip or None


def build_policy(
    mode: str, champion: Model, cfg: TrainerSettings, challenger: Model | None = None,
    triggers: TriggerSettings | None = None, min_evidence: int = 1_024,
) -> TrainingPolicy:
    """The configured ``StatefulPolicy``, ``StatelessPolicy`` or ``TriggeredPolicy``.

    ``triggers`` (default ``TriggerSettings()``) and ``min_evidence`` (the gate's
    ``min_examples``) are for triggered mode only.
    """
    if mode == "triggered":
        t = triggers or TriggerSettings()
        return TriggeredPolicy(
            champion, Triggers.from_config(t.model_dump()), challenger=challenger,
            min_evidence=min_evidence, buffer_max=t.buffer_max, per_user_cap=cfg.per_user_cap,
            epochs=t.epochs, batch_size=cfg.batch_size, seed=cfg.seed, ips_clip=ips_clip(cfg),
        )
    if mode == "stateful":
        return StatefulPolicy(
            champion, challenger=challenger, per_user_cap=cfg.per_user_cap,
            replay_ratio=cfg.replay_ratio, replay_capacity=cfg.replay_capacity, seed=cfg.seed,
            ips_clip=ips_clip(cfg),
        )
    return StatelessPolicy(
        champion, cfg.model, cfg.model_hyperparams(), challenger=challenger,
        window=cfg.stateless_window,
        retrain_every_examples=cfg.stateless_retrain_examples or None,
        retrain_every_ms=cfg.stateless_retrain_ms or None,
        epochs=cfg.stateless_epochs, batch_size=cfg.batch_size,
        per_user_cap=cfg.per_user_cap, seed=cfg.seed, ips_clip=ips_clip(cfg),
    )


def build_learner(cfg: TrainerSettings, gate: GateSettings, *, champion: Model | None = None,
                  challenger: Model | None = None, triggers: TriggerSettings | None = None,
                  drift: DriftSettings | None = None, cold: bool = False) -> Learner:
    """The decision loop ``cfg.mode`` runs: its policy, gate cadence, sanity set, bot guard and
    concept-drift detector.

    In triggered mode the gate is asked when the policy says so; with a drift trigger on, that
    trigger is the loop's only concept-drift detector (``drift.loss_detector`` then runs in no
    mode of the loop: one detector, never two).

    Args:
        cfg: The trainer's settings (mode, model, cadence, sanity set, guard).
        gate: The gate's settings.
        champion: The champion now; None: a fresh ``new_model(cfg)``.
        challenger: A challenger restored after a restart; None: a replica of the champion.
        triggers: Triggered mode's triggers (default ``TriggerSettings()``).
        drift: Which loss detector runs, whether its alarm refreshes the sanity set and what
            the race it starts (default ``DriftSettings()``).
        cold: ``champion`` is an untrained cold start (always so when it is None): the first
            verdict comes at ``gate.min_examples``.
    """
    triggers, drift = triggers or TriggerSettings(), drift or DriftSettings()
    cold = cold or champion is None
    champion = new_model(cfg) if champion is None else champion
    policy = build_policy(cfg.mode, champion, cfg, challenger, triggers, gate.min_examples)
    trigger_detects = cfg.mode == "triggered" and triggers.drift_detector != "none"
    detector = (None if trigger_detects or drift.loss_detector == "none"
                else LossDriftDetector(drift.loss_detector))
    guard = (ClickGuard(cfg.guard_max_ctr, cfg.guard_min_labels)
             if cfg.guard_min_labels else None)
    return Learner(champion, policy, gate_config(gate),
                   gate_every=None if cfg.mode == "triggered" else cfg.gate_every_examples,
                   sanity_size=cfg.sanity_size, window_max=cfg.gate_window_max,
                   drift=detector, guard=guard,
                   refresh_sanity_on_alarm=drift.refresh_sanity_on_alarm,
                   forget_on_drift=drift.forget_on_drift, cold=cold)
