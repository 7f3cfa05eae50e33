"""JoinPolicy validation and its construction from JoinerSettings."""

from __future__ import annotations

import pytest

from config.settings import JoinerSettings
from streams.joiner import JoinerError, JoinPolicy
from streams.joiner.settings import from_settings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attribution_window_ms", 0),
        ("idle_timeout_ms", -1),
        ("max_pending", 0),
        ("allowed_lateness_ms", -5),
        ("max_event_lead_ms", -1),
        ("done_retention_ms", -1),
        ("policy", "everything"),
    ],
)
def test_invalid_policy_names_the_field(field, value):
    with pytest.raises(JoinerError, match=field):
        JoinPolicy(**{field: value})


def test_retention_defaults_to_the_larger_of_window_and_lead():
    assert JoinPolicy(attribution_window_ms=90_000).retention_ms == 90_000
    assert JoinPolicy(attribution_window_ms=1_000).retention_ms == 60_000
    assert JoinPolicy(done_retention_ms=5).retention_ms == 5


def test_policy_from_settings_copies_every_join_field():
    settings = JoinerSettings(
        attribution_window_ms=12_000, policy="all_served", allowed_lateness_ms=7,
        idle_timeout_ms=800, max_event_lead_ms=9_000, max_pending=77,
    )
    assert from_settings(settings) == JoinPolicy(
        attribution_window_ms=12_000, policy="all_served", allowed_lateness_ms=7,
        idle_timeout_ms=800, max_event_lead_ms=9_000, max_pending=77,
    )
