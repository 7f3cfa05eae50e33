"""The simulator's traffic under other feature names: a client whose schema we never saw.

Every name the client sends in a ``POST /v1/predict`` body, except the contract's ``user_id``
and ``item_id``, can be renamed (``RENAMED``: ``device`` → ``ctx_a``, ``hour`` → ``ctx_b``,
``item_category`` → ``genre``, ``price`` → ``cost``), so that nothing configured by feature
name (crosses, categorical keys, drift monitors) matches any of them. The values stay as they
are: the world and its truth do not change, only what the model is told they are called. A
benchmark whose figures move under ``renamed`` depends on our own names (``bench quality
--rename`` shows both runs side by side).

Example:
    >>> body = {"user_id": "u1", "context": {"device": "tv", "hour": 9},
    ...         "candidates": [{"item_id": "i3", "features": {"price": 2.5}}]}
    >>> out = renamed(body)
    >>> out["user_id"], out["context"], out["candidates"]
    ('u1', {'ctx_a': 'tv', 'ctx_b': 9}, [{'item_id': 'i3', 'features': {'cost': 2.5}}])
    >>> body["context"]  # not modified
    {'device': 'tv', 'hour': 9}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

RENAMED: Final[Mapping[str, str]] = {
    "device": "ctx_a",
    "hour": "ctx_b",
    "item_category": "genre",
    "price": "cost",
}


def renamed(body: Mapping[str, Any], names: Mapping[str, str] = RENAMED) -> dict[str, Any]:
    """A copy of a predict body with its context and candidate feature keys renamed by
    ``names`` (keys not in ``names`` are kept); ``user_id`` and ``item_id`` are never renamed.
    """
    def keys(features: Mapping[str, Any] | None) -> dict[str, Any] | None:
        if features is None:
            return None
        return {names.get(k, k): v for k, v in features.items()}

    out = dict(body)
    if "context" in body:
        out["context"] = keys(body["context"])
    if "candidates" in body:
        out["candidates"] = [
            {**c, "features": keys(c.get("features"))} if "features" in c else dict(c)
            for c in body["candidates"]
        ]
    return out
