"""Settings (``config.settings``) and the files operators load: Prometheus and Grafana.

The files ship inside the package (``pyproject.toml`` package data), so a wheel install finds
them where a clone does.

Example:
    >>> GRAFANA_DASHBOARD.is_file(), (PROMETHEUS_DIR / "alerts.yml").is_file()
    (True, True)
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

CONFIG_DIR: Final = Path(__file__).resolve().parent
DEFAULTS_YAML: Final = CONFIG_DIR / "defaults.yaml"
PROMETHEUS_DIR: Final = CONFIG_DIR / "prometheus"
GRAFANA_DIR: Final = CONFIG_DIR / "grafana"
GRAFANA_DASHBOARD: Final = GRAFANA_DIR / "dashboards" / "streamlearn.json"
