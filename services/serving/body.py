"""Request bodies in, 422s out: one JSON parser and one error shape for every route.

Bodies are parsed with orjson, which refuses what a strict JSON reader should (NaN,
infinities, invalid UTF-8) instead of passing it on, then validated by a pydantic model. Every
input error, whether found here or by FastAPI itself (path parameters), is answered as::

    422 {"detail": [{"field": "candidates[0].features", "loc": ["body", "candidates", 0,
                     "features"], "msg": "…", "type": "…"}]}

``field`` names the offending field in the request's own terms; nothing of the input is echoed.

Example:
    >>> field_path(("body", "candidates", 0, "features"))
    'candidates[0].features'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def field_path(loc: Sequence[Any]) -> str:
    """A pydantic location as a readable path, without the ``body``/``path`` prefix."""
    parts = list(loc)
    if parts and parts[0] in ("body", "path", "query", "header"):
        parts = parts[1:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def validation_error(locs: Sequence[tuple[Any, ...]], msg: str,
                     kind: str = "value_error") -> RequestValidationError:
    """A 422 for the given locations (e.g. ``[("body", "candidates")]``)."""
    return RequestValidationError([{"type": kind, "loc": loc, "msg": msg} for loc in locs])


def parse_body(raw: bytes, model: type[M]) -> M:
    """Parse and validate a JSON body.

    Raises:
        RequestValidationError: Not JSON, or not what ``model`` describes (a 422).
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise validation_error([("body",)], f"invalid JSON: {err}", "json_invalid") from None
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise RequestValidationError([
            {"type": e["type"], "loc": ("body", *e["loc"]), "msg": e["msg"]}
            for e in err.errors(include_url=False)
        ]) from None


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """Render any RequestValidationError as the 422 shape above."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"field": field_path(e.get("loc", ())), "loc": list(e.get("loc", ())),
         "msg": str(e.get("msg", "")), "type": str(e.get("type", "value_error"))}
        for e in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)
