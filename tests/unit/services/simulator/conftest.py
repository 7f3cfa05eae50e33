"""Factories for simulator tests: a small world and a fake server answering like the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from services.simulator import Request, World, WorldConfig

T0 = 1_763_800_000_000


@pytest.fixture
def small_world() -> World:
    """200 users, 100 items (plus room for cold start), 10 candidates per request."""
    return World.create(WorldConfig(n_users=200, n_items=100, new_users=2_000, new_items=500,
                                    candidates=10), seed=11)


Scorer = Callable[[Request, str], float]


def serve(request: Request, scorer: Scorer) -> list[dict[str, Any]]:
    """The ``predictions`` of a ``POST /v1/predict`` response: every candidate scored by
    ``scorer(request, item_id)``, sorted best first, with globally unique prediction ids."""
    scored = sorted(((scorer(request, c["item_id"]), c["item_id"]) for c in request.candidates),
                    key=lambda s: -s[0])
    return [{"prediction_id": f"r{request.index}-{item}", "item_id": item, "score": score,
             "rank": rank} for rank, (score, item) in enumerate(scored, 1)]


@pytest.fixture
def make_response() -> Callable[..., list[dict[str, Any]]]:
    """``make_response(request, scorer=...)``: a served ranking; the default scorer is the
    truth (the oracle ranking)."""

    def make(request: Request, scorer: Scorer | None = None) -> list[dict[str, Any]]:
        return serve(request, scorer or (lambda r, item: r.p(item)))

    return make
