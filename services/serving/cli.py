"""`streamlearn serve [--host --port]`: the serving API under uvicorn.

Builds every setting once, connects the registry and the Kafka producer, and runs one uvicorn
process. The champion is loaded in the background (``/readyz`` answers 503 until it is); with
no champion in the registry, a cold-start model is registered and promoted as v1.0.
"""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from config.settings import (
    KafkaSettings,
    RedisSettings,
    RegistrySettings,
    SchemaSettings,
    ServingSettings,
    TrainerSettings,
    load,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from models.learners.base import Model


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``streamlearn serve``."""
    parser.add_argument("--host", help="bind address (default: serving.host)")
    parser.add_argument("--port", type=int, help="port (default: serving.port)")
    parser.add_argument("--log-level", default="info", help="uvicorn and streamlearn log level")


def cold_start_builder(trainer: TrainerSettings, prior_ctr: float) -> Callable[[], Model]:
    """How the cold-start champion is made: the trainer's model family and feature space
    (so challengers fine-tune from it), predicting ``prior_ctr`` before any training."""

    def build() -> Model:
        from models import build_model

        return build_model(trainer.model, prior_ctr=prior_ctr, **trainer.model_hyperparams())

    return build


def build_app(serving: ServingSettings, kafka: KafkaSettings, redis_settings: RedisSettings,
              registry_settings: RegistrySettings, schema: SchemaSettings,
              trainer: TrainerSettings) -> FastAPI:
    """The production app: Redis registry + watcher, Kafka sink, metrics."""
    import torch

    from services.registry.metrics import RegistryMetrics
    from services.registry.redis import connect
    from services.serving.app import create_app
    from services.serving.champion import ChampionHolder, ChampionWatcher
    from services.serving.context import ServingContext
    from services.serving.label_feed import LabelFeed, label_stats_of
    from services.serving.metrics import ServingMetrics
    from services.serving.sink import KafkaSink
    from streams.schemas import TimeBounds

    torch.set_num_threads(serving.torch_threads)
    metrics = ServingMetrics()
    registry = connect(redis_settings, registry_settings, RegistryMetrics(metrics.registry))
    holder = ChampionHolder(metrics)
    watcher = ChampionWatcher(registry, holder, metrics,
                              cold_start_builder(trainer, serving.cold_start_prior_ctr),
                              poll_interval_s=serving.poll_interval_s)
    sink = KafkaSink(kafka.bootstrap_servers, metrics,
                     max_messages=serving.producer_queue_messages,
                     linger_ms=serving.producer_linger_ms,
                     message_timeout_ms=serving.producer_message_timeout_ms)
    stats = label_stats_of(serving)
    feed = None if stats is None else LabelFeed(kafka.bootstrap_servers, kafka.examples_topic,
                                                stats, lookback_ms=serving.label_stats_lookback_ms)
    ctx = ServingContext(serving, kafka, TimeBounds(schema.max_past_ms, schema.max_future_ms),
                         holder, sink, metrics, registry, watcher, feed)
    return create_app(ctx)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the serving API until interrupted."""
    import uvicorn

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    serving = load(ServingSettings, **overrides)
    app = build_app(serving, load(KafkaSettings), load(RedisSettings), load(RegistrySettings),
                    load(SchemaSettings), load(TrainerSettings))
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Everything imported so far (torch, pydantic, FastAPI) lives as long as the process:
    # out of the collector's sight, a full collection no longer walks it in a request's time.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=serving.host, port=serving.port, log_level=args.log_level,
                access_log=serving.access_log, loop=serving.loop, http=serving.http)
    return 0
