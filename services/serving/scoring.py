"""The decisions behind the serving routes, as functions without I/O.

``score`` turns a validated request and the champion into the response and the
``predictions`` messages; ``accept_events`` splits a batch of raw events into valid events and
per-index rejections. Routes in ``services/serving/app.py`` only parse, call these, and hand the
messages to the sink.

Example:
    >>> from models import build_model
    >>> from services.serving.schemas import PredictRequest
    >>> champion = Champion(build_model("logreg", hash_bits=8), "ctr-v1.0")
    >>> request = PredictRequest.model_validate(
    ...     {"user_id": "u1", "candidates": [{"item_id": "a"}, {"item_id": "b"}]})
    >>> out = score(champion, request, request_id="r1", now_ms=1763800000000)
    >>> [(p["item_id"], p["rank"]) for p in out.response["predictions"]]
    [('a', 1), ('b', 2)]
    >>> out.messages[1][0], out.features[1]
    ('r1-1', {'user_id': 'u1', 'item_id': 'b'})
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import orjson

from models.learners.base import Model
from services.errors import ServicesError
from services.serving.exploration import Exploration, Ranking, rank, uncertainty
from services.serving.schemas import PredictRequest
from streams.schemas import MAX_FEATURES, Event, FeatureValue, TimeBounds, encode, parse_event

CHAMPION_ARM: Final = "champion"
# Adds serving's own features to the candidates' dicts (services.serving.label_feed).
Enrich = Callable[[list[dict[str, FeatureValue]]], list[dict[str, FeatureValue]]]
GREEDY: Final = Exploration()  # no exploration: best score first


@dataclass(frozen=True, slots=True)
class Champion:
    """The model serving requests and its version; swapped as one reference."""

    model: Model
    version: str
    arm: str = CHAMPION_ARM


@dataclass(frozen=True, slots=True)
class Scored:
    """What one predict request produces.

    Attributes:
        response: The JSON body (predictions best first).
        messages: ``(prediction_id, value)`` per candidate, in request order, for
            ``predictions``.
        features: What the model saw per candidate, in request order.
        scores: Click probabilities in request order.
        ranking: The slots, with the propensity each candidate got its slot with.
    """

    response: dict[str, Any]
    messages: list[tuple[str, bytes]]
    features: list[dict[str, FeatureValue]]
    scores: np.ndarray
    ranking: Ranking


class FeatureLimitError(ServicesError, ValueError):
    """A candidate's merged features exceed what a ``predictions`` message may carry."""

    def __init__(self, index: int, count: int) -> None:
        super().__init__(
            f"field 'candidates[{index}].features': with context and ids the model would see "
            f"{count} features, at most {MAX_FEATURES} allowed"
        )
        self.index = index


def model_features(request: PredictRequest) -> list[dict[str, FeatureValue]]:
    """The flat feature dict of each candidate: context, then candidate features, then ids.

    The request's ``user_id`` and the candidate's ``item_id`` win over same-named keys, so
    the ids logged are the ids scored.

    Raises:
        FeatureLimitError: A merged dict has more than ``MAX_FEATURES`` keys.
    """
    context = request.context or {}
    out = []
    for i, candidate in enumerate(request.candidates):
        merged = {**context, **(candidate.features or {}),
                  "user_id": request.user_id, "item_id": candidate.item_id}
        if len(merged) > MAX_FEATURES:
            raise FeatureLimitError(i, len(merged))
        out.append(merged)
    return out


