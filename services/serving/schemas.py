"""Request and response bodies of the serving API (CONTRACT.md, "HTTP API").

Requests are parsed with orjson (which refuses NaN, infinities and invalid UTF-8) and then
validated by these models; a failure becomes a 422 whose body names the field
(``services.serving.app.parse_body``). Feature objects are checked by the same rule the Kafka
decoders apply (``streams.schemas.check_features``), so everything serving accepts can be
logged and decoded again downstream.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from streams.schemas import MAX_ID_LEN, FeatureValue, check_features

MAX_CANDIDATES: Final = 500
MAX_EVENTS: Final = 1000

Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LEN)]


def _flat(value: dict[str, Any]) -> dict[str, FeatureValue]:
    # check_features names the offending key; pydantic adds where the object sits.
    return check_features(value, key="features")


Features = Annotated[dict[str, Any], AfterValidator(_flat)]


class _Body(BaseModel):
    # strict: "13" is not a number and 13 is not a string, as in the Kafka decoders.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Candidate(_Body):
    """One item to score."""

    item_id: Id
    features: Features | None = None


class PredictRequest(_Body):
    """``POST /v1/predict``."""

    user_id: Id
    context: Features | None = None
    candidates: list[Candidate] = Field(min_length=1, max_length=MAX_CANDIDATES)


class EventsRequest(_Body):
    """``POST /v1/events``: each event is validated on its own (partial accept)."""

    events: list[Any] = Field(min_length=1, max_length=MAX_EVENTS)


class PromoteRequest(_Body):
    """Optional body of ``POST /v1/models/{version}/promote``."""

    reason: str = Field("manual promotion from the API", max_length=500)
    force: bool = False


class RollbackRequest(_Body):
    """Optional body of ``POST /v1/models/rollback``."""

    reason: str = Field("manual rollback from the API", max_length=500)


class ScoredCandidate(BaseModel):
    """One prediction of a response."""

    prediction_id: str
    item_id: str
    score: float
    rank: int


class PredictResponse(BaseModel):
    """Predictions sorted best first."""

    request_id: str
    model_version: str
    arm: str
    predictions: list[ScoredCandidate]


class RejectedEvent(BaseModel):
    """Why one event of a batch was not accepted."""

    index: int
    error: str


class EventsResponse(BaseModel):
    """How many events were accepted, and why the others were not."""

    accepted: int
    rejected: list[RejectedEvent]
