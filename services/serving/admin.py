"""Registry admin over HTTP: ``/v1/models`` (list, show, promote, rollback).

Reading is open; changing the champion needs ``Authorization: Bearer <serving.admin_token>``
(401 without a bearer token, 403 with a wrong one). A promotion or rollback made here is
loaded by this process before the response returns (``serving`` in the body says what it now
serves); other serving processes follow through the registry's pub/sub announcement.

Status codes: 404 unknown version, 422 malformed version name or body, 409 a refusal of the
registry (tampered or pruned artifact, a rejected version without ``force``, nothing to roll
back to), 503 no registry configured or Redis unreachable.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

import redis
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from models.errors import RegistryError
from models.registry import ModelRecord, parse_version, record_to_dict
from services.registry.redis import RedisRegistry
from services.serving.body import parse_body, validation_error
from services.serving.context import ContextDep, ServingContext
from services.serving.schemas import PromoteRequest, RollbackRequest

router = APIRouter(prefix="/v1/models", tags=["models"])
_bearer = HTTPBearer(auto_error=False, description="serving.admin_token")


def _registry(ctx: ContextDep) -> RedisRegistry:
    if ctx.registry is None:
        raise HTTPException(503, "no model registry configured")
    return ctx.registry


def _admin(
    ctx: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None:
        raise HTTPException(401, "missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    expected = ctx.settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(credentials.credentials.encode(), expected):
        raise HTTPException(403, "invalid admin token")


RegistryDep = Annotated[RedisRegistry, Depends(_registry)]
# A route-level dependency runs before the route's own, so auth is checked before anything.
ADMIN = Depends(_admin)


def _known(registry: RedisRegistry, version: str) -> None:
    try:
        parse_version(version)
    except RegistryError as err:
        raise validation_error([("path", "version")], str(err)) from None
    if not registry.has_version(version):
        raise HTTPException(404, f"unknown version {version}")


def _describe(registry: RedisRegistry, record: ModelRecord) -> dict[str, Any]:
    return {**record_to_dict(record), "artifact_stored": registry.has_artifact(record.version)}


def _changed(ctx: ServingContext, record: ModelRecord, previous: str | None) -> dict[str, Any]:
    serving = None
    if ctx.watcher is not None:
        champion = ctx.watcher.refresh(announced=True)
        serving = champion.version if champion else None
    return {"champion": record.version, "previous": previous, "serving": serving}


@router.get("")
def list_models(registry: RegistryDep) -> dict[str, Any]:
    """Every version, newest first, and the champion."""
    try:
        records = registry.list()
        return {"champion": registry.champion_version(),
                "versions": [_describe(registry, r) for r in records]}
    except redis.RedisError as exc:
        raise HTTPException(503, f"registry unreachable: {exc}") from exc


@router.post("/rollback", dependencies=[ADMIN])
async def rollback(request: Request, ctx: ContextDep, registry: RegistryDep) -> dict[str, Any]:
    """Restore the previous champion."""
    raw = await request.body()
    body = parse_body(raw, RollbackRequest) if raw.strip() else RollbackRequest.model_validate({})
    return await _in_thread(_rollback, ctx, registry, body)


@router.get("/{version}")
def show_model(version: str, registry: RegistryDep) -> dict[str, Any]:
    """One version: lineage, gate decision, status, artifact."""
    try:
        _known(registry, version)
        record = registry.get(version)
        return {**_describe(registry, record),
                "champion": registry.champion_version() == version}
    except redis.RedisError as exc:
        raise HTTPException(503, f"registry unreachable: {exc}") from exc


@router.post("/{version}/promote", dependencies=[ADMIN])
async def promote(version: str, request: Request, ctx: ContextDep,
                  registry: RegistryDep) -> dict[str, Any]:
    """Make a version the champion (this process serves it when the response returns)."""
    raw = await request.body()
    body = parse_body(raw, PromoteRequest) if raw.strip() else PromoteRequest.model_validate({})
    return await _in_thread(_promote, ctx, registry, version, body)


def _promote(ctx: ServingContext, registry: RedisRegistry, version: str,
             body: PromoteRequest) -> dict[str, Any]:
    _known(registry, version)
    previous = registry.champion_version()
    record = registry.promote(version, body.reason, force=body.force)
    return _changed(ctx, record, previous)


def _rollback(ctx: ServingContext, registry: RedisRegistry,
              body: RollbackRequest) -> dict[str, Any]:
    previous = registry.champion_version()
    record = registry.rollback(body.reason)
    return _changed(ctx, record, previous)


async def _in_thread(func: Any, *args: Any) -> dict[str, Any]:
    """Run a blocking registry change off the event loop, mapping refusals to 409."""
    try:
        result: dict[str, Any] = await run_in_threadpool(func, *args)
        return result
    except RegistryError as exc:
        raise HTTPException(409, str(exc)) from exc
    except redis.RedisError as exc:
        raise HTTPException(503, f"registry unreachable: {exc}") from exc
