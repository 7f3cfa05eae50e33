"""POST /v1/predict on the real app and a real model: ranking, logging, 422s, 503."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from models.learners.base import Model
from services.serving.context import ServingContext
from services.serving.scoring import Champion
from streams.schemas import MAX_FEATURES, Prediction, decode_prediction
from tests.unit.services.serving.conftest import ListSink, make_predict

MakeClient = Callable[..., tuple[TestClient, ServingContext]]


def test_predictions_are_sorted_best_first_with_the_models_scores(
    client: TestClient, model: Model
) -> None:
    body = make_predict(4)
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 200
    out = response.json()
    assert out["model_version"] == "ctr-v1.0" and out["arm"] == "champion"
    preds = out["predictions"]
    assert [p["rank"] for p in preds] == [1, 2, 3, 4]
    assert preds[0]["item_id"] == "good" and preds[-1]["item_id"] == "bad"
    scores = [p["score"] for p in preds]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1]
    # The scores are the model's, on exactly the features context + candidate + ids.
    expected = model.predict_proba_many([
        {**body["context"], **c["features"], "user_id": "u42", "item_id": c["item_id"]}
        for c in body["candidates"]
    ])
    by_item = {p["item_id"]: p["score"] for p in preds}
    assert [by_item[c["item_id"]] for c in body["candidates"]] == expected.tolist()
    assert len({p["prediction_id"] for p in preds}) == 4


def test_each_candidate_is_logged_with_the_features_the_model_saw(
    client: TestClient, sink: ListSink
) -> None:
    body = make_predict(3)
    before = int(time.time() * 1000)
    out = client.post("/v1/predict", json=body).json()
    logged = sink.on("predictions")
    assert len(logged) == 3
    decoded = [decode_prediction(value, key=key) for key, value in logged]
    assert all(isinstance(d, Prediction) for d in decoded), decoded
    by_id = {d.prediction_id: d for d in decoded}  # type: ignore[union-attr]
    assert set(by_id) == {p["prediction_id"] for p in out["predictions"]}
    for p in out["predictions"]:
        logged_p = by_id[p["prediction_id"]]
        candidate = next(c for c in body["candidates"] if c["item_id"] == p["item_id"])
        assert logged_p.features == {**body["context"], **candidate["features"],
                                     "user_id": "u42", "item_id": p["item_id"]}
        assert (logged_p.score, logged_p.item_id, logged_p.request_id) == (
            p["score"], p["item_id"], out["request_id"])
        assert logged_p.model_version == "ctr-v1.0" and logged_p.arm == "champion"
        assert before <= logged_p.ts <= int(time.time() * 1000)


def test_request_ids_win_over_same_named_features(client: TestClient, sink: ListSink) -> None:
    body = make_predict(1, context={"user_id": "spoofed"})
    body["candidates"][0]["features"] = {"item_id": "other"}
    assert client.post("/v1/predict", json=body).status_code == 200
    (key, value), = sink.on("predictions")
    assert orjson.loads(value)["features"] == {"user_id": "u42", "item_id": "good"}


def test_optional_context_and_features(client: TestClient) -> None:
    body = {"user_id": "u1", "candidates": [{"item_id": "a"}, {"item_id": "b", "features": None}]}
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 200
    assert [p["rank"] for p in response.json()["predictions"]] == [1, 2]


def test_a_swapped_champion_serves_the_next_request(make_client: MakeClient,
                                                     model: Model) -> None:
    client, ctx = make_client(model)
    assert client.post("/v1/predict", json=make_predict()).json()["model_version"] == "ctr-v1.0"
    ctx.holder.swap(Champion(model.clone(), "ctr-v1.1"))
    assert client.post("/v1/predict", json=make_predict()).json()["model_version"] == "ctr-v1.1"


def test_no_model_yet_is_503_not_500(make_client: MakeClient) -> None:
    client, _ = make_client(None)
    response = client.post("/v1/predict", json=make_predict())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


def _many(n: int) -> dict[str, Any]:
    return {f"k{i}": i for i in range(n)}


BAD_BODIES: list[tuple[str, Any, str]] = [
    ("missing user_id", {"candidates": [{"item_id": "a"}]}, "user_id"),
    ("user_id not a string", make_predict(user_id=42), "user_id"),
    ("empty user_id", make_predict(user_id=""), "user_id"),
    ("user_id too long", make_predict(user_id="u" * 129), "user_id"),
    ("no candidates", make_predict(candidates=[]), "candidates"),
    ("too many candidates", make_predict(candidates=[{"item_id": "a"}] * 501), "candidates"),
    ("candidates not a list", make_predict(candidates={"item_id": "a"}), "candidates"),
    ("item_id missing", make_predict(candidates=[{"features": {}}]), "candidates[0].item_id"),
    ("item_id a number", make_predict(candidates=[{"item_id": "a"}, {"item_id": 7}]),
     "candidates[1].item_id"),
    ("nested feature", make_predict(candidates=[{"item_id": "a", "features": {"geo": {}}}]),
     "candidates[0].features"),
    ("list feature", make_predict(candidates=[{"item_id": "a", "features": {"t": [1]}}]),
     "candidates[0].features"),
    ("features a list", make_predict(candidates=[{"item_id": "a", "features": [1]}]),
     "candidates[0].features"),
    ("context nested", make_predict(context={"geo": {"lat": 1.0}}), "context"),
    ("context a string", make_predict(context="mobile"), "context"),
    ("too many features", make_predict(context=_many(MAX_FEATURES - 1),
                                       candidates=[{"item_id": "a", "features": {"x": 1}}]),
     "candidates[0].features"),
    ("body an array", [make_predict()], "body"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_bad_input_is_a_422_naming_the_field(client: TestClient, sink: ListSink, case: str,
                                             body: Any, field: str) -> None:
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 422, response.text
    fields = [d["field"] for d in response.json()["detail"]]
    assert field in fields, response.json()
    assert sink.sent == []  # nothing is logged for a refused request


@pytest.mark.parametrize("raw", [
    b"", b"{", b'{"user_id": "u", "candidates": [{"item_id": "a", "features": {"p": NaN}}]}',
    b'{"user_id": "u", "candidates": [{"item_id": "a", "features": {"p": 1e999}}]}',
    b"\xff\xfe{}", b"null", b"42",
], ids=["empty", "truncated", "nan", "infinity", "not utf-8", "null", "number"])
def test_malformed_json_is_a_422_naming_the_body(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/predict", content=raw,
                           headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == "body"


def test_the_configured_candidate_limit_applies(make_client: MakeClient, model: Model) -> None:
    client, _ = make_client(model, max_candidates=2)
    response = client.post("/v1/predict", json=make_predict(3))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "candidates"
    assert "at most 2" in response.json()["detail"][0]["msg"]


def test_huge_numbers_are_scored_not_crashed_on(client: TestClient, sink: ListSink) -> None:
    raw = b'{"user_id": "u", "candidates": [{"item_id": "a", "features": {"p": 1' + \
        b"0" * 30 + b"}}]}"
    response = client.post("/v1/predict", content=raw,
                           headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert isinstance(decode_prediction(sink.on("predictions")[0][1]), Prediction)


class _Broken:
    """A model whose scores are out of range or not finite."""

    def predict_proba_many(self, batch: Any) -> Any:
        import numpy as np

        return np.array([np.nan, 1.5, -0.2, np.inf][: len(batch)])


def test_a_broken_models_scores_are_clamped_into_the_schema(make_client: MakeClient,
                                                             sink: ListSink) -> None:
    client, _ = make_client(_Broken())  # type: ignore[arg-type]
    out = client.post("/v1/predict", json=make_predict(4)).json()
    assert sorted(p["score"] for p in out["predictions"]) == [0.0, 0.0, 1.0, 1.0]
    assert all(isinstance(decode_prediction(v, key=k), Prediction)
               for k, v in sink.on("predictions"))


def test_every_logged_prediction_carries_its_slots_propensity_and_the_policy(
    make_client: Callable[..., tuple[TestClient, ServingContext]], model: Model, sink: ListSink,
) -> None:
    greedy, _ = make_client(model)
    assert greedy.post("/v1/predict", json=make_predict(4)).status_code == 200
    logged = [decode_prediction(v) for _, v in sink.on("predictions")]
    assert {(p.propensity, p.policy) for p in logged} == {(1.0, "none")}
    explore, ctx = make_client(model, exploration="epsilon", exploration_epsilon=1.0,
                               exploration_slots=2)
    response = explore.post("/v1/predict", json=make_predict(4)).json()
    logged = {p.prediction_id: p for p in
              (decode_prediction(v) for _, v in sink.on("predictions")[4:])}
    by_rank = [logged[p["prediction_id"]] for p in response["predictions"]]
    # epsilon 1: slot 1 is uniform over 4, slot 2 over the 3 left; the rest follow by score.
    assert [round(p.propensity, 4) for p in by_rank] == [0.25, round(1 / 3, 4), 1.0, 1.0]
    assert {p.policy for p in by_rank} == {"epsilon"}
    scrape = ctx.metrics.registry.get_sample_value
    explored = scrape("streamlearn_serving_exploration_slots_total", {"outcome": "explored"})
    greedy_slots = scrape("streamlearn_serving_exploration_slots_total", {"outcome": "greedy"})
    assert explored + greedy_slots == 2
