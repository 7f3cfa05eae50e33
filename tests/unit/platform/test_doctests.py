"""The examples in the platform modules' docstrings are tests too."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "config.settings",
    "streams.schemas",
    "streams.dlq",
    "streams.topics",
    "streams.joiner_metrics",
    "streams.joiner_app",
    "services.stack.kafka",
    "services.stack.redis",
    "bench.common",
    "bench.serving_costs",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no examples"
