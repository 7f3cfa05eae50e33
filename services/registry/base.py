"""The registry port: the ``Registry`` protocol, and registering a model through it.

``Registry`` declares what the rest of streamlearn asks of the model registry; the Redis
adapter (``services/registry/redis.py``, ``RedisRegistry``) implements it, as Quix Streams'
``state/rocksdb`` implements ``state/base``. Callers that only register, promote, read records
or load models take a ``Registry``; code that needs Redis itself (the champion watcher's
pub/sub, the trainer's state store on the same client) keeps the adapter.

``register`` is the one allocate-put-decision sequence (trainer, serving's cold start, the
manual retrain, the demo and the benchmarks all go through it); ``register_and_promote``
follows it with ``promote``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from models.errors import ChampionChangedError, RegistryError, VersionExistsError
from models.registry import ChampionChange, ModelRecord, next_version

if TYPE_CHECKING:
    from config.settings import RegistrySettings
    from models.gate.decision import GateDecision
    from models.learners.base import Model
    from models.registry import Lineage, Mode

# The protocol defines a ``list`` method, which would shadow the builtin in its annotations.
Records = list[ModelRecord]
Decisions = list[dict[str, Any]]
Changes = list[ChampionChange]
Names = list[str]

log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS: Final = 10


class Registry(Protocol):
    """Model versions, their signed artifacts and the champion pointer.

    Versions are registered as candidates (``put``), judged (``record_decision``, ``reject``)
    and made champion (``promote``, atomically, compare-and-set if asked); ``rollback`` undoes
    a change. Every method may also raise the store's own connection errors.
    """

    @property
    def cfg(self) -> RegistrySettings:
        """Key prefix, model line, retention and signing key."""
        ...

    @property
    def channel(self) -> str:
        """Where champion changes are announced (ChampionChange JSON)."""
        ...

    # -- records ---------------------------------------------------------------------------

    def put(self, record: ModelRecord, blob: bytes) -> ModelRecord:
        """Register a new candidate version and its artifact (signed by the registry).

        Raises:
            VersionExistsError: The version is already registered.
            RegistryError: The record does not describe ``blob``, or is not a candidate.
        """
        ...

    def get(self, version: str) -> ModelRecord:
        """The record of a version, with its status and last gate decision.

        Raises:
            RegistryError: Unknown version.
        """
        ...

    def list(self) -> Records:
        """Every registered version, newest first."""
        ...

    def next_version(self, parent: str | None, mode: Mode) -> str:
        """A version name not registered yet for a model trained from ``parent``."""
        ...

    def has_version(self, version: str) -> bool:
        """Whether a version is registered."""
        ...

    def has_artifact(self, version: str) -> bool:
        """Whether the version's artifact is still stored (retention prunes old ones)."""
        ...

    def record_decision(self, version: str, decision: GateDecision) -> ModelRecord:
        """Store a gate decision on a version and in the decisions log."""
        ...

    def reject(self, version: str, decision: GateDecision) -> ModelRecord:
        """Mark a candidate rejected by the gate, recording the decision.

        Raises:
            RegistryError: Unknown version, or it is the champion.
        """
        ...

    def decisions(self, limit: int = 20) -> Decisions:
        """The latest gate decisions, newest first: version, at (ms) and the decision."""
        ...

    # -- artifacts -------------------------------------------------------------------------

    def artifact(self, version: str) -> bytes:
        """The artifact's bytes, verified (size, SHA-256, signature).

        Raises:
            ArtifactError: Missing, pruned, incomplete, unsigned or tampered.
        """
        ...

    def load(self, version: str) -> Model:
        """The model of a version, loaded from verified bytes only.

        Raises:
            ArtifactError: See ``artifact``; also a signed blob that is not a model.
        """
        ...

    # -- the sanity set --------------------------------------------------------------------

    def request_sanity_refresh(self) -> int:
        """Ask the trainer for a new sanity set; returns the request's time (epoch ms)."""
        ...

    def sanity_refresh_requested(self) -> int | None:
        """The pending refresh request's time, None when there is none."""
        ...

    def clear_sanity_refresh(self, at: int) -> None:
        """Mark the request made at ``at`` done (a newer request stays pending)."""
        ...

    # -- the champion ----------------------------------------------------------------------

    def champion_version(self) -> str | None:
        """The champion's version, None before the first promotion (cheap: poll it)."""
        ...

    def champion(self) -> ModelRecord | None:
        """The champion's record, None before the first promotion."""
        ...

    def history(self, limit: int | None = None) -> Changes:
        """Champion changes, newest first."""
        ...

    def promote(
        self, version: str, reason: str, *, expected: str | None = ..., force: bool = False
    ) -> ModelRecord:
        """Make ``version`` the champion, atomically, and announce it on ``channel``.

        Promoting the current champion is a no-op; the previous one becomes ``retired``.

        Args:
            version: The version to promote.
            reason: Why (kept in the history and the announcement).
            expected: Compare-and-set: promote only if the champion is still this version
                (None: only if there is none yet). Left out: whatever the champion is.
            force: Promote even a version the gate rejected.

        Raises:
            ArtifactError: The artifact fails verification; the champion is unchanged.
            ChampionChangedError: ``expected`` is not the current champion.
            RegistryError: Unknown version, or rejected and not forced.
        """
        ...

    def rollback(self, reason: str = "manual rollback") -> ModelRecord:
        """Restore the previous champion; successive calls walk further back.

        Raises:
            RegistryError: No champion, or no previous one within reach.
            ArtifactError: The previous champion's artifact fails verification.
        """
        ...

    def prune(self) -> Names:
        """Delete the oldest artifacts beyond retention (never the champion's or the rollback
        stack's; records stay); returns the versions pruned."""
        ...


