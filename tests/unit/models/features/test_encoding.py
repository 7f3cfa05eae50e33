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
    # Default: hour is categorical (and price, codes-like here, is not taken for codes).
    encoder = FeatureEncoder(FeatureSpec(crosses=(), coded_below=0))
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
    encoder.encode([{f"n{i}": i + 0.5 for i in range(5)}], learn=True)
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


def test_the_anchor_is_crossed_with_every_other_categorical_whatever_its_name() -> None:
    encoder = FeatureEncoder(FeatureSpec())  # default: anchor user_id, no named cross
    x = {"user_id": "u7", "genre": "jazz", "flag": False, "item_id": "i3", "cost": 2.5,
         "ctx_b": 9}
    got = entries(encoder, x)
    assert stable_hash("user_id=u7&genre=jazz") & MASK_18 in got
    assert stable_hash("user_id=u7&flag=False") & MASK_18 in got
    # Not item_id (one weight per user and item), not numbers: 6 keys, two of them numbers
    # (z-score and bucket each), and 2 anchor crosses.
    assert int(encoder.encode([x]).lengths[0]) == 6 + 2 + 2
    # Without the anchor's key, nothing is crossed.
    assert len(entries(encoder, {"genre": "jazz", "flag": False})) == 2


def test_an_anchor_cross_is_the_named_cross_of_the_same_keys() -> None:
    named = FeatureEncoder(FeatureSpec(crosses=(("user_id", "genre"),), cross_anchor=None))
    auto = FeatureEncoder(FeatureSpec())
    x = {"user_id": "u1", "genre": "pop"}
    assert entries(named, x) == entries(auto, x)


def test_cross_anchor_is_checked_and_old_encoders_keep_only_named_crosses() -> None:
    with pytest.raises(HyperparameterError, match="cross_anchor"):
        FeatureSpec(cross_anchor=3)  # type: ignore[arg-type]
    state = FeatureEncoder(FeatureSpec(crosses=(("a", "b"),))).to_state()
    del state["spec"]["cross_anchor"]  # as written before the anchor existed
    restored = FeatureEncoder.from_state(state)
    assert restored.spec.cross_anchor is None
    assert restored.spec.crosses == (("a", "b"),)
    again = FeatureEncoder.from_state(FeatureEncoder(FeatureSpec()).to_state())
    assert again.spec == FeatureSpec()


def test_a_key_whose_first_numbers_are_small_integers_is_categorical_whatever_its_name() -> None:
    encoder = FeatureEncoder(FeatureSpec(crosses=(), categorical=()))
    encoder.encode([{"ctx_b": h % 3 + 8, "cost": 20.0 + h} for h in range(50)], learn=True)
    assert entries(encoder, {"ctx_b": 23}) == {stable_hash("ctx_b=23") & MASK_18: 1.0}
    assert sorted(encoder.numeric_summary()) == ["cost"]  # 20.0 and up: not codes
    restored = FeatureEncoder.from_state(json.loads(json.dumps(encoder.to_state())))
    assert entries(restored, {"ctx_b": 0}) == entries(encoder, {"ctx_b": 0})
    # The batch that decides is encoded as every later one: the code, then padding.
    first = FeatureEncoder(FeatureSpec(crosses=(), categorical=())).encode([{"w": 3}], learn=True)
    assert first.row_dict(0) == {stable_hash("w=3") & MASK_18: 1.0, 0: 0.0}


def test_codes_are_not_detected_when_switched_off_or_in_old_encoders() -> None:
    off = FeatureEncoder(FeatureSpec(crosses=(), categorical=(), coded_below=0))
    off.encode([{"ctx_b": 9}], learn=True)
    assert sorted(off.numeric_summary()) == ["ctx_b"]
    state = FeatureEncoder(FeatureSpec()).to_state()
    del state["spec"]["coded_below"], state["coded"]  # as written before detection existed
    assert FeatureEncoder.from_state(state).spec.coded_below == 0
    with pytest.raises(HyperparameterError, match="coded_below"):
        FeatureSpec(coded_below=-1)
