"""The serving API (CONTRACT.md, "HTTP API"): a thin FastAPI shell around the scoring core.

``create_app(ctx)`` wires the routes to a ``ServingContext`` built by the entry point
(``services/serving/cli.py``) or by a test. Routes parse, call ``services.serving.scoring``, hand
messages to the sink and answer; they hold no business logic and never wait for Kafka.

Routes: ``POST /v1/predict``, ``POST /v1/events``, ``GET /healthz``, ``GET /readyz``,
``GET /metrics`` and the registry admin under ``/v1/models`` (``services/serving/admin.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from services.serving import admin as serving_admin
from services.serving.body import parse_body, validation_error, validation_handler
from services.serving.context import ContextDep, ServingContext
from services.serving.metrics import ServingMetrics
from services.serving.schemas import EventsRequest, EventsResponse, PredictRequest, PredictResponse
from services.serving.scoring import (
    FeatureLimitError,
    accept_events,
    event_message,
    score,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def _new_id() -> str:
    # 128 random bits as 32 hex digits, like uuid4().hex, for a fifth of its cost.
    return os.urandom(16).hex()


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _body_doc(model: type) -> dict[str, Any]:
    # Bodies are parsed by hand (orjson); this keeps them documented in /docs all the same.
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")  # type: ignore[attr-defined]
    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": schema}}}}


def create_app(ctx: ServingContext) -> FastAPI:
    """The serving app. Its lifespan starts ``ctx.watcher`` and ``ctx.feed`` and, at shutdown,
    stops them and flushes and closes ``ctx.sink``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ctx.watcher is not None:
            ctx.watcher.start()
        if ctx.feed is not None:
            ctx.feed.start()
        try:
            yield
        finally:
            if ctx.feed is not None:
                ctx.feed.stop()
            if ctx.watcher is not None:
                ctx.watcher.stop()
            ctx.sink.close(5.0)

    app = FastAPI(title="streamlearn serving", version="1", lifespan=lifespan)
    app.state.ctx = ctx
    app.add_exception_handler(RequestValidationError, validation_handler)
    instrumented = ctx.settings.request_metrics
    if instrumented:
        app.add_middleware(_Instrumented, metrics=ctx.metrics)
    app.include_router(serving_admin.router)

    @app.post("/v1/predict", response_model=PredictResponse,
              openapi_extra=_body_doc(PredictRequest))
    async def predict(request: Request, ctx: ContextDep) -> Response:
        """Score candidates with the champion; best first. Each served candidate is logged
        to the predictions topic."""
        body = parse_body(await request.body(), PredictRequest)
        limit = ctx.settings.max_candidates
        if len(body.candidates) > limit:
            raise validation_error([("body", "candidates")],
                                   f"at most {limit} candidates, got {len(body.candidates)}")
        champion = ctx.holder.current
        if champion is None:
            raise HTTPException(503, "no model loaded yet", headers={"Retry-After": "1"})
        try:
            scored = score(champion, body, request_id=_new_id(), now_ms=int(time.time() * 1000),
                           exploration=ctx.exploration, rng=ctx.rng, enrich=ctx.enrich)
        except FeatureLimitError as err:
            raise validation_error([("body", "candidates", err.index, "features")],
                                   str(err)) from None
        ctx.sink.send_many(ctx.kafka.predictions_topic, scored.messages)
        if instrumented:
            ctx.metrics.predictions(champion.version, champion.arm).inc(len(scored.messages))
            ctx.metrics.scores.observe_many(scored.scores)
            ctx.metrics.explored(scored.ranking)
        return _json(scored.response)

    @app.post("/v1/events", status_code=202, response_model=EventsResponse,
              openapi_extra=_body_doc(EventsRequest))
    async def events(request: Request, ctx: ContextDep) -> Response:
        """Accept behavioural events (valid ones even when others in the batch are not)."""
        body = parse_body(await request.body(), EventsRequest)
        accepted, rejected = accept_events(
            body.events, now_ms=int(time.time() * 1000), bounds=ctx.bounds, new_id=_new_id
        )
        topic = ctx.kafka.events_topic
        for event in accepted:
            ctx.sink.send(topic, *event_message(event))
        if instrumented:
            ctx.metrics.events["accepted"].inc(len(accepted))
            ctx.metrics.events["rejected"].inc(len(rejected))
        return _json({"accepted": len(accepted), "rejected": rejected}, 202)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(ctx: ContextDep) -> Response:
        """200 once a model is loaded and the producer can queue messages, else 503."""
        champion = ctx.holder.current
        producer = ctx.sink.status()
        ready = champion is not None and bool(producer.get("usable"))
        return _json({"ready": ready, "model_version": champion.version if champion else None,
                      "producer": producer}, 200 if ready else 503)

    @app.get("/metrics")
    async def metrics(ctx: ContextDep) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Instrumented:
    """ASGI middleware: requests by route template and status, and their latency.

    Pure ASGI rather than ``BaseHTTPMiddleware``, which costs a task per request. The route
    template is read after routing (Starlette stores the matched route in the scope), so raw
    paths never become label values.
    """

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._requests: dict[tuple[str, int], MetricWrapperBase] = {}
        self._latency: dict[str, MetricWrapperBase] = {}

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self._count(route, status, time.perf_counter() - started)

    def _count(self, route: str, status: int, seconds: float) -> None:
        counter = self._requests.get((route, status))
        if counter is None:
            counter = self.metrics.requests.labels(route=route, status=str(status))
            self._requests[(route, status)] = counter
        counter.inc()  # type: ignore[attr-defined]
        latency = self._latency.get(route)
        if latency is None:
            latency = self.metrics.latency.labels(route=route)
            self._latency[route] = latency
        latency.observe(seconds)  # type: ignore[attr-defined]
