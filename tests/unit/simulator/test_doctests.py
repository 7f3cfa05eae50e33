"""The docstring examples of every services.simulator module run as part of the suite."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import services.simulator


def _modules() -> list[str]:
    package = services.simulator
    return [package.__name__] + [
        m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    ]


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_every_module_has_examples() -> None:
    empty = [n for n in _modules()[1:]
             if not doctest.testmod(importlib.import_module(n)).attempted]
    assert empty == []
