"""One exception tree: every error our code defines descends from ``StreamlearnError``.

Each package has one family root in its ``errors`` module (``ConfigError`` is config's own);
the members live beside the code that raises them. The walk imports every module of every
package, so an exception added tomorrow is checked the day it is added.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

from config.errors import ConfigError, StreamlearnError
from tests.paths import ROOT

PACKAGES = ("config", "models", "streams", "services")
# The family root of each package, by its import path.
FAMILIES = {
    "config": "config.errors.ConfigError",
    "models": "models.errors.ModelError",
    "streams": "streams.errors.StreamsError",
    "services": "services.errors.ServicesError",
}
# Exceptions of ours allowed outside the tree, and why. Empty: keep it that way if you can.
OUTSIDE_THE_TREE: dict[str, str] = {}


def _modules(top: str) -> list[ModuleType]:
    package = importlib.import_module(top)
    names = [top] + [m.name for m in pkgutil.walk_packages(package.__path__, f"{top}.")]
    return [importlib.import_module(n) for n in sorted(names) if not n.endswith("__main__")]


def our_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined (not merely imported) in our packages, by import path."""
    found: dict[str, type[BaseException]] = {}
    for top in PACKAGES:
        for module in _modules(top):
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__.split(".")[0] in PACKAGES:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return found


def _family(path: str) -> type[BaseException]:
    module, name = path.rsplit(".", 1)
    cls: type[BaseException] = getattr(importlib.import_module(module), name)
    return cls


def test_the_walk_finds_the_exceptions_of_every_package() -> None:
    found = our_exceptions()
    assert {"config.errors.ConfigError", "models.errors.ArtifactError",
            "streams.joiner.scenario.model.ScenarioError", "streams.schemas._Invalid",
            "services.local.stack.process.StackError"} <= set(found)


def test_every_exception_of_ours_descends_from_the_root() -> None:
    outside = sorted(path for path, cls in our_exceptions().items()
                     if not issubclass(cls, StreamlearnError) and path not in OUTSIDE_THE_TREE)
    assert outside == []


def test_every_exception_belongs_to_its_packages_family() -> None:
    wrong = sorted(path for path, cls in our_exceptions().items()
                   if cls is not StreamlearnError
                   and not issubclass(cls, _family(FAMILIES[path.split(".")[0]])))
    assert wrong == []


@pytest.mark.parametrize("top", PACKAGES)
def test_each_package_has_one_family_root(top: str) -> None:
    root = _family(FAMILIES[top])
    assert root.__module__ == f"{top}.errors"
    assert StreamlearnError in root.__bases__


@pytest.mark.parametrize("top", ["streams", "services"])
def test_the_family_roots_docstring_names_every_public_member(top: str) -> None:
    """The members live beside their code; the root's docstring is where the tree is read."""
    root = _family(FAMILIES[top])
    doc = inspect.getdoc(importlib.import_module(root.__module__)) or ""
    missing = sorted(path for path, cls in our_exceptions().items()
                     if issubclass(cls, root) and cls is not root
                     and not cls.__name__.startswith("_") and path not in doc)
    assert missing == []


def test_value_error_bases_stay_for_callers_that_catch_value_error() -> None:
    from models.errors import BatchError, GateError, HyperparameterError
    from services.serving.scoring import FeatureLimitError
    from services.simulator.report import ReportError

    for cls in (HyperparameterError, BatchError, GateError, FeatureLimitError, ReportError):
        assert issubclass(cls, ValueError), cls


def test_config_error_is_still_importable_from_the_settings() -> None:
    from config import settings

    assert settings.ConfigError is ConfigError


def test_models_imports_nothing_from_config_but_its_errors() -> None:
    """models sits on config only for the exception root; settings stay out of the core."""
    wrong = []
    for path in sorted((ROOT / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] if node.module != "config" else \
                    [f"config.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            wrong += [f"{path.relative_to(ROOT)}: {n}" for n in names
                      if n.split(".")[0] == "config" and n != "config.errors"]
    assert wrong == []
