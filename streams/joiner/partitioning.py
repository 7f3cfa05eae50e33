"""Kafka's default key -> partition mapping, so tests can predict where a key lands.

The Java producer and aiokafka (what Faust uses) hash keys with murmur2:
``toPositive(murmur2(key)) % n``; librdkafka (confluent-kafka) does the same only with
``partitioner=murmur2_random`` — its own default, ``consistent_random``, is CRC32 and puts keys
elsewhere. Producers of the data topics must agree, or a prediction and its events may land
in different partitions and never meet.

Example (vectors from Apache Kafka's ``UtilsTest.testMurmur2``):
    >>> murmur2(b"21"), murmur2(b"foobar"), murmur2(b"abc")
    (-973932308, -790332482, 479470107)
    >>> murmur2_partition(b"foobar", 3)
    0
"""

from __future__ import annotations

from typing import Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, as the signed int Java returns.

    Example:
        >>> murmur2(b"a-little-bit-longer-string")
        -1486304829
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK
    full = length & ~3
    for i in range(0, full, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    # Java's switch falls through: 3 bytes left mixes bytes 2, 1 and 0.
    if tail == 3:
        h ^= data[full + 2] << 16
    if tail >= 2:
        h ^= data[full + 1] << 8
    if tail >= 1:
        h ^= data[full]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java, aiokafka, librdkafka
    ``murmur2_random``) picks for a non-null ``key`` among ``partitions``.

    Example:
        >>> [murmur2_partition(k, 6) for k in (b"21", b"abc", b"foobar")]
        [0, 3, 0]
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