def score(
    champion: Champion,
    request: PredictRequest,
    *,
    request_id: str,
    now_ms: int,
    exploration: Exploration = GREEDY,
    rng: np.random.Generator | None = None,
    enrich: Enrich | None = None,
) -> Scored:
    """Score every candidate in one vectorised call and rank them, best first.

    A candidate's prediction id is ``<request_id>-<index>``: globally unique as long as
    request ids are (serving draws 128 random bits per request), and twenty times cheaper
    than a uuid per candidate. Ties keep request order. A non-finite score (a broken model)
    is served as 0.0 rather than breaking the response or the ``predictions`` schema. The
    order is ``exploration``'s (``services.serving.exploration``, drawing from ``rng``); each
    ``predictions`` message carries the propensity of its slot and the policy. ``enrich``
    adds serving's own features (``LabelStats``: fresh label statistics) before scoring, so
    they are logged with the rest; a candidate they would take past ``MAX_FEATURES`` goes
    without them.

    Raises:
        FeatureLimitError: See ``model_features``.
    """
    features = model_features(request)
    if enrich is not None:
        features = [f if len(f) <= MAX_FEATURES else plain
                    for f, plain in zip(enrich(features), features, strict=True)]
    scores = np.asarray(champion.model.predict_proba_many(features), dtype=np.float64)
    if not (np.isfinite(scores).all() and scores.min() >= 0.0 and scores.max() <= 1.0):
        scores = np.clip(np.nan_to_num(scores, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    ids = [f"{request_id}-{i}" for i in range(len(features))]
    values = scores.tolist()
    ranking = rank(scores, exploration, rng, uncertainty(champion.model, features, exploration))
    propensity = [1.0] * len(values)
    for slot, i in enumerate(ranking.order):
        propensity[i] = ranking.propensity[slot]
    messages = []
    for pid, candidate, feats, value, prop in zip(ids, request.candidates, features, values,
                                                  propensity, strict=True):
        messages.append((pid, orjson.dumps({
            "prediction_id": pid, "request_id": request_id, "ts": now_ms,
            "user_id": request.user_id, "item_id": candidate.item_id, "features": feats,
            "model_version": champion.version, "arm": champion.arm, "score": value,
            "propensity": prop, "policy": exploration.policy,
        })))
    predictions = [
        {"prediction_id": ids[i], "item_id": request.candidates[i].item_id,
         "score": values[i], "rank": rank_}
        for rank_, i in enumerate(ranking.order, start=1)
    ]
    response = {"request_id": request_id, "model_version": champion.version,
                "arm": champion.arm, "predictions": predictions}
    return Scored(response, messages, features, scores, ranking)


def accept_events(
    raw: Sequence[Any], *, now_ms: int, bounds: TimeBounds, new_id: Callable[[], str]
) -> tuple[list[Event], list[dict[str, Any]]]:
    """Validate each event on its own: the valid ones are accepted, the others rejected.

    A missing ``event_id`` is generated and a missing ``ts`` is the server's ``now_ms``; the
    rest follows the ``events`` topic's strict decoder.

    Returns:
        The accepted events (in batch order) and ``{"index", "error"}`` per rejected one.

    Example:
        >>> bounds = TimeBounds(3_600_000, 60_000)
        >>> ok, bad = accept_events(
        ...     [{"type": "click", "prediction_id": "p1"}, {"type": "like"}, 7],
        ...     now_ms=1763800000000, bounds=bounds, new_id=lambda: "e9")
        >>> ok
        [Event(event_id='e9', type='click', prediction_id='p1', ts=1763800000000, user_id=None, item_id=None)]
        >>> bad[0]["index"], bad[1]
        (1, {'index': 2, 'error': 'expected a JSON object, got int'})
    """  # noqa: E501
    accepted: list[Event] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        if isinstance(item, dict):
            item = {**item}
            if item.get("event_id") is None:
                item["event_id"] = new_id()
            if item.get("ts") is None:
                item["ts"] = now_ms
        try:
            accepted.append(parse_event(item, now_ms, bounds))
        except ValueError as err:
            rejected.append({"index": index, "error": str(err)})
    return accepted, rejected


def event_message(event: Event) -> tuple[str, bytes]:
    """``(key, value)`` of an ``events`` message."""
    return event.prediction_id, encode(event)
