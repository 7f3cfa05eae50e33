"""What the trainer must remember across restarts, as pure data: offsets, lineage, checkpoint.

No Kafka and no Redis here (``services/trainer/service.py`` moves these values in and out), so the
rules can be tested without a server:

* ``OffsetLedger`` follows, per partition of ``examples``, the next offset to read (what a
  restart resumes from) and the offset range the current challenger learnt from (its lineage).
* ``Checkpoint`` is everything a batch's outcome consists of — the challenger, the dedup ids,
  the offsets, the gate's evaluation window, the sanity set, the replay/window memory and the
  running totals — and its encoding as the fields of one Redis hash, written in one MULTI.
  Offsets are committed to Kafka only after that write, and a restarted trainer resumes from
  the checkpoint's offsets (not Kafka's), so an example is learnt once by the durable state
  even if the process died between two checkpoints.

Example:
    >>> ledger = OffsetLedger()
    >>> ledger.consumed(0, 7, trained=True); ledger.consumed(0, 8, trained=False)
    >>> ledger.consumed(2, 3, trained=True)
    >>> ledger.next_offsets, ledger.n_trained
    ({0: 9, 2: 4}, 2)
    >>> [(r.partition, r.first, r.last) for r in ledger.lineage("examples").ranges]
    [(0, 7, 7), (2, 3, 3)]
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import orjson

from models.registry import Lineage, OffsetRange
from models.training.loop import Learner
from models.training.policies import StatefulPolicy, StatelessPolicy, TrainingPolicy
from models.training.replay import Reservoir
from models.training.step import Evaluation, StepResult
from models.training.triggered import TriggeredPolicy
from services.errors import ServicesError
from streams.schemas import Example, parse_example

STATE_FORMAT: Final = 1
_ARRAYS: Final = (
    "champion_losses", "challenger_losses", "champion_scores", "challenger_scores", "labels",
)


class StateError(ServicesError):
    """A stored trainer state that cannot be read (corrupt, tampered or another format)."""


class OffsetLedger:
    """Next offsets to read and the offsets the current challenger learnt from."""

    def __init__(
        self,
        next_offsets: Mapping[int, int] | None = None,
        trained: Mapping[int, Sequence[int]] | None = None,
        n_trained: int = 0,
    ) -> None:
        self.next_offsets: dict[int, int] = dict(next_offsets or {})
        self._trained: dict[int, list[int]] = {p: list(r) for p, r in (trained or {}).items()}
        self.n_trained = n_trained

    def consumed(self, partition: int, offset: int, *, trained: bool) -> None:
        """One message is done with (learnt, or dropped as a duplicate or invalid)."""
        self.next_offsets[partition] = max(self.next_offsets.get(partition, 0), offset + 1)
        if not trained:
            return
        self.n_trained += 1
        span = self._trained.get(partition)
        if span is None:
            self._trained[partition] = [offset, offset]
        else:
            span[0], span[1] = min(span[0], offset), max(span[1], offset)

    def reset_lineage(self) -> None:
        """A new challenger starts: what earlier ones learnt is not its lineage."""
        self._trained.clear()
        self.n_trained = 0

    def lineage(self, topic: str) -> Lineage:
        """The current challenger's lineage for the registry."""
        ranges = tuple(
            OffsetRange(topic, p, first, last)
            for p, (first, last) in sorted(self._trained.items())
        )
        return Lineage(ranges, self.n_trained)

    def to_state(self) -> dict[str, Any]:
        """JSON-ready (partition numbers become strings)."""
        return {
            "next": {str(p): o for p, o in self.next_offsets.items()},
            "trained": {str(p): r for p, r in self._trained.items()},
            "n_trained": self.n_trained,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OffsetLedger:
        """Inverse of ``to_state``."""
        return cls(
            {int(p): int(o) for p, o in state["next"].items()},
            {int(p): [int(r[0]), int(r[1])] for p, r in state["trained"].items()},
            int(state["n_trained"]),
        )


@dataclass(frozen=True)
class Totals:
    """Durable running totals of one trainer (a restarted process continues them)."""

    batches: int = 0
    trained: int = 0
    duplicates: int = 0
    invalid: int = 0
    capped: int = 0
    decisions: int = 0


@dataclass
class Checkpoint:
    """Everything a restarted trainer resumes from (see the module docstring).

    Attributes:
        mode: ``stateful``, ``stateless`` or ``triggered``: a restart in another mode keeps
            only offsets, dedup ids and totals.
        champion: The champion version the challenger was compared with (its parent).
        challenger: The challenger's ``save()`` bytes.
        ledger: Offsets and lineage.
        seen: ``SeenIds.to_state()``.
        totals: Running totals.
        since_gate: Fresh examples since the last gate decision.
        evaluation: The gate window, as one ``StepResult`` (None: empty).
        sanity: The frozen sanity set (examples).
        memory: Stateless window or replay reservoir contents (examples).
        memory_seen: How many examples the replay reservoir had been offered.
        saved_at: Epoch ms of the write.
        policy_state: The policy's own counters (triggered mode: ``TriggeredPolicy.state``;
            its buffer is ``memory``). Absent from states written before it existed: {}.
    """

    mode: str
    champion: str
    challenger: bytes
    ledger: OffsetLedger
    seen: list[list[Any]]
    totals: Totals = field(default_factory=Totals)
    since_gate: int = 0
    evaluation: StepResult | None = None
    sanity: list[Example] = field(default_factory=list)
    memory: list[Example] = field(default_factory=list)
    memory_seen: int = 0
    saved_at: int = 0
    policy_state: dict[str, Any] = field(default_factory=dict)

    def to_fields(self) -> dict[str, bytes]:
        """The fields of the Redis hash (binary values, written together)."""
        meta = {
            "format": STATE_FORMAT,
            "mode": self.mode,
            "champion": self.champion,
            "ledger": self.ledger.to_state(),
            "totals": asdict(self.totals),
            "since_gate": self.since_gate,
            "memory_seen": self.memory_seen,
            "saved_at": self.saved_at,
            "policy_state": self.policy_state,
        }
        return {
            "meta": orjson.dumps(meta),
            "challenger": self.challenger,
            "seen": zlib.compress(orjson.dumps(self.seen), 1),
            "evaluation": encode_result(self.evaluation),
            "sanity": encode_examples(self.sanity),
            "memory": encode_examples(self.memory),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes]) -> Checkpoint:
        """Inverse of ``to_fields``.

        Raises:
            StateError: A field is missing or unreadable, or the format is another one.
        """
        get = {k.decode() if isinstance(k, bytes) else k: v for k, v in fields.items()}
        try:
            meta = orjson.loads(get["meta"])
            if meta.get("format") != STATE_FORMAT:
                raise StateError(f"trainer state format {meta.get('format')!r}, "
                                 f"expected {STATE_FORMAT}")
            return cls(
                mode=str(meta["mode"]),
                champion=str(meta["champion"]),
                challenger=bytes(get["challenger"]),
                ledger=OffsetLedger.from_state(meta["ledger"]),
                seen=orjson.loads(zlib.decompress(get["seen"])),
                totals=Totals(**meta["totals"]),
                since_gate=int(meta["since_gate"]),
                evaluation=decode_result(get["evaluation"]),
                sanity=decode_examples(get["sanity"]),
                memory=decode_examples(get["memory"]),
                memory_seen=int(meta["memory_seen"]),
                saved_at=int(meta["saved_at"]),
                policy_state=dict(meta.get("policy_state") or {}),
            )
        except StateError:
            raise
        except (KeyError, TypeError, ValueError, zlib.error, orjson.JSONDecodeError) as exc:
            raise StateError(f"unreadable trainer state: {exc!r}") from exc


