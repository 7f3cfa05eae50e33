"""Drift: concept drift on the labels (``detectors``) and monitors of features, scores and
slices (``monitors``). Pure and bounded; the trainer feeds them and exports what they say."""

from models.drift.detectors import DETECTORS, DetectorName, DriftAlarm, LossDriftDetector
from models.drift.monitors import (
    FeatureDrift,
    FeatureDriftMonitor,
    ScoreDriftMonitor,
    SliceFigures,
    SliceMonitor,
    ks_2samp,
    psi,
)

__all__ = ["DETECTORS", "DetectorName", "DriftAlarm", "FeatureDrift", "FeatureDriftMonitor",
           "LossDriftDetector", "ScoreDriftMonitor", "SliceFigures", "SliceMonitor", "ks_2samp",
           "psi"]
