"""Drift: concept drift on the labels (``detectors``), monitors of features and scores compared
like with like across rankings (``monitors``, on the statistics of ``stats``) and rolling
figures per slice (``slices``). Pure and bounded; the trainer feeds them and exports what they
say."""

from models.drift.detectors import DETECTORS, DetectorName, DriftAlarm, LossDriftDetector
from models.drift.monitors import FeatureDrift, FeatureDriftMonitor, ScoreDriftMonitor
from models.drift.slices import SliceFigures, SliceMonitor
from models.drift.stats import ks_2samp, psi

__all__ = ["DETECTORS", "DetectorName", "DriftAlarm", "FeatureDrift", "FeatureDriftMonitor",
           "LossDriftDetector", "ScoreDriftMonitor", "SliceFigures", "SliceMonitor", "ks_2samp",
           "psi"]