def encode_examples(examples: Iterable[Example]) -> bytes:
    """Examples as zlib-compressed JSON.

    Example:
        >>> ex = Example("p1", 1_763_800_000_000, 1_763_800_000_500, 1, {"d": "tv"}, "m-v1.0",
        ...              "champion", 0.1)
        >>> decode_examples(encode_examples([ex])) == [ex]
        True
    """
    return zlib.compress(orjson.dumps(list(examples)), 1)


def decode_examples(raw: bytes) -> list[Example]:
    """Inverse of ``encode_examples`` (the strict parser checks every field again)."""
    return [parse_example(item) for item in orjson.loads(zlib.decompress(raw))]


def encode_result(result: StepResult | None) -> bytes:
    """The gate window's arrays as an ``.npz`` (no pickle); empty bytes for None."""
    if result is None or not result.n:
        return b""
    buffer = io.BytesIO()
    arrays = {name: getattr(result, name) for name in _ARRAYS}
    if result.propensities is not None:
        arrays["propensities"] = result.propensities
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode_result(raw: bytes) -> StepResult | None:
    """Inverse of ``encode_result``."""
    if not raw:
        return None
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        a, b, c, d, e = (np.array(data[name]) for name in _ARRAYS)
        p = np.array(data["propensities"]) if "propensities" in data.files else None
    return StepResult(a, b, c, d, e, propensities=p)


