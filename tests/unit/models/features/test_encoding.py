"""The shared feature encoder: stable hashing, crosses, numerics, cold start, bounded state."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from models.errors import BatchError, HyperparameterError
from models.features.encoding import FeatureEncoder, FeatureSpec, stable_hash
from tests.paths import ROOT as _ROOT
from tests.unit.models.factories import make_batch, make_features

MASK_18 = (1 << 18) - 1


def entries(encoder: FeatureEncoder, x: dict[str, Any]) -> dict[int, float]:
    """The non-padding (index, value) pairs of one encoded dict."""
    row = encoder.encode([x])
    n = int(row.lengths[0])
    return dict(zip(row.indices[0, :n].tolist(), row.values[0, :n].tolist(), strict=True))


def test_known_key_value_has_a_known_index() -> None:
    # Pinned: if this changes, every saved model silently scores garbage.
    assert stable_hash("device=mobile") == 4081717047
    encoder = FeatureEncoder(FeatureSpec(crosses=()))
    assert entries(encoder, {"device": "mobile"}) == {4081717047 & MASK_18: 1.0}


def test_hash_is_stable_across_processes() -> None:
    script = (
        "from models.features.encoding import FeatureEncoder, FeatureSpec\n"
        "rows = FeatureEncoder(FeatureSpec()).encode([{'user_id': 'u9', 'item_category': 'toys',"
        " 'flag': True}])\n"
        "print(rows.indices.tolist())"
    )
    expected = FeatureEncoder(FeatureSpec()).encode(
        [{"user_id": "u9", "item_category": "toys", "flag": True}]
    )
    # The child salts str hashes differently from this process: built-in hash() would differ.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=_ROOT, env=env, capture_output=True, check=True
    )
    assert json.loads(out.stdout) == expected.indices.tolist()


def test_strings_and_booleans_are_categorical() -> None:
    encoder = FeatureEncoder(FeatureSpec(crosses=()))
    got = entries(encoder, {"device": "tv", "is_new": True})
    assert got == {
        stable_hash("device=tv") & MASK_18: 1.0,
        stable_hash("is_new=True") & MASK_18: 1.0,
    }


def test_cross_needs_both_keys() -> None:
    spec = FeatureSpec(crosses=(("user_id", "item_category"),))
    encoder = FeatureEncoder(spec)
    cross = stable_hash("user_id=u7&item_category=shoes") & MASK_18
    assert cross in entries(encoder, {"user_id": "u7", "item_category": "shoes"})
    assert cross not in entries(encoder, {"user_id": "u7"})
    assert len(entries(encoder, {"item_category": "shoes"})) == 1


def test_crosses_accept_lists_from_json() -> None:
    spec = FeatureSpec(crosses=[["a", "b"]])  # type: ignore[arg-type]
    assert spec.crosses == (("a", "b"),)
    assert FeatureSpec(**json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "bad", [{"hash_bits": 2}, {"n_buckets": 0}, {"clip": 0.0}, {"crosses": [1]}]
)
def test_bad_spec_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(HyperparameterError):
        FeatureSpec(**bad)  # type: ignore[arg-type]


def test_numeric_is_zscore_plus_bucket_and_learnt_only_when_asked() -> None:
    encoder = FeatureEncoder(FeatureSpec(crosses=(), n_buckets=4))
    price_index = stable_hash("price") & MASK_18
    cold = entries(encoder, {"price": 50.0})
    # Nothing learnt yet: z-score 0 and the first bucket.
    assert cold == {price_index: 0.0, stable_hash("price#b=0") & MASK_18: 1.0}

    prices = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    before = copy.deepcopy(encoder.to_state())
    encoder.encode([{"price": p} for p in prices])  # scoring: no learning
    assert encoder.to_state() == before
    encoder.encode([{"price": p} for p in prices], learn=True)

    got = entries(encoder, {"price": 75.0})
    z = (75.0 - np.mean(prices)) / np.std(prices)
    assert got[price_index] == pytest.approx(z, rel=1e-6)
    assert got[stable_hash("price#b=3") & MASK_18] == 1.0


def test_numbers_under_a_categorical_key_are_categories() -> None:
    encoder = FeatureEncoder(FeatureSpec(crosses=()))  # default: hour is categorical
    encoder.encode([{"hour": h, "price": float(h)} for h in range(24)], learn=True)
    assert entries(encoder, {"hour": 13}) == {stable_hash("hour=13") & MASK_18: 1.0}
    # One weight per hour: hour 0 is not "far below" hour 23, and has no statistics.
    assert entries(encoder, {"hour": 0}) == {stable_hash("hour=0") & MASK_18: 1.0}
    assert sorted(encoder.numeric_summary()) == ["price"]
    assert entries(encoder, {"hour": math.nan}) == {}  # still missing, not "hour=nan"
    numeric = FeatureEncoder(FeatureSpec(crosses=(), categorical=()))
    assert len(entries(numeric, {"hour": 13})) == 2  # z-score + bucket


def test_categorical_keys_round_trip_and_are_checked() -> None:
    spec = FeatureSpec(categorical=["hour", "weekday"])  # type: ignore[arg-type]
    assert spec.categorical == ("hour", "weekday")
    assert FeatureSpec(**json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(HyperparameterError, match="categorical"):
        FeatureSpec(categorical="hour")  # type: ignore[arg-type]


def test_an_encoder_saved_before_categorical_keys_keeps_hour_numeric() -> None:
    encoder = FeatureEncoder(FeatureSpec(crosses=(), categorical=()))
    encoder.encode([{"hour": h} for h in range(24)], learn=True)
    state = json.loads(json.dumps(encoder.to_state()))
    del state["spec"]["categorical"]  # as written by an older version
    restored = FeatureEncoder.from_state(state)
    assert restored.spec.categorical == ()
    assert entries(restored, {"hour": 5}) == entries(encoder, {"hour": 5})


def test_missing_and_non_finite_numbers_contribute_nothing() -> None:
    encoder = FeatureEncoder(FeatureSpec(crosses=()))
    assert entries(encoder, {"price": math.nan, "hour": math.inf, "x": None}) == {}
    rows = encoder.encode([{}, make_features()])
    assert rows.lengths.tolist()[0] == 0
    assert rows.values[0].tolist() == [0.0] * rows.values.shape[1]


def test_unknown_value_type_is_a_batch_error() -> None:
    with pytest.raises(BatchError, match="'tags'"):
        FeatureEncoder().encode([make_features(tags=["a", "b"])])


def test_numeric_keys_are_capped() -> None:
    encoder = FeatureEncoder(FeatureSpec(max_numeric_keys=2))
    encoder.encode([{f"n{i}": float(i) for i in range(5)}], learn=True)
    assert sorted(encoder.numeric_summary()) == ["n0", "n1"]
    assert encoder.encode([{"n4": 3.0}]).lengths.tolist() == [2]  # still encoded, no stats


def test_encoding_does_not_mutate_the_batch() -> None:
    batch = make_batch(20)
    snapshot = copy.deepcopy(batch)
    FeatureEncoder().encode(batch, learn=True)
    assert batch == snapshot


def test_state_round_trip_encodes_identically() -> None:
    encoder = FeatureEncoder(FeatureSpec(sketch_size=16), seed=3)
    for seed in range(5):
        encoder.encode(make_batch(64, seed=seed), learn=True)
    restored = FeatureEncoder.from_state(json.loads(json.dumps(encoder.to_state())))
    probe = make_batch(32, seed=99)
    a, b = encoder.encode(probe), restored.encode(probe)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values, b.values)


def test_sketch_state_stays_bounded_on_a_long_stream() -> None:
    encoder = FeatureEncoder(FeatureSpec(sketch_size=32))
    for seed in range(30):
        encoder.encode(make_batch(256, seed=seed), learn=True)
    sizes = {len(num["sketch"]["values"]) for num in encoder.to_state()["numeric"].values()}
    assert sizes == {32}


def test_row_dict_sums_colliding_entries() -> None:
    encoder = FeatureEncoder(FeatureSpec(hash_bits=4, crosses=()))
    rows = encoder.encode([{f"k{i}": "v" for i in range(40)}])
    assert sum(rows.row_dict(0).values()) == pytest.approx(40.0)
    assert len(rows.row_dict(0)) <= 16
