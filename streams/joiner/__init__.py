"""The natural-label joiner's pure core: predictions x behavioural events -> labeled examples.

``core.PartitionJoiner`` is the state machine (one per partition), ``policy.JoinPolicy`` its
configuration, ``state`` the changelogged records, ``output`` what a step emits,
``scenario`` a deterministic input generator with known expected outputs, and
``partitioning`` Kafka's default key->partition mapping. No Kafka, Faust or pydantic here
(``settings.from_settings`` is the one adapter-facing helper that reads ``JoinerSettings``).
"""

from __future__ import annotations

from streams.joiner.core import PartitionJoiner
from streams.joiner.output import LateLabel, Orphan, Output
from streams.joiner.policy import JoinerError, JoinPolicy
from streams.joiner.state import PartitionClock, Record

__all__ = [
    "JoinPolicy",
    "JoinerError",
    "LateLabel",
    "Orphan",
    "Output",
    "PartitionClock",
    "PartitionJoiner",
    "Record",
]
