"""Model artifacts in Redis: chunked, signed on write, verified before anyone may load them.

One hash per version, ``<prefix>artifact:<version>``::

    signature   "hmac-sha256:<hex>" over the version name and the bytes (models.registry.sign)
    size        bytes, informational (the record's ArtifactRef is what is checked)
    chunks      number of chunk fields
    chunk:<i>   the bytes, ``chunk_bytes`` at a time (4 MiB by default): no single command
                carries a whole large model, and one DEL removes it all

Reads check, in this order, that the artifact exists, is signed, is complete, has the size
and SHA-256 its record claims, and carries a valid HMAC for its version; each failure is an
``ArtifactError`` naming the version. Only then may the bytes reach ``models.load_model``.
"""

from __future__ import annotations

import hashlib

import redis
from redis.client import Pipeline

from models.errors import ArtifactError
from models.registry import ModelRecord, sign, verify


class ArtifactStore:
    """Writes and verified reads of artifacts under one key prefix.

    Args:
        prefix: Key prefix shared with the registry (``streamlearn:``).
        key: HMAC secret.
        chunk_bytes: Size of each stored chunk.
    """

    def __init__(self, prefix: str, key: bytes, chunk_bytes: int) -> None:
        self.prefix = prefix
        self._key = key
        self.chunk_bytes = chunk_bytes

    def key(self, version: str) -> str:
        """The Redis key of a version's artifact."""
        return f"{self.prefix}artifact:{version}"

    def queue_write(self, pipe: Pipeline, version: str, blob: bytes) -> None:
        """Queue the commands storing ``blob`` (signed) into a MULTI pipeline."""
        step = self.chunk_bytes
        chunks = [blob[i : i + step] for i in range(0, len(blob), step)] or [b""]
        key = self.key(version)
        pipe.delete(key)
        pipe.hset(key, mapping={
            "signature": sign(blob, self._key, version.encode()),
            "size": len(blob),
            "chunks": len(chunks),
        })
        for i, chunk in enumerate(chunks):
            pipe.hset(key, f"chunk:{i}", chunk)

    def read_verified(self, conn: redis.Redis | Pipeline, record: ModelRecord) -> bytes:
        """The artifact of ``record`` once size, SHA-256 and signature all check out.

        Raises:
            ArtifactError: Not stored (pruned), unsigned, incomplete, or failing a check.
        """
        version = record.version
        key = self.key(version)
        signature, chunks = conn.hmget(key, "signature", "chunks")
        if chunks is None:
            raise ArtifactError(f"artifact of {version} is not stored (pruned or never written)")
        if not signature:
            raise ArtifactError(f"artifact of {version} is unsigned; refusing to load it")
        parts = conn.hmget(key, [f"chunk:{i}" for i in range(int(chunks))])
        present = [part for part in parts if isinstance(part, bytes)]
        if len(present) != len(parts):
            raise ArtifactError(f"artifact of {version} is incomplete: chunk(s) missing")
        blob = b"".join(present)
        expected = record.artifact
        if len(blob) != expected.size:
            raise ArtifactError(
                f"artifact of {version} has {len(blob)} bytes, its record says {expected.size}"
            )
        if hashlib.sha256(blob).hexdigest() != expected.sha256:
            raise ArtifactError(f"artifact of {version} fails its SHA-256 check (corrupted)")
        text = signature.decode() if isinstance(signature, bytes) else str(signature)
        if not verify(blob, text, self._key, version.encode()):
            raise ArtifactError(
                f"artifact of {version} fails its HMAC signature check: tampered, or signed "
                "with another key; refusing to load it"
            )
        return blob