def register(
    registry: Registry,
    model: Model,
    *,
    parent: str | None,
    mode: Mode,
    now_ms: int,
    lineage: Lineage | None = None,
    decision: GateDecision | None = None,
    version: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> ModelRecord:
    """Register ``model`` as a new candidate version, with its artifact and gate decision.

    The version is allocated with ``registry.next_version(parent, mode)``. Another process
    may register the same name between that and ``put`` (the trainer and serving both
    cold-start; two trainers share a line): then a fresh name is allocated, up to
    ``attempts`` names in all.

    Args:
        registry: Where to register.
        model: The model; its ``save()`` bytes become the signed artifact.
        parent: The version it was fine-tuned or retrained from (None: from scratch).
        mode: How it was trained (``stateful``, ``stateless``, ``manual``, ``cold_start``).
        now_ms: Its ``created_at`` (epoch ms).
        lineage: The data it learnt from (empty when omitted).
        decision: A gate decision to record on it (a rejection is better recorded by
            ``registry.reject`` alone, which records it with the status change).
        version: Register under exactly this name instead: tried once, never replaced.
        attempts: How many allocated names to try (at least 1).

    Returns:
        The record as registered (with ``decision`` as its gate decision, if given).

    Raises:
        VersionExistsError: ``version`` is taken, or each of ``attempts`` allocated names
            was taken before it could be put.
        RegistryError: The registry refused the record (see ``Registry.put``).
    """
    blob = model.save()
    tries = 1 if version is not None else max(attempts, 1)
    for _ in range(tries):
        name = version if version is not None else registry.next_version(parent, mode)
        record = ModelRecord.for_model(model, blob, version=name, parent=parent, mode=mode,
                                       created_at=now_ms, lineage=lineage)
        try:
            registry.put(record, blob)
        except VersionExistsError:
            if version is not None:
                raise
            continue
        if decision is not None:
            return registry.record_decision(record.version, decision)
        return record
    raise VersionExistsError(
        f"could not allocate a {mode} version from {parent or 'scratch'} after {tries} "
        f"attempts: every name was taken meanwhile"
    )


class _Expected(enum.Enum):
    """``expected`` left out: promote over whatever the champion is (no compare-and-set)."""

    ANY = "any"


def register_and_promote(
    registry: Registry,
    model: Model,
    *,
    reason: str,
    parent: str | None,
    mode: Mode,
    now_ms: int,
    expected: str | None | _Expected = _Expected.ANY,
    force: bool = False,
    lineage: Lineage | None = None,
    decision: GateDecision | None = None,
    version: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> ModelRecord:
    """``register`` the model, then ``promote`` it: a deployed model, a cold start.

    If the promotion is refused, the version stays registered as a candidate.

    Args:
        registry: Where to register.
        model: The model to register and promote.
        reason: Why it becomes champion (kept in the history and the announcement).
        parent: See ``register``.
        mode: See ``register``.
        now_ms: See ``register``.
        expected: Compare-and-set: promote only if the champion is still this version (None:
            only if there is none yet). Left out: over whatever the champion is.
        force: Promote even if ``decision`` rejected it.
        lineage: See ``register``.
        decision: See ``register``.
        version: See ``register``.
        attempts: See ``register``.

    Returns:
        The record, now the champion.

    Raises:
        VersionExistsError: See ``register``.
        ChampionChangedError: ``expected`` is not the current champion.
        ArtifactError: The artifact fails verification; the champion is unchanged.
        RegistryError: The registry refused the record or the promotion.
    """
    record = register(registry, model, parent=parent, mode=mode, now_ms=now_ms,
                      lineage=lineage, decision=decision, version=version, attempts=attempts)
    if isinstance(expected, _Expected):
        return registry.promote(record.version, reason, force=force)
    return registry.promote(record.version, reason, expected=expected, force=force)


def ensure_champion(
    registry: Registry, build: Callable[[], Model], *, reason: str
) -> str:
    """The champion's version, registering and promoting a cold-start model if there is none.

    Safe to run concurrently with another process doing the same (serving and the trainer
    both cold-start): the version is registered at most once (``put`` refuses an existing name) and
    promoted only while there is still no champion (compare-and-set ``expected=None``). The
    loser of either race simply adopts the winner's champion.

    Args:
        registry: The model registry.
        build: Makes the untrained cold-start model (only called when one must be registered).
        reason: Kept in the champion history.

    Returns:
        The champion's version afterwards.

    Raises:
        RegistryError: The registry refused (e.g. Redis unreachable surfaces as RedisError).
    """
    current = registry.champion_version()
    if current is not None:
        return current
    first = next_version(None, "cold_start", line=registry.cfg.line)
    try:
        return _register_and_promote(registry, build, first, reason)
    except ChampionChangedError:
        pass
    except RegistryError as exc:
        # v1.0 exists but cannot become champion (rejected, pruned): cold-start a new major.
        log.warning("cannot promote %s as the cold-start champion (%s)", first, exc)
        if registry.champion_version() is None:
            fresh = registry.next_version(None, "cold_start")
            try:
                return _register_and_promote(registry, build, fresh, reason)
            except ChampionChangedError:
                pass
    version = registry.champion_version()
    if version is None:
        raise RegistryError("no champion after the cold start")
    return version


def _register_and_promote(
    registry: Registry, build: Callable[[], Model], version: str, reason: str
) -> str:
    # Not ``register_and_promote``: a version another process registered first is promoted
    # all the same, and then ``expected=None`` settles which cold start wins.
    if not registry.has_version(version):
        try:
            register(registry, build(), parent=None, mode="cold_start",
                     now_ms=int(time.time() * 1000), version=version)
            log.info("registered the cold-start model as %s", version)
        except VersionExistsError:
            log.info("%s was registered meanwhile by another process; promoting that", version)
    registry.promote(version, reason, expected=None)
    log.info("promoted %s as the first champion", version)
    return version
