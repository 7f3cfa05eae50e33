"""The model registry in Redis: records, signed artifacts, and an atomic champion pointer.

A thin adapter around ``models.registry`` (naming, records, signing and retention rules live
there). Keys, all under the configured prefix (``streamlearn:`` by default)::

    model:<version>     hash   record (JSON, as put), status, gate (JSON of the last decision)
    artifact:<version>  hash   signature, size, chunks, chunk:0 … (services/registry/artifacts.py)
    versions            zset   every version, scored by created_at (ms)
    artifacts           zset   versions whose artifact is still stored
    champion            string the champion's version: what serving loads
    champions           list   champion stack, newest first: what rollback pops
    history             list   ChampionChange JSON, newest first (bounded)
    decisions           list   gate decisions JSON, newest first (bounded)

and the pub/sub channel ``<prefix>champion``, which carries a ChampionChange JSON on every
promotion or rollback so serving can swap models without polling.

Every champion change is one WATCH/MULTI transaction: the artifact is verified (size,
SHA-256, HMAC) while its key, the pointer and the stack are watched, then statuses, pointer,
stack, history and the PUBLISH are queued and executed together. If anything watched changed
in between (another promotion, a prune, a tampered byte), the transaction is retried from the
top; a bad artifact raises ``ArtifactError`` and nothing moves.

Each promotion, rollback and rejection this object makes, and each one it refuses, is counted
in its ``RegistryMetrics`` (services/registry/metrics.py), which the process exposes.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Final, TypeVar

import redis
from redis.client import Pipeline

from config.settings import RedisSettings, RegistrySettings
from models.errors import (
    ArtifactError,
    BlobError,
    ChampionChangedError,
    RegistryError,
    VersionExistsError,
)
from models.gate.decision import GateDecision
from models.learners.base import Model, load_model
from models.registry import (
    STATUSES,
    ArtifactRef,
    ChampionChange,
    Mode,
    ModelRecord,
    Status,
    artifacts_to_prune,
    check_promotable,
    gate_from_dict,
    gate_to_dict,
    next_version,
    parse_version,
)
from services.registry.artifacts import ArtifactStore
from services.registry.metrics import RegistryMetrics

log = logging.getLogger(__name__)

T = TypeVar("T")
# The class defines a ``list`` method, which would shadow the builtin in its annotations.
Records = list[ModelRecord]
Decisions = list[dict[str, Any]]
Changes = list[ChampionChange]
Names = list[str]
_MAX_ATTEMPTS: Final = 100


class _Any:
    """Sentinel: promote whatever the current champion is."""

    def __repr__(self) -> str:
        return "ANY"


ANY: Final = _Any()


def connect(redis_settings: RedisSettings, registry_settings: RegistrySettings,
            metrics: RegistryMetrics | None = None) -> RedisRegistry:
    """A registry on a new client for the configured Redis URL.

    Args:
        redis_settings: Where Redis is.
        registry_settings: Prefix, retention and signing key.
        metrics: Where to count champion changes: built on the process's metrics registry
            so its ``/metrics`` exposes them (a private registry when omitted).
    """
    client = redis.Redis.from_url(redis_settings.url, socket_timeout=30.0)
    return RedisRegistry(client, registry_settings, metrics=metrics)


class RedisRegistry:
    """Model versions, their signed artifacts and the champion pointer, kept in Redis.

    Thread-safe: every call uses its own connection from the client's pool.

    Args:
        client: A redis-py client with ``decode_responses=False`` (artifacts are bytes).
        cfg: Key prefix, retention, chunk size and signing key.
        clock: Seconds since the epoch; injectable for tests.
        metrics: Counters of the champion changes made here (a private registry when
            omitted).
    """

    def __init__(
        self,
        client: redis.Redis,
        cfg: RegistrySettings,
        clock: Callable[[], float] = time.time,
        metrics: RegistryMetrics | None = None,
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise RegistryError("the registry needs a Redis client with decode_responses=False")
        self.client = client
        self.cfg = cfg
        self._clock = clock
        self.metrics = metrics or RegistryMetrics()
        self.artifacts = ArtifactStore(
            cfg.prefix, cfg.signing_key.get_secret_value().encode(), cfg.chunk_bytes
        )
        if cfg.uses_dev_key:
            log.warning("registry artifacts are signed with the public development key; "
                        "set STREAMLEARN_REGISTRY_SIGNING_KEY")

    # -- keys ------------------------------------------------------------------------------

    @property
    def channel(self) -> str:
        """The pub/sub channel announcing champion changes (ChampionChange JSON)."""
        return f"{self.cfg.prefix}champion"

    def _k(self, *parts: str) -> str:
        return self.cfg.prefix + ":".join(parts)

    # -- records ---------------------------------------------------------------------------

    def put(self, record: ModelRecord, blob: bytes) -> ModelRecord:
        """Register a new candidate version and its artifact (signed here), then prune.

        Raises:
            VersionExistsError: The version is already registered.
            RegistryError: The record does not describe ``blob``, or is not a candidate.
        """
        if record.artifact != ArtifactRef.of(blob):
            raise RegistryError(f"{record.version}: record.artifact does not describe the blob")
        if record.status != "candidate":
            raise RegistryError(f"{record.version}: put a candidate, then promote it")
        model_key = self._k("model", record.version)

        def write(pipe: Pipeline) -> None:
            if pipe.exists(model_key):
                raise VersionExistsError(f"version {record.version} is already registered")
            pipe.multi()
            self.artifacts.queue_write(pipe, record.version, blob)
            pipe.hset(model_key, mapping={"record": record.to_json(), "status": record.status})
            pipe.zadd(self._k("versions"), {record.version: record.created_at})
            pipe.zadd(self._k("artifacts"), {record.version: record.created_at})

        self._transact(write, model_key)
        self.prune()
        return record

    def get(self, version: str) -> ModelRecord:
        """The record of a version, with its current status and last gate decision.

        Raises:
            RegistryError: Unknown version.
        """
        return self._read_record(self.client, version)

    def list(self) -> Records:
        """Every registered version, newest first."""
        names = _texts(self.client.zrange(self._k("versions"), 0, -1))
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(self._k("model", name), "record", "status", "gate")
            rows = pipe.execute()
        records = [self._parse(n, row) for n, row in zip(names, rows, strict=True) if row[0]]
        return sorted(records, key=lambda r: (r.created_at, parse_version(r.version)),
                      reverse=True)

    def next_version(self, parent: str | None, mode: Mode) -> str:
        """A fresh version name for a model trained from ``parent`` (see ``next_version``)."""
        existing = _texts(self.client.zrange(self._k("versions"), 0, -1))
        return next_version(parent, mode, existing, line=self.cfg.line)

    def has_version(self, version: str) -> bool:
        """Whether a version is registered (one ZSCORE; cheaper than ``get``)."""
        return self.client.zscore(self._k("versions"), version) is not None

    def has_artifact(self, version: str) -> bool:
        """Whether the artifact is still stored (retention may have pruned it)."""
        return self.client.zscore(self._k("artifacts"), version) is not None

    def record_decision(self, version: str, decision: GateDecision) -> ModelRecord:
        """Store a gate decision on a version (its latest) and in the decisions log."""
        return self._decide(version, decision, reject=False)

    def reject(self, version: str, decision: GateDecision) -> ModelRecord:
        """Mark a candidate rejected by the gate, recording the decision.

        Raises:
            RegistryError: Unknown version, or it is the champion (roll back first).
        """
        record = self._decide(version, decision, reject=True)
        self.metrics.rejected(decision.rule)
        return record

    def decisions(self, limit: int = 20) -> Decisions:
        """The latest gate decisions, newest first: version, at (ms) and the decision."""
        raw = self.client.lrange(self._k("decisions"), 0, limit - 1)
        return [json.loads(item) for item in raw]

    # -- artifacts -------------------------------------------------------------------------

    def artifact(self, version: str) -> bytes:
        """The artifact's bytes after checking size, SHA-256 and HMAC signature.

        Raises:
            ArtifactError: Missing, pruned, incomplete, unsigned or tampered (names the
                version and what failed).
        """
        return self.artifacts.read_verified(self.client, self.get(version))

    def load(self, version: str) -> Model:
        """The model of a version; ``load_model`` only ever sees verified bytes.

        Raises:
            ArtifactError: See ``artifact``; also a signed blob that is not a model.
        """
        blob = self.artifact(version)
        try:
            return load_model(blob)
        except BlobError as exc:
            raise ArtifactError(f"artifact of {version} is signed but unreadable: {exc}") from exc

    # -- the champion ----------------------------------------------------------------------

    def request_sanity_refresh(self) -> int:
        """Ask the trainer to freeze a new sanity set from the examples it sees next.

        Returns:
            The request's time (epoch ms), which the trainer reports when it acts on it.
        """
        at = self._now_ms()
        self.client.set(self._k("sanity-refresh"), str(at))
        return at

    def sanity_refresh_requested(self) -> int | None:
        """The pending refresh request's time, None when there is none (one GET)."""
        raw = _text(self.client.get(self._k("sanity-refresh")))
        return None if raw is None else int(raw)

    def clear_sanity_refresh(self, at: int) -> None:
        """Mark the request made at ``at`` done (a newer request stays pending)."""
        key = self._k("sanity-refresh")

        def clear(pipe: Pipeline) -> None:
            if _text(pipe.get(key)) == str(at):
                pipe.multi()
                pipe.delete(key)

        self._transact(clear, key)

    def champion_version(self) -> str | None:
        """The champion's version (one GET: cheap enough for a serving poll loop)."""
        return _text(self.client.get(self._k("champion")))

    def champion(self) -> ModelRecord | None:
        """The champion's record, None before the first promotion."""
        version = self.champion_version()
        return None if version is None else self.get(version)

    def history(self, limit: int | None = None) -> Changes:
        """Champion changes, newest first."""
        end = -1 if limit is None else limit - 1
        raw = self.client.lrange(self._k("history"), 0, end)
        return [ChampionChange.from_json(x) for x in raw]

    def promote(
        self, version: str, reason: str, *, expected: str | None | _Any = ANY, force: bool = False
    ) -> ModelRecord:
        """Make ``version`` the champion, atomically, and announce it on ``channel``.

        The old champion becomes ``retired``. Promoting the current champion is a no-op.

        Args:
            version: The version to promote.
            reason: Why (kept in the history and the announcement).
            expected: Compare-and-set: promote only if the champion is still this version
                (None: only if there is no champion yet). ``ANY`` skips the check.
            force: Promote even a version the gate rejected.

        Raises:
            ArtifactError: The artifact fails verification; the champion is unchanged.
            ChampionChangedError: ``expected`` is not the current champion.
            RegistryError: Unknown version, or rejected and not forced.
        """
        watched = (self._k("champion"), self._k("champions"), self._k("model", version),
                   self._k("artifact", version))
        # Set by the attempt that executes: whether it moved the champion, and past a rejection.
        moved: dict[str, bool] = {}

        def move(pipe: Pipeline) -> ModelRecord:
            moved.clear()
            current = _text(pipe.get(self._k("champion")))
            if not isinstance(expected, _Any) and current != expected:
                raise ChampionChangedError(
                    f"champion is {current or 'none'}, expected {expected or 'none'}; "
                    f"{version} not promoted"
                )
            record = self._read_record(pipe, version)
            if current == version:
                return record
            check_promotable(record, force=force)
            self.artifacts.read_verified(pipe, record)
            moved["forced"] = record.status == "rejected"
            change = ChampionChange("promote", version, current, reason, self._now_ms())
            pipe.multi()
            self._queue_change(pipe, change)
            pipe.lpush(self._k("champions"), version)
            pipe.ltrim(self._k("champions"), 0, self.cfg.rollback_depth)
            return record.with_status("champion")

        promoted = self._counting("promote", move, *watched)
        if moved:
            self.metrics.promoted(forced=moved["forced"])
        return promoted

    def rollback(self, reason: str = "manual rollback") -> ModelRecord:
        """Restore the previous champion (undoing the last promotion or rollback-able change).

        Successive calls walk further back, up to ``rollback_depth`` changes.

        Raises:
            RegistryError: No champion, or no previous one within reach.
            ArtifactError: The previous champion's artifact fails verification; nothing moves.
        """

        def back(pipe: Pipeline) -> ModelRecord:
            current = _text(pipe.get(self._k("champion")))
            stack = _texts(pipe.lrange(self._k("champions"), 0, 1))
            if current is None:
                raise RegistryError("no champion to roll back")
            if len(stack) < 2 or stack[0] != current:
                raise RegistryError(f"no previous champion to roll back to from {current}")
            target = stack[1]
            pipe.watch(self._k("model", target), self._k("artifact", target))
            record = self._read_record(pipe, target)
            self.artifacts.read_verified(pipe, record)
            change = ChampionChange("rollback", target, current, reason, self._now_ms())
            pipe.multi()
            self._queue_change(pipe, change)
            pipe.lpop(self._k("champions"))
            return record.with_status("champion")

        record = self._counting("rollback", back, self._k("champion"), self._k("champions"))
        self.metrics.rolled_back()
        return record

    def prune(self) -> Names:
        """Delete the oldest artifacts beyond ``max_versions`` (records stay).

        The champion and the rollback stack are never pruned. Returns the versions pruned.
        """

        def drop(pipe: Pipeline) -> Names:
            rows: list[tuple[bytes, float]] = pipe.zrange(  # type: ignore[assignment]
                self._k("artifacts"), 0, -1, withscores=True
            )
            stored = [(str(_text(v)), int(score)) for v, score in rows]
            protected = set(_texts(pipe.lrange(self._k("champions"), 0, -1)))
            champion = _text(pipe.get(self._k("champion")))
            if champion is not None:
                protected.add(champion)
            doomed = artifacts_to_prune(stored, protected, self.cfg.max_versions)
            if doomed:
                pipe.multi()
                pipe.delete(*(self._k("artifact", v) for v in doomed))
                pipe.zrem(self._k("artifacts"), *doomed)
            return doomed

        pruned = self._transact(drop, self._k("artifacts"), self._k("champion"),
                                self._k("champions"))
        if pruned:
            log.info("pruned artifacts of %s", ", ".join(pruned))
        return pruned

    # -- internals -------------------------------------------------------------------------

    def _queue_change(self, pipe: Pipeline, change: ChampionChange) -> None:
        if change.previous is not None:
            pipe.hset(self._k("model", change.previous), "status", "retired")
        pipe.hset(self._k("model", change.version), "status", "champion")
        pipe.set(self._k("champion"), change.version)
        pipe.lpush(self._k("history"), change.to_json())
        pipe.ltrim(self._k("history"), 0, self.cfg.max_history - 1)
        pipe.publish(self.channel, change.to_json())

    def _counting(self, action: str, func: Callable[[Pipeline], T], *watches: str) -> T:
        """``_transact``, counting a refusal by why (most specific error class first)."""
        try:
            return self._transact(func, *watches)
        except ArtifactError:
            self.metrics.failed(action, "artifact")
            raise
        except ChampionChangedError:
            self.metrics.failed(action, "champion_changed")
            raise
        except RegistryError:
            self.metrics.failed(action, "refused")
            raise

    def _decide(self, version: str, decision: GateDecision, *, reject: bool) -> ModelRecord:
        model_key = self._k("model", version)
        entry = json.dumps({"version": version, "at": self._now_ms(), **gate_to_dict(decision)},
                           allow_nan=False)

        def write(pipe: Pipeline) -> ModelRecord:
            record = self._read_record(pipe, version)
            if reject and record.status == "champion":
                raise RegistryError(f"{version} is the champion; roll back before rejecting it")
            pipe.multi()
            pipe.hset(model_key, "gate", json.dumps(gate_to_dict(decision), allow_nan=False))
            if reject:
                pipe.hset(model_key, "status", "rejected")
            pipe.lpush(self._k("decisions"), entry)
            pipe.ltrim(self._k("decisions"), 0, self.cfg.max_history - 1)
            return record
        record = self._transact(write, model_key)
        return replace(record, gate=decision, status="rejected" if reject else record.status)

    def _read_record(self, conn: redis.Redis | Pipeline, version: str) -> ModelRecord:
        row = conn.hmget(self._k("model", version), "record", "status", "gate")
        if not row[0]:
            raise RegistryError(f"unknown version {version}")
        return self._parse(version, row)

    @staticmethod
    def _parse(version: str, row: Sequence[bytes | str | None]) -> ModelRecord:
        raw, status, gate = row
        record = ModelRecord.from_json(raw or b"")
        if record.version != version:
            raise RegistryError(f"the record stored under {version} is {record.version}'s")
        record = replace(record, status=_status(status, record.status))
        if gate:
            record = replace(record, gate=gate_from_dict(json.loads(gate)))
        return record

    def _transact(self, func: Callable[[Pipeline], T], *watches: str) -> T:
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_ATTEMPTS):
                try:
                    pipe.watch(*watches)
                    value = func(pipe)
                    pipe.execute()
                    return value
                except redis.WatchError:
                    continue
                finally:
                    pipe.reset()
        raise RegistryError(f"gave up after {_MAX_ATTEMPTS} conflicting concurrent updates")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _text(raw: bytes | str | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def _texts(raws: Iterable[Any]) -> list[str]:
    return [raw.decode() if isinstance(raw, bytes) else raw for raw in raws]


def _status(raw: bytes | str | None, default: Status) -> Status:
    text = _text(raw)
    for status in STATUSES:
        if text == status:
            return status
    return default
