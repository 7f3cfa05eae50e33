"""Fresh label statistics: smoothed, decayed, bounded, and joined in time as serving sees them."""

from __future__ import annotations

import math

import pytest

from models.errors import HyperparameterError
from models.features.label_stats import PREFIX, LabelStats, enrich_in_time


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_a_value_never_seen_gets_the_overall_rate() -> None:
    stats = LabelStats(memory=0, prior=5.0)
    for i in range(10):
        stats.update({"user_id": f"u{i}", "item_id": "a"}, int(i < 3))
    f = stats.enrich({"user_id": "new", "item_id": "b", "device": "tv"})
    assert f["_stat_ctr_user_id"] == pytest.approx(logit(4 / 12))
    assert f["_stat_n_user_id"] == 0.0 and f["device"] == "tv"
    a = stats.enrich({"item_id": "a"})
    assert a["_stat_ctr_item_id"] == pytest.approx(logit((3 + 5 * 4 / 12) / 15))
    assert a["_stat_n_item_id"] == pytest.approx(math.log1p(10))
    assert "_stat_ctr_user_id" not in a  # no user_id, no statistic of it


def test_enrich_leaves_its_input_alone() -> None:
    stats = LabelStats()
    features = {"user_id": "u"}
    out = stats.enrich(features)
    assert features == {"user_id": "u"} and out is not features
    assert all(k.startswith(PREFIX) for k in set(out) - set(features))


def test_memory_follows_a_change_of_taste() -> None:
    remembers_all, forgets = LabelStats(("user_id",), memory=0), LabelStats(("user_id",), memory=20)
    for y in [1] * 200 + [0] * 60:  # liked everything, then nothing
        for stats in (remembers_all, forgets):
            stats.update({"user_id": "u"}, y)
    all_rate = remembers_all.enrich({"user_id": "u"})["_stat_ctr_user_id"]
    recent = forgets.enrich({"user_id": "u"})["_stat_ctr_user_id"]
    assert all_rate > logit(0.7) and recent < logit(0.2)
    # The weighted count settles near the memory, not at the number of labels.
    assert forgets.enrich({"user_id": "u"})["_stat_n_user_id"] < math.log1p(21)


def test_capacity_evicts_the_least_recently_updated() -> None:
    stats = LabelStats(("user_id",), capacity=2, memory=0)
    for user in ("a", "b", "a", "c"):
        stats.update({"user_id": user}, 1)
    assert len(stats) == 2
    assert stats.enrich({"user_id": "b"})["_stat_n_user_id"] == 0.0  # evicted
    assert stats.enrich({"user_id": "a"})["_stat_n_user_id"] == pytest.approx(math.log1p(2))


def test_enrich_in_time_counts_a_non_click_only_when_its_window_closes() -> None:
    rows = [({"user_id": "u"}, 0, 0), ({"user_id": "u"}, 1, 100), ({"user_id": "u"}, 0, 200),
            ({"user_id": "u"}, 0, 1_050), ({"user_id": "u"}, 0, 5_000)]
    out = enrich_in_time(LabelStats(("user_id",), memory=0), rows, window_ms=1_000)
    n = [round(math.expm1(f["_stat_n_user_id"])) for f in out]
    # The click at 100 is seen from 200 on; the non-click at 0 from 1,000; at 200 from 1,200.
    assert n == [0, 0, 1, 2, 4]


@pytest.mark.parametrize("kwargs", [{"memory": -1}, {"prior": 0}, {"capacity": 0}])
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(HyperparameterError):
        LabelStats(**kwargs)  # type: ignore[arg-type]
