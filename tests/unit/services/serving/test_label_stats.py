"""Serving's label statistics: the feed's numbers reach the model and the logged features.

The feed's Kafka side runs in the integration test (tests/integration/services/serving/
test_label_feed.py); here a feed that never starts its thread is handed examples directly.
"""

from __future__ import annotations

import math

import orjson
from fastapi.testclient import TestClient

from config.settings import KafkaSettings, ServingSettings
from models.features.label_stats import LabelStats
from models.learners.base import Model
from services.serving.app import create_app
from services.serving.champion import ChampionHolder
from services.serving.context import ServingContext
from services.serving.label_feed import LabelFeed
from services.serving.metrics import ServingMetrics
from services.serving.scoring import Champion
from streams.schemas import MAX_FEATURES, Example
from tests.unit.services.serving.conftest import BOUNDS, TOKEN, ListSink, make_predict


class Unstarted(LabelFeed):
    """The feed without its Kafka thread."""

    def start(self) -> None:
        pass

    def stop(self, timeout_s: float = 5.0) -> None:
        pass


def _client(model: Model, sink: ListSink) -> tuple[TestClient, LabelFeed]:
    feed = Unstarted("unused:9092", "examples", LabelStats(memory=0))
    metrics = ServingMetrics()
    ctx = ServingContext(ServingSettings(admin_token=TOKEN), KafkaSettings(), BOUNDS,
                         ChampionHolder(metrics, Champion(model, "ctr-v1.0")), sink, metrics,
                         feed=feed)
    return TestClient(create_app(ctx), raise_server_exceptions=False), feed


def _example(user: str, item: str, label: int) -> Example:
    return Example(f"{user}-{item}-{label}", 1, 2, label, {"user_id": user, "item_id": item},
                   "ctr-v1.0", "champion", 0.1)


def test_logged_features_carry_the_statistics_the_model_scored_with(
    model: Model, sink: ListSink,
) -> None:
    client, feed = _client(model, sink)
    with client:
        feed.apply([_example("u42", "good", 1), _example("u42", "good", 1),
                    _example("u7", "bad", 0)])
        response = client.post("/v1/predict", json=make_predict(3))
    assert response.status_code == 200
    logged = {orjson.loads(v)["item_id"]: orjson.loads(v)["features"]
              for _, v in sink.on(KafkaSettings().predictions_topic)}
    overall = (2 + 1) / (3 + 2)
    good = logged["good"]
    assert good["_stat_n_user_id"] == math.log1p(2) == good["_stat_n_item_id"]
    rate = (2 + 5 * overall) / (2 + 5)
    assert math.isclose(good["_stat_ctr_item_id"], math.log(rate / (1 - rate)))
    assert logged["i0"]["_stat_n_item_id"] == 0.0  # an item with no label yet
    scores = {p["item_id"]: p["score"] for p in response.json()["predictions"]}
    enriched = model.predict_proba_many([logged[i] for i in ("bad", "good", "i0")])
    assert [scores[i] for i in ("bad", "good", "i0")] == [float(s) for s in enriched]


def test_a_candidate_at_the_feature_limit_goes_without_statistics(
    model: Model, sink: ListSink,
) -> None:
    client, _ = _client(model, sink)
    full = {f"f{i}": i for i in range(MAX_FEATURES - 2)}  # + user_id + item_id = the limit
    body = {"user_id": "u1", "candidates": [{"item_id": "a", "features": full}]}
    with client:
        assert client.post("/v1/predict", json=body).status_code == 200
    (_, value), = sink.on(KafkaSettings().predictions_topic)
    features = orjson.loads(value)["features"]
    assert len(features) == MAX_FEATURES and "_stat_n_user_id" not in features
