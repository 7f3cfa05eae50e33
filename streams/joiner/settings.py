"""Adapter-facing glue: build a ``JoinPolicy`` from the pydantic ``JoinerSettings``.

Kept apart from the core so that ``streams.joiner.core`` never needs pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.joiner.policy import JoinPolicy

if TYPE_CHECKING:
    from config.settings import JoinerSettings


def from_settings(settings: JoinerSettings) -> JoinPolicy:
    """The join policy configured by ``settings`` (the joiner section of the config).

    Example:
        >>> from config.settings import JoinerSettings
        >>> from_settings(JoinerSettings(attribution_window_ms=5_000)).attribution_window_ms
        5000
    """
    return JoinPolicy(
        attribution_window_ms=settings.attribution_window_ms,
        policy=settings.policy,
        allowed_lateness_ms=settings.allowed_lateness_ms,
        idle_timeout_ms=settings.idle_timeout_ms,
        max_event_lead_ms=settings.max_event_lead_ms,
        max_pending=settings.max_pending,
    )
