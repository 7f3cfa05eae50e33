"""The simulator's traffic under other feature names (services.simulator.naming)."""

from __future__ import annotations

import copy

from models import build_model
from models.features.encoding import FeatureSpec
from services.serving.schemas import PredictRequest
from services.serving.scoring import model_features
from services.simulator import World, build
from services.simulator.naming import RENAMED, renamed
from services.simulator.replay import QualityConfig
from services.simulator.warmup import warm_model


def test_every_client_key_but_the_ids_is_renamed(small_world: World) -> None:
    body = small_world.request(5, build("stationary", seed=0).state(5)).body()
    before = copy.deepcopy(body)
    out = renamed(body)
    assert body == before  # the original is not modified
    assert out["user_id"] == body["user_id"]
    assert set(out["context"]) == {RENAMED[k] for k in body["context"]}
    for new, old in zip(out["candidates"], body["candidates"], strict=True):
        assert new["item_id"] == old["item_id"]
        assert set(new["features"]) == {RENAMED[k] for k in old["features"]}
        assert list(new["features"].values()) == list(old["features"].values())


def test_no_name_configured_by_default_matches_the_renamed_features(small_world: World) -> None:
    body = renamed(small_world.request(0, build("stationary", seed=0).state(0)).body())
    keys = set(model_features(PredictRequest.model_validate(body))[0])
    spec = FeatureSpec()
    named = {k for pair in spec.crosses for k in pair} | set(spec.categorical)
    assert keys == {"user_id", "item_id", "ctx_a", "ctx_b", "genre", "cost"}
    assert not (keys & named) - {"user_id", "item_id"}


def test_keys_not_in_the_mapping_and_bodies_without_features_are_kept() -> None:
    body = {"user_id": "u", "context": None,
            "candidates": [{"item_id": "a"}, {"item_id": "b", "features": {"colour": "red"}}]}
    assert renamed(body, {"colour": "c"}) == {
        "user_id": "u", "context": None,
        "candidates": [{"item_id": "a"}, {"item_id": "b", "features": {"c": "red"}}]}


def test_the_warm_up_and_the_quality_replay_learn_the_renamed_keys() -> None:
    scenario = build("stationary", seed=1)
    world = scenario.world()
    cfg = QualityConfig(rename=True)
    model = warm_model(build_model("logreg", hash_bits=10), scenario, world, requests=30,
                       names=cfg.names)
    # The price under another name is a number; the hour, small integers, a category.
    assert set(model.describe()["features"]["numeric"]) == {"cost"}
    assert QualityConfig().names is None
