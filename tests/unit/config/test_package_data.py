"""A wheel install has the files operators load: every data file under config/ is package data
(pyproject.toml), so Prometheus, Grafana and the YAML defaults ship with the code."""

from __future__ import annotations

import tomllib

from config import GRAFANA_DASHBOARD, PROMETHEUS_DIR
from tests.paths import ROOT


def test_every_config_file_is_package_data() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["config"]
    config = ROOT / "config"
    files = [p.relative_to(config).as_posix() for p in config.rglob("*")
             if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert files, "config/ holds data files"
    shipped = {p.relative_to(config).as_posix() for pat in patterns for p in config.glob(pat)}
    assert sorted(set(files) - shipped) == []


def test_the_code_finds_them_through_the_package() -> None:
    assert GRAFANA_DASHBOARD.is_relative_to(ROOT / "config") and GRAFANA_DASHBOARD.is_file()
    assert {p.name for p in PROMETHEUS_DIR.iterdir()} >= {"alerts.yml", "prometheus.yml"}
