"""What users were shown against the truth: served over oracle expected CTR, by phase."""

from __future__ import annotations

import math

import pytest

from services.simulator import SimulatorError
from services.simulator.ranking import RankingTracker


def test_the_oracles_own_choice_has_share_one_in_every_phase() -> None:
    t = RankingTracker(early=10, tail=10, window=4)
    for after in (False, True, True):
        t.update([0.3, 0.2], [0.3, 0.2], after_drift=after)
    f = t.figures()
    assert (f.share_before, f.share_after, f.share_tail) == (1.0, 1.0, 1.0)
    assert f.recovery_labels == 0 and f.labels_after == 4  # it never fell: nothing to recover


def test_phases_split_by_the_drift_point_and_by_label_counts() -> None:
    t = RankingTracker(early=3, tail=2, window=100)
    t.update([0.2, 0.2], [0.4, 0.4], after_drift=False)        # before: 0.5
    t.update([0.1, 0.1], [0.4, 0.4], after_drift=True)         # after, labels 1-2
    t.update([0.4, 0.1], [0.4, 0.4], after_drift=True)         # label 3 in early, 4 not
    f = t.figures()
    assert f.share_before == pytest.approx(0.5)
    assert f.share_after == pytest.approx((0.1 + 0.1 + 0.4) / 1.2)
    assert f.share_tail == pytest.approx(0.5 / 0.8)            # the last two labels
    assert f.recovery_labels is None and f.labels_after == 4  # no full window yet: unknown


def test_recovery_counts_post_drift_labels_until_90_percent_of_the_pre_drift_ctr() -> None:
    t = RankingTracker(window=2)
    t.update([0.2, 0.2], [0.2, 0.2], after_drift=False)        # pre-drift served CTR 0.2
    t.update([0.0, 0.0], [0.2, 0.2], after_drift=True)
    t.update([0.17, 0.17], [0.2, 0.2], after_drift=True)       # 0.17 < 0.9 * 0.2
    assert t.figures().recovery_labels is None
    t.update([0.19, 0.19], [0.2, 0.2], after_drift=True)       # mean 0.19 >= 0.9 * 0.2
    assert t.figures().recovery_labels == 6


def test_nothing_served_before_the_drift_means_no_recovery_and_nan_shares() -> None:
    t = RankingTracker(window=1)
    t.update([0.3], [0.3], after_drift=True)
    f = t.figures()
    assert math.isnan(f.share_before) and f.recovery_labels is None


def test_bad_settings_and_mismatched_lengths_are_refused() -> None:
    with pytest.raises(SimulatorError):
        RankingTracker(window=0)
    with pytest.raises(SimulatorError):
        RankingTracker(recovered=1.5)
    with pytest.raises(ValueError):
        RankingTracker().update([0.1, 0.2], [0.3], after_drift=False)
