"""The docstring examples of every streams.joiner module run as part of the suite."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import streams.joiner


def _modules() -> list[str]:
    package = streams.joiner
    return [package.__name__] + [
        m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    ]


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    # The doctests are part of the suite, not only of `pytest --doctest-modules`.
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
