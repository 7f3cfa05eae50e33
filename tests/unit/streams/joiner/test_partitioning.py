"""Kafka's default partitioner, reproduced so tests can predict where a key lands."""

from __future__ import annotations

import random

import pytest

from streams.joiner.partitioning import murmur2, murmur2_partition

# Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2).
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS.items())
def test_murmur2_matches_kafkas_own_vectors(key, expected):
    assert murmur2(key) == expected


def test_partition_matches_aiokafka_the_client_faust_uses():
    partitioner = pytest.importorskip("aiokafka.partitioner").DefaultPartitioner()
    rng = random.Random(0)
    for _ in range(3_000):
        key = rng.randbytes(rng.randrange(0, 48))
        partitions = list(range(rng.randrange(1, 64)))
        assert murmur2_partition(key, len(partitions)) == partitioner(key, partitions, partitions)


def test_partition_count_must_be_positive():
    with pytest.raises(ValueError, match="partitions"):
        murmur2_partition(b"k", 0)
