"""Every Prometheus object of the trainer process (names ``streamlearn_trainer_<what>_<unit>``;
the drift monitors it runs export ``streamlearn_drift_<what>``).

Label values are bounded: example outcomes, gate outcomes and rules (the gate's fixed rule
names), the two arms, partition numbers, and model versions — only the current champion's and
challenger's parent's are kept; older version labels are removed when the champion changes.
Trigger kinds and drift detectors are fixed lists; ``feature`` takes only the features
configured in ``drift.features`` and slice values at most ``drift.max_slices``.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector

EXAMPLE_OUTCOMES = ("trained", "duplicate", "capped", "guarded", "invalid", "replayed")
GATE_OUTCOMES = ("promote", "keep_training", "reject")
GATE_RULES = (
    "finite", "min_examples", "calibration", "auc_floor", "ranking", "worse", "forgetting",
    "better", "ranks_better", "not_significant",
)
ARMS = ("champion", "challenger")
TRIGGER_KINDS = ("volume", "time", "performance", "drift")
# Loss detectors (models.drift.DETECTORS), then the PSI alarms of features and served scores.
DRIFT_DETECTORS = ("adwin", "page_hinkley", "feature_psi", "score_psi")


class TrainerMetrics:
    """The trainer's metrics, registered in ``registry`` (a fresh one per process or test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.batches = Counter(
            "streamlearn_trainer_batches", "Micro-batches tested and trained", registry=r
        )
        examples = Counter(
            "streamlearn_trainer_examples", "Examples by outcome (this process)", ["outcome"],
            registry=r,
        )
        self.examples = {o: examples.labels(outcome=o) for o in EXAMPLE_OUTCOMES}
        self.durable_examples = Gauge(
            "streamlearn_trainer_durable_examples",
            "Examples learnt according to the last durable checkpoint (all processes)",
            registry=r,
        )
        self.restored_examples = Gauge(
            "streamlearn_trainer_restored_examples",
            "Examples learnt according to the checkpoint this process resumed from",
            registry=r,
        )
        self.update_seconds = Histogram(
            "streamlearn_trainer_update_duration_seconds",
            "One micro-batch: score with both models, then update the challenger",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.train_loss = Gauge(
            "streamlearn_trainer_training_logloss",
            "Mean log loss of the last update, before it (nats per example)", registry=r,
        )
        self.prequential_loss = Gauge(
            "streamlearn_trainer_prequential_logloss",
            "Mean log loss on fresh examples since the last gate decision, scored before "
            "training", ["model_version", "arm"], registry=r,
        )
        self.ranking_ctr = Gauge(
            "streamlearn_trainer_ranking_ctr",
            "CTR@k estimated off-policy on explored traffic at the last gate decision that had "
            "enough of it (SNIPS of each arm's top share; models/evaluation/offpolicy.py)",
            ["arm"], registry=r,
        )
        self.prequential_auc = Gauge(
            "streamlearn_trainer_prequential_auc",
            "AUC on fresh examples since the last gate decision", ["model_version", "arm"],
            registry=r,
        )
        decisions = Counter(
            "streamlearn_trainer_gate_decisions", "Gate decisions by outcome and rule",
            ["outcome", "rule"], registry=r,
        )
        self.decisions = {
            (o, rule): decisions.labels(outcome=o, rule=rule)
            for o in GATE_OUTCOMES for rule in GATE_RULES
        }
        self.champion = Info(
            "streamlearn_trainer_champion", "The champion the challenger is compared with",
            registry=r,
        )
        self.lag = Gauge(
            "streamlearn_trainer_consumer_lag_messages",
            "Examples on the topic not yet consumed, per partition", ["partition"], registry=r,
        )
        self.checkpoints = Counter(
            "streamlearn_trainer_checkpoints", "Durable checkpoints written", registry=r
        )
        self.checkpoint_seconds = Histogram(
            "streamlearn_trainer_checkpoint_duration_seconds",
            "Write of one checkpoint to Redis and the offset commit",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        dlq = Counter(
            "streamlearn_trainer_dlq_records", "Examples sent to the DLQ", ["reason"],
            registry=r,
        )
        self.dlq = {reason: dlq.labels(reason=reason) for reason in ("schema", "batch")}
        self._versions: set[str] = set()
        self._drift_and_triggers(r)

    def _drift_and_triggers(self, r: CollectorRegistry) -> None:
        firings = Counter(
            "streamlearn_trainer_trigger_firings", "Retraining trigger firings by kind",
            ["kind"], registry=r,
        )
        self.trigger_firings = {k: firings.labels(kind=k) for k in TRIGGER_KINDS}
        self.trigger_trainings = Counter(
            "streamlearn_trainer_trigger_trainings",
            "Trainings of the challenger on its buffer after a firing (triggered mode)",
            registry=r,
        )
        self.trigger_buffer = Gauge(
            "streamlearn_trainer_trigger_buffer_examples",
            "Examples waiting for the next training (triggered mode)", registry=r,
        )
        alarms = Counter(
            "streamlearn_drift_alarms", "Drift alarms by detector (loss detectors: a rise of "
            "the champion's loss; *_psi: PSI crossed drift.psi_alarm)", ["detector"],
            registry=r,
        )
        self.drift_alarms = {d: alarms.labels(detector=d) for d in DRIFT_DETECTORS}
        self.feature_score = Gauge(
            "streamlearn_drift_feature_score",
            "Population stability index of a feature, current window vs reference window",
            ["feature"], registry=r,
        )
        self.feature_ks = Gauge(
            "streamlearn_drift_feature_ks_statistic",
            "Kolmogorov-Smirnov statistic of a numeric feature, current vs reference window",
            ["feature"], registry=r,
        )
        self.score_psi = Gauge(
            "streamlearn_drift_prediction_score_psi",
            "Population stability index of the served scores, current vs reference window",
            registry=r,
        )
        self.score_ks = Gauge(
            "streamlearn_drift_prediction_score_ks_statistic",
            "Kolmogorov-Smirnov statistic of the served scores, current vs reference window",
            registry=r,
        )
        self.slice_logloss = Gauge(
            "streamlearn_trainer_slice_logloss",
            "Champion log loss over a slice's recent labelled examples",
            ["feature", "value"], registry=r,
        )
        self.slice_ctr = Gauge(
            "streamlearn_trainer_slice_ctr", "Observed CTR over a slice's recent examples",
            ["feature", "value"], registry=r,
        )
        self.slice_predicted_ctr = Gauge(
            "streamlearn_trainer_slice_predicted_ctr",
            "Champion's mean predicted CTR over a slice's recent examples",
            ["feature", "value"], registry=r,
        )

    def decision(self, outcome: str, rule: str, figures: Mapping[str, float] | None = None,
                 ) -> None:
        """Count one gate decision (an unknown rule name is counted as ``not_significant``),
        and set the off-policy CTR@k of both arms when the decision estimated them."""
        key = (outcome, rule if rule in GATE_RULES else "not_significant")
        self.decisions[key].inc()
        if figures and "ranking_champion_ctr" in figures:
            self.ranking_ctr.labels(arm="champion").set(figures["ranking_champion_ctr"])
            self.ranking_ctr.labels(arm="challenger").set(figures["ranking_challenger_ctr"])

    def prequential(self, version: str, arm: str, loss: float, area: float) -> None:
        """Set the prequential figures of one arm; forget labels of versions no longer used."""
        self._versions.add(version)
        self.prequential_loss.labels(model_version=version, arm=arm).set(loss)
        self.prequential_auc.labels(model_version=version, arm=arm).set(area)

    def forget_versions(self, keep: str) -> None:
        """Drop the per-version series of every version but ``keep``."""
        for version in self._versions - {keep}:
            for arm in ARMS:
                for gauge in (self.prequential_loss, self.prequential_auc):
                    try:
                        gauge.remove(version, arm)
                    except KeyError:
                        pass
        self._versions &= {keep}
