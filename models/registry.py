"""The registry's pure core: version names, records with lineage, signing and retention.

Storage lives elsewhere (``services/registry/redis.py`` keeps all of this in Redis); here is only
what a version *is* and the rules it obeys, so they can be tested without a server.

Versions are ``<line>-v<major>.<minor>`` (CONTRACT.md): a stateful fine-tune bumps the minor
of its parent's major, a stateless or manual retrain starts a new major, the first version of
a line is v1.0. Numbers are allocated past every version already registered, so a challenger
that was rejected never has its name reused.

Example:
    >>> next_version("ctr-v1.3", "stateless", existing=["ctr-v1.3"])
    'ctr-v2.0'
    >>> next_version("ctr-v1.0", "stateful", existing=["ctr-v1.0", "ctr-v1.1", "ctr-v2.0"])
    'ctr-v1.2'
    >>> sorted(["ctr-v1.10", "ctr-v1.9", "ctr-v2.0"], key=parse_version)
    ['ctr-v1.9', 'ctr-v1.10', 'ctr-v2.0']
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, get_args

from models.errors import RegistryError
from models.gate.decision import OUTCOMES, GateDecision
from models.learners.base import Model

Mode = Literal["stateful", "stateless", "manual", "cold_start"]
Status = Literal["candidate", "champion", "retired", "rejected"]
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
STATUSES: Final[tuple[Status, ...]] = get_args(Status)
DEFAULT_LINE: Final = "ctr"
SIGNATURE_SCHEME: Final = "hmac-sha256"
_VERSION = re.compile(r"^(?P<line>[a-z][a-z0-9_]*)-v(?P<major>\d{1,9})\.(?P<minor>\d{1,9})$")


@dataclass(frozen=True, order=True, slots=True)
class Version:
    """A parsed version name; orders by line, then major, then minor."""

    line: str
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.line}-v{self.major}.{self.minor}"


def parse_version(text: str) -> Version:
    """Parse ``<line>-v<major>.<minor>``.

    Raises:
        RegistryError: Not a version name.

    Example:
        >>> parse_version("ctr-v2.10")
        Version(line='ctr', major=2, minor=10)
    """
    match = _VERSION.match(text)
    if match is None:
        raise RegistryError(f"bad version name {text!r}: expected <line>-v<major>.<minor>")
    return Version(match["line"], int(match["major"]), int(match["minor"]))


def next_version(
    parent: str | None, mode: Mode, existing: Iterable[str] = (), line: str = DEFAULT_LINE
) -> str:
    """The name of a new version.

    Args:
        parent: The version it was trained from (None for one trained from scratch).
        mode: ``stateful`` bumps the minor within the parent's major; ``stateless``,
            ``manual`` and ``cold_start`` start the next major (v1.0 for the first one).
        existing: Every version already registered, so no name is ever reused.
        line: The model line, used when there is no parent.

    Raises:
        RegistryError: A stateful version without a parent, a bad name or an unknown mode.

    Example:
        >>> next_version(None, "cold_start")
        'ctr-v1.0'
        >>> next_version("ctr-v1.0", "stateful")
        'ctr-v1.1'
    """
    if mode not in MODES:
        raise RegistryError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    base = parse_version(parent) if parent is not None else None
    line = base.line if base is not None else line
    taken = [v for v in map(parse_version, existing) if v.line == line]
    if base is not None:
        taken.append(base)
    if mode == "stateful":
        if base is None:
            raise RegistryError("a stateful fine-tune needs a parent version")
        minor = max(v.minor for v in taken if v.major == base.major) + 1
        return str(Version(line, base.major, minor))
    major = max((v.major for v in taken), default=0) + 1
    return str(Version(line, major, 0))


@dataclass(frozen=True, slots=True)
class OffsetRange:
    """Offsets ``first..last`` (inclusive) of one topic-partition that a version learnt from."""

    topic: str
    partition: int
    first: int
    last: int

    def __post_init__(self) -> None:
        if not self.topic or self.partition < 0 or not 0 <= self.first <= self.last:
            raise RegistryError(f"bad offset range {self!r}")


@dataclass(frozen=True, slots=True)
class Lineage:
    """The data a version was trained on: offset ranges and the number of examples."""

    ranges: tuple[OffsetRange, ...] = ()
    n_examples: int = 0


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """What the stored artifact must be: its SHA-256 and size in bytes."""

    sha256: str
    size: int

    @classmethod
    def of(cls, blob: bytes) -> ArtifactRef:
        """Describe a blob.

        Example:
            >>> ArtifactRef.of(b"abc").size
            3
        """
        return cls(hashlib.sha256(blob).hexdigest(), len(blob))


@dataclass(frozen=True)
class ModelRecord:
    """Everything the registry knows about one version (the artifact itself is stored apart).

    Attributes:
        version: ``<line>-v<major>.<minor>``.
        model: The factory name of the learner (``fm``, ``logreg``, …).
        parent: The version it was fine-tuned or retrained from, None for the first.
        mode: ``stateful``, ``stateless``, ``manual`` or ``cold_start``.
        created_at: Epoch milliseconds.
        lineage: Kafka offset ranges and number of examples it learnt from.
        hyperparameters: ``model.describe()["hyperparams"]`` (JSON values).
        feature_spec_hash: SHA-256 of the feature spec (``feature_spec_hash``).
        gate: The latest gate decision about it, None before any.
        status: ``candidate``, ``champion``, ``retired`` or ``rejected``.
        artifact: SHA-256 and size of the saved model.
    """

    version: str
    model: str
    parent: str | None
    mode: Mode
    created_at: int
    lineage: Lineage
    hyperparameters: Mapping[str, Any]
    feature_spec_hash: str
    artifact: ArtifactRef
    gate: GateDecision | None = None
    status: Status = "candidate"

    def __post_init__(self) -> None:
        parse_version(self.version)
        if self.parent is not None:
            parse_version(self.parent)
        if self.mode not in MODES:
            raise RegistryError(f"{self.version}: unknown mode {self.mode!r}")
        if self.status not in STATUSES:
            raise RegistryError(f"{self.version}: unknown status {self.status!r}")

    @classmethod
    def for_model(
        cls,
        model: Model,
        blob: bytes,
        *,
        version: str,
        parent: str | None,
        mode: Mode,
        created_at: int,
        lineage: Lineage | None = None,
    ) -> ModelRecord:
        """A candidate record for ``model``, whose ``save()`` returned ``blob``."""
        described = model.describe()
        return cls(
            version=version,
            model=str(described["model"]),
            parent=parent,
            mode=mode,
            created_at=created_at,
            lineage=lineage or Lineage(),
            hyperparameters=dict(described["hyperparams"]),
            feature_spec_hash=feature_spec_hash(described["features"]["spec"]),
            artifact=ArtifactRef.of(blob),
        )

    def with_status(self, status: Status) -> ModelRecord:
        """A copy with another status."""
        return replace(self, status=status)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys); ``from_json`` reads it back equal."""
        return json.dumps(record_to_dict(self), sort_keys=True, separators=(",", ":"),
                          allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelRecord:
        """Parse ``to_json``'s output.

        Raises:
            RegistryError: Not JSON or a field is missing or invalid (named in the message).
        """
        try:
            return record_from_dict(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            raise RegistryError(f"unreadable model record: {exc!r}") from exc


def record_to_dict(record: ModelRecord) -> dict[str, Any]:
    """A record as JSON-ready values."""
    return {
        "version": record.version,
        "model": record.model,
        "parent": record.parent,
        "mode": record.mode,
        "created_at": record.created_at,
        "lineage": {
            "ranges": [
                {"topic": r.topic, "partition": r.partition, "first": r.first, "last": r.last}
                for r in record.lineage.ranges
            ],
            "n_examples": record.lineage.n_examples,
        },
        "hyperparameters": dict(record.hyperparameters),
        "feature_spec_hash": record.feature_spec_hash,
        "artifact": {"sha256": record.artifact.sha256, "size": record.artifact.size},
        "gate": None if record.gate is None else gate_to_dict(record.gate),
        "status": record.status,
    }


def record_from_dict(data: Mapping[str, Any]) -> ModelRecord:
    """Inverse of ``record_to_dict``; raises KeyError/TypeError/ValueError on bad input."""
    lineage = data["lineage"]
    return ModelRecord(
        version=str(data["version"]),
        model=str(data["model"]),
        parent=None if data["parent"] is None else str(data["parent"]),
        mode=data["mode"],
        created_at=int(data["created_at"]),
        lineage=Lineage(
            ranges=tuple(
                OffsetRange(str(r["topic"]), int(r["partition"]), int(r["first"]), int(r["last"]))
                for r in lineage["ranges"]
            ),
            n_examples=int(lineage["n_examples"]),
        ),
        hyperparameters=dict(data["hyperparameters"]),
        feature_spec_hash=str(data["feature_spec_hash"]),
        artifact=ArtifactRef(str(data["artifact"]["sha256"]), int(data["artifact"]["size"])),
        gate=None if data.get("gate") is None else gate_from_dict(data["gate"]),
        status=data["status"],
    )


def gate_to_dict(decision: GateDecision) -> dict[str, Any]:
    """A gate decision as JSON-ready values."""
    return {
        "outcome": decision.outcome,
        "reason": decision.reason,
        "rule": decision.rule,
        "figures": dict(decision.figures),
    }


def gate_from_dict(data: Mapping[str, Any]) -> GateDecision:
    """Inverse of ``gate_to_dict``."""
    outcome = data["outcome"]
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown gate outcome {outcome!r}")
    figures = {str(k): float(v) for k, v in dict(data["figures"]).items()}
    return GateDecision(outcome, str(data["reason"]), figures, str(data.get("rule", "")))


def feature_spec_hash(spec: Mapping[str, Any]) -> str:
    """SHA-256 of a feature spec's canonical JSON: equal specs, equal hashes.

    Example:
        >>> feature_spec_hash({"b": 1, "a": [1, 2]}) == feature_spec_hash({"a": [1, 2], "b": 1})
        True
    """
    text = json.dumps(dict(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def sign(blob: bytes, key: bytes, context: bytes = b"") -> str:
    """HMAC-SHA256 of ``context`` and ``blob`` under ``key``, as ``"hmac-sha256:<hex>"``.

    The registry passes the version name as ``context``, so a signed artifact cannot be
    replayed under another version's name.

    Example:
        >>> sig = sign(b"model bytes", b"secret", b"ctr-v1.0")
        >>> verify(b"model bytes", sig, b"secret", b"ctr-v1.0")
        True
        >>> verify(b"model bytes", sig, b"secret", b"ctr-v1.1")
        False
    """
    if not key:
        raise RegistryError("the signing key is empty")
    mac = hmac.new(key, struct.pack(">I", len(context)) + context, hashlib.sha256)
    mac.update(blob)
    return f"{SIGNATURE_SCHEME}:{mac.hexdigest()}"


def verify(blob: bytes, signature: str, key: bytes, context: bytes = b"") -> bool:
    """True when ``signature`` is ``sign(blob, key, context)`` (constant-time comparison).

    Example:
        >>> verify(b"x", "md5:abc", b"k")
        False
    """
    if not signature.startswith(f"{SIGNATURE_SCHEME}:"):
        return False
    return hmac.compare_digest(sign(blob, key, context), signature)


@dataclass(frozen=True, slots=True)
class ChampionChange:
    """One entry of the champion history: who became champion, instead of whom, and why."""

    action: Literal["promote", "rollback"]
    version: str
    previous: str | None
    reason: str
    at: int

    def to_json(self) -> str:
        """Compact JSON."""
        return json.dumps(
            {"action": self.action, "version": self.version, "previous": self.previous,
             "reason": self.reason, "at": self.at},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ChampionChange:
        """Parse ``to_json``'s output.

        Raises:
            RegistryError: Not a history entry.
        """
        try:
            d = json.loads(text)
            if d["action"] not in ("promote", "rollback"):
                raise ValueError(f"unknown action {d['action']!r}")
            return cls(d["action"], str(d["version"]), d["previous"], str(d["reason"]),
                       int(d["at"]))
        except (ValueError, TypeError, KeyError) as exc:
            raise RegistryError(f"unreadable champion history entry: {exc!r}") from exc


def artifacts_to_prune(
    stored: Sequence[tuple[str, int]], protected: Iterable[str], keep: int
) -> list[str]:
    """Which artifacts to delete so at most ``keep`` remain, oldest unprotected first.

    Args:
        stored: ``(version, created_at)`` of every version whose artifact is stored.
        protected: Versions never deleted (the champion and rollback targets); they count
            towards ``keep``.
        keep: Artifacts to keep at most (more only when more are protected).

    Example:
        >>> artifacts_to_prune([("a-v1.0", 1), ("a-v1.1", 2), ("a-v2.0", 3)], {"a-v1.0"}, 2)
        ['a-v1.1']
    """
    guarded = set(protected)
    excess = len(stored) - keep
    oldest_first = sorted(
        (item for item in stored if item[0] not in guarded),
        key=lambda item: (item[1], parse_version(item[0])),
    )
    return [version for version, _ in oldest_first[: max(excess, 0)]]


def check_promotable(record: ModelRecord, *, force: bool = False) -> None:
    """Refuse to promote a version the gate rejected, unless forced.

    Raises:
        RegistryError: The version is rejected and ``force`` is False.
    """
    if record.status == "rejected" and not force:
        why = f" ({record.gate.reason})" if record.gate else ""
        raise RegistryError(
            f"{record.version} was rejected{why}; promote it with force to override"
        )
