"""The trainer's settings reach the decision loop they configure."""

from __future__ import annotations

from config.settings import GateSettings, TrainerSettings
from services.trainer.build import build_learner


def test_ips_clip_reaches_every_policy_and_the_racer() -> None:
    for mode in ("stateful", "stateless", "triggered"):
        learner = build_learner(TrainerSettings(mode=mode, ips_clip=10.0), GateSettings())
        assert vars(learner.policy)["ips_clip"] == 10.0 and learner.ips_clip == 10.0
    assert build_learner(TrainerSettings(), GateSettings()).ips_clip is None  # 0: off
