"""The trainer's durable state in Redis: one checkpoint hash per trainer group, and a lease.

Keys, under the registry's prefix (``streamlearn:`` by default)::

    trainer:<group>:state   hash   a ``Checkpoint``'s fields + ``signature`` (HMAC of the
                                   challenger bytes, bound to this key)
    trainer:<group>:lock    string the owner's id, with a TTL: one trainer per state at a time

A checkpoint is written with one MULTI (DEL + HSET), so a reader sees the previous checkpoint
or the new one, never a mix. The challenger is signed with the registry's key because
``load_model`` unpickles river models: bytes from Redis are verified before they are loaded.
"""

from __future__ import annotations

import time
from typing import Final

import redis

from models.registry import sign, verify
from services.errors import ServicesError
from services.trainer.state import Checkpoint, StateError

# Extend the lease only if we still hold it; delete it only if it is ours.
_REFRESH: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE: Final = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LockError(ServicesError):
    """Another trainer holds (or took over) this group's state."""


class StateStore:
    """Checkpoints and the lease of one trainer group.

    Args:
        client: redis-py client with ``decode_responses=False``.
        prefix: Key prefix (the registry's).
        group: The trainer's group id.
        signing_key: HMAC key for the challenger bytes.
    """

    def __init__(self, client: redis.Redis, prefix: str, group: str, signing_key: bytes) -> None:
        self.client = client
        self.key = f"{prefix}trainer:{group}:state"
        self.lock_key = f"{prefix}trainer:{group}:lock"
        self._signing_key = signing_key

    def load(self) -> Checkpoint | None:
        """The last checkpoint, None if there is none.

        Raises:
            StateError: Unreadable, or the challenger's signature does not verify.
        """
        fields: dict[bytes, bytes] = self.client.hgetall(self.key)  # type: ignore[assignment]
        if not fields:
            return None
        checkpoint = Checkpoint.from_fields(fields)  # type: ignore[arg-type]
        signature = fields.get(b"signature", b"").decode()
        if not verify(checkpoint.challenger, signature, self._signing_key, self.key.encode()):
            raise StateError(f"the challenger in {self.key} fails its HMAC check; refusing it "
                             f"(delete the key to start over from the champion)")
        return checkpoint

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint atomically."""
        fields = checkpoint.to_fields()
        fields["signature"] = sign(checkpoint.challenger, self._signing_key,
                                   self.key.encode()).encode()
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            pipe.hset(self.key, mapping=fields)  # type: ignore[arg-type]
            pipe.execute()

    def clear(self) -> None:
        """Forget the checkpoint (the next start resumes from Kafka's committed offsets)."""
        self.client.delete(self.key)

    def acquire(self, owner: str, ttl_ms: int, wait_s: float) -> None:
        """Take the lease, waiting up to ``wait_s`` for a previous holder's to expire.

        Raises:
            LockError: Still held by someone else after ``wait_s``.
        """
        deadline = time.monotonic() + wait_s
        while not self.client.set(self.lock_key, owner, nx=True, px=ttl_ms):
            if time.monotonic() >= deadline:
                holder = self.client.get(self.lock_key)
                raise LockError(f"{self.lock_key} is held by {holder!r}: another trainer of "
                                "this group is running")
            time.sleep(0.2)

    def refresh(self, owner: str, ttl_ms: int) -> None:
        """Extend the lease.

        Raises:
            LockError: The lease expired and someone else took it.
        """
        if not self.client.eval(_REFRESH, 1, self.lock_key, owner, ttl_ms):
            raise LockError(f"lost the lease {self.lock_key}: another trainer took over")

    def release(self, owner: str) -> None:
        """Give the lease up (only if it is still ours)."""
        self.client.eval(_RELEASE, 1, self.lock_key, owner)
