"""The docstring examples of every module of every package run as part of the suite.

One runner walks the source tree, so a new module is covered the day it is added. Modules of
the pure cores must also *have* examples (``EXAMPLES_REQUIRED``): a helper there is explained
by running it.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("config", "models", "streams", "services", "bench")
# Packages every module of which (command-line entry points aside) carries an example.
EXAMPLES_REQUIRED = ("services.simulator", "models.training", "models.gate", "models.evaluation")


def modules() -> list[str]:
    """Every module of our packages, packages included, in a stable order."""
    names = []
    for top in PACKAGES:
        package = importlib.import_module(top)
        names.append(top)
        names += [m.name for m in pkgutil.walk_packages(package.__path__, f"{top}.")]
    return sorted(n for n in names if not n.endswith("__main__"))


@pytest.mark.parametrize("name", modules())
def test_docstring_examples_pass(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_the_pure_cores_explain_themselves_by_example() -> None:
    bare = [n for n in modules()
            if n.startswith(EXAMPLES_REQUIRED) and not n.endswith(".cli")
            and not hasattr(importlib.import_module(n), "__path__")  # a package's __init__
            and not doctest.testmod(importlib.import_module(n)).attempted]
    assert bare == []


def test_the_walk_reaches_nested_packages() -> None:
    found = modules()
    assert {"services.local.stack.kafka", "streams.joiner.worker.app",
            "models.training.loop", "config.settings"} <= set(found)
