"""Imports point one way: services → streams, models; streams → models; models → nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
OURS = {"services", "streams", "models", "config", "bench"}
ALLOWED = {
    "models": set(),
    "streams": {"models", "config"},
    "services": {"streams", "models", "config"},
    "config": set(),
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) - ALLOWED[package] - {package})
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_required_top_level_layout_exists() -> None:
    for name in ("services", "streams", "models", "config", "tests", "bench", ".ci/run",
                 "docker-compose.yml", "Makefile", "pyproject.toml", "README.md", "BENCHMARKS.md"):
        assert (ROOT / name).exists(), name
