"""Benchmarks: ``python -m bench NAME --json``. Each entry takes ``quick`` and a console."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench import joiner, kafka, quality, replay, serving, trainer

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "joiner": joiner.run,
    "kafka": kafka.run,
    "quality": quality.run,
    "replay": replay.run,
    "serving": serving.run,
    "trainer": trainer.run,
}
