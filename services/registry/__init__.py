"""The model registry: versions, signed artifacts and the champion pointer.

- ``base``: the ``Registry`` protocol (the port callers type against), ``register`` (allocate
  a version, put it, record the gate's decision), ``register_and_promote`` and
  ``ensure_champion`` (the one cold start, for serving and the trainer alike).
- ``redis``: ``RedisRegistry``, the adapter, and ``connect``; ``artifacts``: its chunked,
  signed artifact store; ``metrics``: its counters; ``cli``: ``streamlearn models …``.

The names below are re-exported lazily, on first use: ``base`` and ``redis`` load ``models``
(torch and river, seconds) and redis-py, which importing ``services.registry.cli`` or
``services.registry.metrics`` must not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.registry.base import (
        Registry,
        ensure_champion,
        register,
        register_and_promote,
    )
    from services.registry.redis import RedisRegistry, connect

__all__ = ["RedisRegistry", "Registry", "connect", "ensure_champion", "register",
           "register_and_promote"]

_HOME = {"Registry": "base", "register": "base", "register_and_promote": "base",
         "ensure_champion": "base",
         "RedisRegistry": "redis", "connect": "redis"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
