"""``register`` and ``register_and_promote`` over an in-memory registry: allocation, races,
decisions and the promotion that follows.

``MemoryRegistry`` is a test double of our own ``Registry`` protocol holding just what the two
helpers call; the Redis adapter itself is tested against real Redis (tests/integration).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from models import Model, build_model, load_model
from models.errors import ChampionChangedError, VersionExistsError
from models.gate.decision import GateDecision
from models.registry import ArtifactRef, Lineage, Mode, ModelRecord, OffsetRange, next_version
from services.registry import register, register_and_promote

_ANY = object()


def make_record(version: str) -> ModelRecord:
    """Somebody else's record (its model does not matter here)."""
    model = build_model("logreg", hash_bits=4)
    return ModelRecord.for_model(model, model.save(), version=version, parent=None,
                                 mode="manual", created_at=0)


@dataclass
class MemoryRegistry:
    """Records, blobs, decisions and a champion in dicts.

    ``rivals`` is how many of the names this registry allocates another process registers
    first, between ``next_version`` and ``put``.
    """

    rivals: int = 0
    records: dict[str, ModelRecord] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    decisions: list[tuple[str, GateDecision]] = field(default_factory=list)
    champion: str | None = None
    allocated: list[str] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)

    def next_version(self, parent: str | None, mode: Mode) -> str:
        name = next_version(parent, mode, self.records)
        self.allocated.append(name)
        if self.rivals:
            self.rivals -= 1
            self.records[name] = make_record(name)
        return name

    def put(self, record: ModelRecord, blob: bytes) -> ModelRecord:
        if record.version in self.records:
            raise VersionExistsError(f"version {record.version} is already registered")
        assert record.artifact == ArtifactRef.of(blob) and record.status == "candidate"
        self.records[record.version], self.blobs[record.version] = record, blob
        return record

    def record_decision(self, version: str, decision: GateDecision) -> ModelRecord:
        self.decisions.append((version, decision))
        self.records[version] = replace(self.records[version], gate=decision)
        return self.records[version]

    def promote(self, version: str, reason: str, *, expected: object = _ANY,
                force: bool = False) -> ModelRecord:
        self.promotions.append({"version": version, "reason": reason, "force": force,
                                **({} if expected is _ANY else {"expected": expected})})
        if expected is not _ANY and expected != self.champion:
            raise ChampionChangedError(f"champion is {self.champion}, expected {expected}")
        self.champion = version
        self.records[version] = self.records[version].with_status("champion")
        return self.records[version]


@pytest.fixture
def model() -> Model:
    model = build_model("logreg", hash_bits=10)
    model.learn_many([{"device": "tv"}, {"device": "phone"}], [1, 0])
    return model


def test_registers_the_next_version_with_its_artifact_and_record(model: Model) -> None:
    registry = MemoryRegistry()
    registry.records["ctr-v1.0"] = make_record("ctr-v1.0")
    lineage = Lineage((OffsetRange("examples", 0, 0, 99),), 100)

    record = register(registry, model, parent="ctr-v1.0", mode="stateful", now_ms=1_234,
                      lineage=lineage)

    assert (record.version, record.parent, record.mode, record.created_at, record.lineage) == (
        "ctr-v1.1", "ctr-v1.0", "stateful", 1_234, lineage)
    assert registry.records["ctr-v1.1"] is record and record.gate is None
    assert load_model(registry.blobs["ctr-v1.1"]).save() == model.save()
    assert registry.decisions == [] and registry.promotions == []


def test_a_name_taken_before_put_is_replaced_by_a_fresh_one(model: Model) -> None:
    registry = MemoryRegistry(rivals=2)

    record = register(registry, model, parent=None, mode="cold_start", now_ms=0)

    assert registry.allocated == ["ctr-v1.0", "ctr-v2.0", "ctr-v3.0"]
    assert record.version == "ctr-v3.0" and registry.blobs.keys() == {"ctr-v3.0"}


def test_gives_up_after_attempts_names_were_all_taken(model: Model) -> None:
    registry = MemoryRegistry(rivals=3)

    with pytest.raises(VersionExistsError, match="after 3 attempts"):
        register(registry, model, parent=None, mode="manual", now_ms=0, attempts=3)

    assert registry.allocated == ["ctr-v1.0", "ctr-v2.0", "ctr-v3.0"]
    assert registry.blobs == {}


def test_records_the_decision_on_the_version_it_registered(model: Model) -> None:
    registry = MemoryRegistry(rivals=1)
    decision = GateDecision("promote", "better: …", {"n": 2048.0}, "better")

    record = register(registry, model, parent=None, mode="manual", now_ms=0,
                      decision=decision)

    assert registry.decisions == [("ctr-v2.0", decision)]
    assert record.version == "ctr-v2.0" and record.gate == decision


def test_a_given_version_is_tried_once_and_never_replaced(model: Model) -> None:
    registry = MemoryRegistry()
    first = register(registry, model, parent=None, mode="cold_start", now_ms=0,
                     version="ctr-v1.0")

    with pytest.raises(VersionExistsError):
        register(registry, model, parent=None, mode="cold_start", now_ms=1, version="ctr-v1.0")

    assert registry.allocated == [] and registry.records == {"ctr-v1.0": first}


def test_register_and_promote_passes_the_compare_and_set_on(model: Model) -> None:
    registry = MemoryRegistry()

    record = register_and_promote(registry, model, reason="deployed", parent=None,
                                  mode="manual", now_ms=0, expected=None)
    again = register_and_promote(registry, model, reason="forced", parent=record.version,
                                 mode="manual", now_ms=1, force=True)

    assert (record.status, again.status, registry.champion) == ("champion", "champion",
                                                                "ctr-v2.0")
    assert registry.promotions == [
        {"version": "ctr-v1.0", "reason": "deployed", "force": False, "expected": None},
        {"version": "ctr-v2.0", "reason": "forced", "force": True},  # no check when left out
    ]


def test_a_refused_promotion_leaves_the_version_registered_as_a_candidate(
    model: Model,
) -> None:
    registry = MemoryRegistry(champion="ctr-v7.0")

    with pytest.raises(ChampionChangedError):
        register_and_promote(registry, model, reason="cold start", parent=None,
                             mode="cold_start", now_ms=0, expected=None)

    assert registry.champion == "ctr-v7.0" and registry.records["ctr-v1.0"].status == "candidate"