def window_of(evaluation: Evaluation) -> StepResult | None:
    """An evaluation window folded into one ``StepResult`` (what a checkpoint keeps)."""
    if not evaluation.n:
        return None
    p = evaluation.paired()
    return StepResult(p.champion_losses, p.challenger_losses, p.champion_scores,
                      p.challenger_scores, p.labels, propensities=p.propensities)


def checkpoint_of(learner: Learner, *, mode: str, champion: str, ledger: OffsetLedger,
                  seen: list[list[Any]], totals: Totals, saved_at: int) -> Checkpoint:
    """What of the decision loop a restart needs, with the service's own state: the
    challenger, the evaluation window, the sanity set, the gate cadence and what the policy
    holds besides its challenger (``resume`` is the inverse)."""
    policy = learner.policy
    memory, memory_seen = _policy_memory(policy)
    return Checkpoint(
        mode=mode, champion=champion, challenger=policy.challenger.save(), ledger=ledger,
        seen=seen, totals=totals, since_gate=learner.since_gate,
        evaluation=window_of(learner.evaluation),
        sanity=[e for e in learner.sanity if isinstance(e, Example)], memory=memory,
        memory_seen=memory_seen, saved_at=saved_at,
        policy_state=policy.state() if isinstance(policy, TriggeredPolicy) else {},
    )


def resume(learner: Learner, cp: Checkpoint, *, same_mode: bool, same_challenger: bool,
           seed: int, replay_capacity: int) -> None:
    """Put a checkpoint's loop state back into a freshly built ``learner``. The evaluation
    and the cadence only describe the checkpoint's challenger; the policy's memory only a
    policy of the same mode."""
    learner.sanity = list(cp.sanity[: learner.sanity_size])
    if same_challenger:
        learner.since_gate = cp.since_gate
        if cp.evaluation is not None:
            learner.evaluation.add(cp.evaluation)
    if same_mode:
        _restore_memory(learner.policy, cp, same_challenger, seed, replay_capacity)


def _policy_memory(policy: TrainingPolicy) -> tuple[list[Example], int]:
    """The triggered policy's buffer, the stateless window, or the stateful replay reservoir
    (with how much it saw)."""
    if isinstance(policy, TriggeredPolicy):
        return [e for e in policy.buffer if isinstance(e, Example)], 0
    if isinstance(policy, StatelessPolicy):
        return [e for e in policy.window if isinstance(e, Example)], 0
    if isinstance(policy, StatefulPolicy) and policy.reservoir is not None:
        items = [e for e in policy.reservoir.items if isinstance(e, Example)]
        return items, policy.reservoir.seen
    return [], 0


def _restore_memory(policy: TrainingPolicy, cp: Checkpoint, same_challenger: bool, seed: int,
                    replay_capacity: int) -> None:
    """Inverse of ``_policy_memory`` on a policy of the checkpoint's mode."""
    if isinstance(policy, TriggeredPolicy):
        policy.buffer.extend(cp.memory)
        policy.load_state(cp.policy_state)
        if not same_challenger:  # the champion changed meanwhile: a fresh replica
            policy.evidence = None
    elif isinstance(policy, StatelessPolicy):
        policy.window.extend(cp.memory)
    elif isinstance(policy, StatefulPolicy) and policy.reservoir is not None:
        # Reseeded by how much it saw: a restart draws differently but stays reproducible.
        pool: Reservoir[Any] = Reservoir(replay_capacity, seed + cp.memory_seen)
        pool.add(cp.memory)
        pool.seen = cp.memory_seen
        policy.reservoir = pool


@dataclass(frozen=True, slots=True)
class Received:
    """An example and where it came from."""

    example: Example
    partition: int
    offset: int

    @property
    def prediction_id(self) -> str:
        return self.example.prediction_id

    @property
    def ts_prediction(self) -> int:
        return self.example.ts_prediction

    @property
    def features(self) -> dict[str, Any]:
        return self.example.features

    @property
    def label(self) -> int:
        return self.example.label

    @property
    def ts_label(self) -> int:
        return self.example.ts_label


def durable_offsets(next_offsets: Mapping[int, int], held: Iterable[Received]) -> dict[int, int]:
    """Next offsets a restart may read from: not past an example still held for its cohort
    (it is read again then; what was learnt after it is a duplicate by id).

    Example:
        >>> e = Example("p", 0, 1, 0, {}, "ctr-v1.0", "champion", 0.5)
        >>> durable_offsets({0: 10, 1: 5}, [Received(e, 0, 7), Received(e, 0, 8)])
        {0: 7, 1: 5}
    """
    offsets = dict(next_offsets)
    for r in held:
        if r.offset < offsets.get(r.partition, r.offset + 1):
            offsets[r.partition] = r.offset
    return offsets
