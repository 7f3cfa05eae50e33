"""The registry's pure core: version naming, records and their JSON, signing, retention."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from models import build_model
from models.errors import RegistryError
from models.gate.decision import GateDecision
from models.registry import (
    ArtifactRef,
    ChampionChange,
    Lineage,
    ModelRecord,
    OffsetRange,
    Version,
    artifacts_to_prune,
    check_promotable,
    feature_spec_hash,
    next_version,
    parse_version,
    sign,
    verify,
)


@pytest.mark.parametrize(
    ("parent", "mode", "existing", "expected"),
    [
        (None, "cold_start", [], "ctr-v1.0"),
        (None, "stateless", [], "ctr-v1.0"),
        ("ctr-v1.0", "stateful", ["ctr-v1.0"], "ctr-v1.1"),
        ("ctr-v1.1", "stateful", ["ctr-v1.0", "ctr-v1.1"], "ctr-v1.2"),
        ("ctr-v1.3", "stateless", ["ctr-v1.3"], "ctr-v2.0"),
        ("ctr-v1.3", "manual", ["ctr-v1.3"], "ctr-v2.0"),
        # A rejected ctr-v1.1 and a newer major exist: names are never reused.
        ("ctr-v1.0", "stateful", ["ctr-v1.0", "ctr-v1.1", "ctr-v2.0"], "ctr-v1.2"),
        ("ctr-v1.3", "stateless", ["ctr-v1.3", "ctr-v2.0", "ctr-v3.4"], "ctr-v4.0"),
        (None, "stateless", ["ctr-v1.0", "other-v7.0"], "ctr-v2.0"),
        ("ctr-v9.9", "stateful", [], "ctr-v9.10"),
    ],
)
def test_next_version(parent: str | None, mode: str, existing: list[str], expected: str) -> None:
    assert next_version(parent, mode, existing) == expected  # type: ignore[arg-type]


def test_next_version_refuses_stateful_without_parent_and_unknown_modes() -> None:
    with pytest.raises(RegistryError, match="needs a parent"):
        next_version(None, "stateful")
    with pytest.raises(RegistryError, match="unknown mode 'warm'"):
        next_version("ctr-v1.0", "warm")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["ctr-1.0", "ctr-v1", "CTR-v1.0", "ctr-v1.0.1", "-v1.0", ""])
def test_parse_version_refuses_bad_names(bad: str) -> None:
    with pytest.raises(RegistryError, match="bad version name"):
        parse_version(bad)


def test_versions_order_numerically() -> None:
    assert parse_version("ctr-v1.10") > parse_version("ctr-v1.9")
    assert parse_version("ctr-v2.0") > parse_version("ctr-v1.99")
    assert str(Version("ctr", 3, 1)) == "ctr-v3.1"


def make_record(**overrides: object) -> ModelRecord:
    model = build_model("logreg", hash_bits=10)
    blob = model.save()
    record = ModelRecord.for_model(
        model,
        blob,
        version="ctr-v1.1",
        parent="ctr-v1.0",
        mode="stateful",
        created_at=1_763_800_000_123,
        lineage=Lineage(
            (OffsetRange("examples", 0, 100, 611), OffsetRange("examples", 2, 0, 498)), 1011
        ),
    )
    return replace(record, **overrides)  # type: ignore[arg-type]


def test_record_describes_the_model_and_round_trips_through_json() -> None:
    gate = GateDecision("promote", "better: …", {"n": 2048.0, "p_better": 0.001}, "better")
    record = make_record(gate=gate, status="champion")
    assert record.model == "logreg" and record.hyperparameters["hash_bits"] == 10
    assert record.artifact.size > 0 and len(record.artifact.sha256) == 64
    text = record.to_json()
    assert ModelRecord.from_json(text) == record
    assert json.loads(text)["lineage"]["ranges"][1] == {
        "topic": "examples", "partition": 2, "first": 0, "last": 498}


def test_feature_spec_hash_follows_the_spec_not_the_weights() -> None:
    a = build_model("logreg", hash_bits=10).describe()["features"]["spec"]
    b = build_model("fm", hash_bits=10).describe()["features"]["spec"]
    c = build_model("logreg", hash_bits=11).describe()["features"]["spec"]
    assert feature_spec_hash(a) == feature_spec_hash(b) != feature_spec_hash(c)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.pop("artifact"), "artifact"),
        (lambda d: d.update(status="deleted"), "unknown status 'deleted'"),
        (lambda d: d.update(mode="warm"), "unknown mode 'warm'"),
        (lambda d: d.update(version="v1"), "bad version name 'v1'"),
        (lambda d: d["lineage"]["ranges"].append(
            {"topic": "x", "partition": 0, "first": 5, "last": 1}), "bad offset range"),
        (lambda d: d.update(gate={"outcome": "maybe", "reason": "", "figures": {}}),
         "unknown gate outcome"),
    ],
)
def test_record_json_refuses_bad_fields(mutate: object, match: str) -> None:
    data = json.loads(make_record().to_json())
    mutate(data)  # type: ignore[operator]
    with pytest.raises(RegistryError, match=match):
        ModelRecord.from_json(json.dumps(data))


def test_record_json_refuses_garbage() -> None:
    with pytest.raises(RegistryError, match="unreadable model record"):
        ModelRecord.from_json(b"\x00not json")


def test_signature_binds_key_context_and_every_byte() -> None:
    blob = bytes(range(256)) * 100
    sig = sign(blob, b"k1", b"ctr-v1.0")
    assert sig.startswith("hmac-sha256:") and verify(blob, sig, b"k1", b"ctr-v1.0")
    tampered = bytearray(blob)
    tampered[12_345] ^= 0x01
    assert not verify(bytes(tampered), sig, b"k1", b"ctr-v1.0")
    assert not verify(blob, sig, b"k2", b"ctr-v1.0")
    assert not verify(blob, sig, b"k1", b"ctr-v1.1")
    assert not verify(blob, "", b"k1", b"ctr-v1.0")
    with pytest.raises(RegistryError, match="empty"):
        sign(blob, b"")


def test_artifact_ref_describes_bytes() -> None:
    assert ArtifactRef.of(b"") == ArtifactRef(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0)


def test_champion_change_round_trips() -> None:
    change = ChampionChange("rollback", "ctr-v1.0", "ctr-v1.1", "bad CTR", 5)
    assert ChampionChange.from_json(change.to_json()) == change
    with pytest.raises(RegistryError, match="unreadable champion history"):
        ChampionChange.from_json('{"action": "delete"}')


def test_pruning_keeps_protected_and_newest() -> None:
    stored = [(f"ctr-v1.{i}", 100 + i) for i in range(6)]
    assert artifacts_to_prune(stored, {"ctr-v1.0", "ctr-v1.5"}, 3) == [
        "ctr-v1.1", "ctr-v1.2", "ctr-v1.3"]
    assert artifacts_to_prune(stored, {"ctr-v1.0"}, 10) == []
    # More protected than keep: nothing protected goes.
    assert artifacts_to_prune(stored[:3], {v for v, _ in stored[:3]}, 2) == []


def test_rejected_versions_are_promoted_only_by_force() -> None:
    gate = GateDecision("reject", "worse: …", {}, "worse")
    rejected = make_record(status="rejected", gate=gate)
    with pytest.raises(RegistryError, match=r"ctr-v1.1 was rejected \(worse: …\)"):
        check_promotable(rejected)
    check_promotable(rejected, force=True)
    check_promotable(make_record(status="retired"))
