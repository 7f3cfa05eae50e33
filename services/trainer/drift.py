"""The trainer's drift watch: ``models.drift`` monitors fed each micro-batch, and their metrics.

What it watches (``DriftSettings``): per-feature drift of the configured features against the
reference window (PSI, and KS for numeric ones), the served scores' distribution, log loss and
CTR per slice of one low-cardinality feature. Concept drift on the champion's loss is the decision
loop's (``models.training.loop``: it acts on it); its alarms reach ``alarm`` from the service.
Alarms are counted (``streamlearn_drift_alarms_total{detector}``) and printed with their reason.

The trainer only sees what serving *showed*, and which items are shown depends on the ranking:
each example is therefore fed with the key of the ranking that chose it (its serving
``model_version``, ``arm`` and exploration ``policy``), the request it belongs to (the
``prediction_id`` without its ``-<index>``) and when it was served, and the monitors compare
like with like (``models.drift.monitors``): a promotion or a change of exploration moves no
PSI, a change of what the world sends does. The reference window is the first
``drift.reference_size`` examples of one ranking this process sees, carried across later
changes of ranking; the served scores' reference restarts with each new ranking. A restart of
the trainer takes a new reference (nothing of it is checkpointed; it is a view, not the model's
state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.console import Console

from config.settings import DriftSettings
from models.drift import (
    FeatureDriftMonitor,
    ScoreDriftMonitor,
    SliceMonitor,
)
from models.training.step import StepResult
from services.trainer.metrics import TrainerMetrics
from streams.schemas import Example


def exposure_of(example: Example) -> tuple[str, str, str]:
    """The key of the ranking that showed ``example``: serving model version, arm and
    exploration policy (an example without a policy was ranked by score alone).

    Example:
        >>> exposure_of(Example("r1-0", 1, 2, 0, {}, "ctr-v1.3", "champion", 0.1))
        ('ctr-v1.3', 'champion', 'none')
    """
    return example.model_version, example.arm, example.policy or "none"


class DriftWatch:
    """Feeds the monitors and exports what they say; one per trainer process."""

    def __init__(self, cfg: DriftSettings, metrics: TrainerMetrics, console: Console) -> None:
        """Build the monitors ``cfg`` switches on.

        Args:
            cfg: What to watch.
            metrics: Where the figures go.
            console: Where alarms are printed.
        """
        self.cfg, self.metrics, self.console = cfg, metrics, console
        self.features = FeatureDriftMonitor(
            cfg.features, reference_size=cfg.reference_size, window=cfg.window, bins=cfg.bins,
            max_categories=cfg.max_categories,
        ) if cfg.features else None
        self.scores = ScoreDriftMonitor(reference_size=cfg.reference_size, window=cfg.window,
                                        bins=cfg.bins) if cfg.score_drift else None
        self.slices = SliceMonitor(cfg.slice_feature, max_slices=cfg.max_slices,
                                   window=cfg.slice_window) if cfg.slice_feature else None
        self._above: set[str] = set()  # PSI alarms count rising edges, not every batch above
        self._since_report = 0
        self._scored = False  # the served scores have had a figure
        self.alarms: list[str] = []  # reasons, most recent last (bounded)

    def observe(self, examples: Sequence[Example], result: StepResult) -> None:
        """One scored micro-batch: ``examples`` in the order of ``result``'s arrays."""
        if not examples:
            return
        m = self.metrics
        self._since_report += len(examples)
        report = self._since_report >= self.cfg.report_every_examples
        if report:
            self._since_report = 0
        exposure = [exposure_of(e) for e in examples]
        times = [e.ts_prediction for e in examples]
        if self.features is not None:
            requests = [e.prediction_id.rpartition("-")[0] for e in examples]
            self.features.update([e.features for e in examples], exposure, requests, times)
        if self.features is not None and report:
            for name, d in self.features.drift().items():
                m.feature_score.labels(feature=name).set(d.psi)
                if d.ks is not None:
                    m.feature_ks.labels(feature=name).set(d.ks)
                self._psi_alarm(f"feature {name}", d.psi, "feature_psi")
        if self.scores is not None:  # as served
            self.scores.update(np.asarray([e.score for e in examples]), exposure, times)
        if self.scores is not None and report:
            served = self.scores.drift()
            if served is not None:
                m.score_psi.set(served.psi)
                m.score_ks.set(served.ks or 0.0)
                self._psi_alarm("served scores", served.psi, "score_psi")
            elif self._scored:  # a new ranking: no figure of its own yet, none of the old one
                m.score_psi.set(math.nan)
                m.score_ks.set(math.nan)
            self._scored = self._scored or served is not None
        if self.slices is not None:
            self.slices.update([e.features for e in examples], result.labels,
                               result.champion_scores, result.champion_losses)
            feature = self.slices.feature
            for value, f in self.slices.figures().items():
                m.slice_logloss.labels(feature=feature, value=value).set(f.log_loss)
                m.slice_ctr.labels(feature=feature, value=value).set(f.ctr)
                m.slice_predicted_ctr.labels(feature=feature, value=value).set(f.predicted_ctr)

    def alarm(self, detector: str, reason: str) -> None:
        """Count and print one alarm (the loop's concept-drift alarms come through here)."""
        self.metrics.drift_alarms[detector].inc()
        self.alarms = [*self.alarms[-99:], reason]
        self.console.print(f"[red]drift alarm[/] ({detector}): {reason}")

    def _psi_alarm(self, what: str, value: float, detector: str) -> None:
        if value > self.cfg.psi_alarm and what not in self._above:
            self._above.add(what)
            self.alarm(detector, f"{what}: PSI {value:.3f} > {self.cfg.psi_alarm:g} against "
                                 "the reference window")
        elif value <= self.cfg.psi_alarm:
            self._above.discard(what)
