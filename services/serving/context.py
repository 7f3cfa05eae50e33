"""What the serving routes depend on, built once in the entry point and passed to the app.

Routes get it through the ``ContextDep`` dependency alias; tests build one with a model in
hand and a sink of their choosing, without Redis or Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

import numpy as np
from fastapi import Depends, Request

from config.settings import KafkaSettings, ServingSettings
from services.registry.redis import RedisRegistry
from services.serving.champion import ChampionHolder, ChampionWatcher
from services.serving.exploration import Exploration, exploration_of
from services.serving.label_feed import LabelFeed
from services.serving.metrics import ServingMetrics
from services.serving.scoring import Enrich
from services.serving.sink import MessageSink
from streams.schemas import FeatureValue, TimeBounds


@dataclass
class ServingContext:
    """Settings, the champion, the message sink and (optionally) the registry.

    Attributes:
        settings: The serving section.
        kafka: Topic names.
        bounds: How far event timestamps may lie from the server clock.
        holder: The champion being served.
        sink: Where predictions and events are logged.
        metrics: The process's Prometheus objects.
        registry: Admin endpoints answer 503 without one.
        watcher: Started and stopped with the app when given.
        feed: Fresh label statistics for scoring (``services.serving.label_feed``), started
            and stopped with the app when given.
    """

    settings: ServingSettings
    kafka: KafkaSettings
    bounds: TimeBounds
    holder: ChampionHolder
    sink: MessageSink
    metrics: ServingMetrics
    registry: RedisRegistry | None = None
    watcher: ChampionWatcher | None = None
    feed: LabelFeed | None = None

    @cached_property
    def enrich(self) -> Enrich | None:
        """Adds the feed's label statistics to candidates' features; None without a feed."""
        feed = self.feed
        if feed is None:
            return None

        def enrich(features: list[dict[str, FeatureValue]]) -> list[dict[str, FeatureValue]]:
            with feed.enriching() as stats:
                return stats.enrich_many(features)

        return enrich

    @cached_property
    def exploration(self) -> Exploration:
        """How the ranking explores, as ``settings`` say (built once)."""
        return exploration_of(self.settings)

    @cached_property
    def rng(self) -> np.random.Generator:
        """This process's draws for exploration."""
        return np.random.default_rng()


async def _context(request: Request) -> ServingContext:
    # async: FastAPI runs a sync dependency in its thread pool, a thread hop per request.
    ctx: ServingContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[ServingContext, Depends(_context)]
