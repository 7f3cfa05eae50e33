"""The Grafana dashboard in config/grafana is tied to the code and provisioned by docker-compose.

Every PromQL query of every panel names only metrics the metrics modules register (a rename
breaks this test, not the dashboard in front of ops), parses (promtool checks each one as a
recording rule), and the provisioning files agree with docker-compose.yml and the dashboard.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.services.ops.helpers import ROOT, exported_names, promtool

GRAFANA = ROOT / "config/grafana"
DASHBOARD = GRAFANA / "dashboards/streamlearn.json"
# Grafana's interval variables, replaced by a duration so the query parses as plain PromQL.
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__\w+\}")
# What ops must be able to see (issue 7), as the metric families a panel must query.
REQUIRED = {
    "request rate by route": "streamlearn_serving_requests_total",
    "latency by route": "streamlearn_serving_request_duration_seconds_bucket",
    "predictions by model version": "streamlearn_serving_predictions_total",
    "Kafka produce errors": "streamlearn_serving_produce_errors_total",
    "producer buffer fill": "streamlearn_serving_producer_buffer_fill_ratio",
    "joiner throughput": "streamlearn_joiner_examples_out_total",
    "joiner pending": "streamlearn_joiner_pending",
    "join coverage": "streamlearn_joiner_predictions_in_total",
    "prequential log loss": "streamlearn_trainer_prequential_logloss",
    "prequential AUC": "streamlearn_trainer_prequential_auc",
    "gate decisions": "streamlearn_trainer_gate_decisions_total",
    "champion version": "streamlearn_trainer_champion_info",
    "consumer lag": "streamlearn_trainer_consumer_lag_messages",
    "DLQ rate": "streamlearn_joiner_dlq_records_total",
    "promotions": "streamlearn_registry_promotions_total",
    "rollbacks": "streamlearn_registry_rollbacks_total",
    "feature drift": "streamlearn_drift_feature_score",
    "drift alarms": "streamlearn_drift_alarms_total",
    "trigger firings": "streamlearn_trainer_trigger_firings_total",
    "served score drift": "streamlearn_drift_prediction_score_psi",
    "log loss by slice": "streamlearn_trainer_slice_logloss",
    "calibration (observed CTR)": "streamlearn_trainer_slice_ctr",
    "calibration (predicted CTR)": "streamlearn_trainer_slice_predicted_ctr",
}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target."""
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def as_promql(expr: str) -> str:
    """A panel's query with Grafana's variables replaced.

    Example:
        >>> as_promql("rate(x_total[$__rate_interval]) + increase(y_total[$__range])")
        'rate(x_total[5m]) + increase(y_total[5m])'
    """
    return GRAFANA_VARIABLES.sub("5m", expr)


def test_every_query_names_only_metrics_the_code_registers() -> None:
    samples, _ = exported_names()
    named: set[str] = set()
    for title, expr in queries():
        in_expr = set(re.findall(r"\bstreamlearn_\w+", expr))
        assert in_expr, f"panel {title!r} queries none of our metrics: {expr}"
        unknown = in_expr - samples
        assert not unknown, f"panel {title!r} queries series no process exports: {unknown}"
        named |= in_expr
    missing = {what: name for what, name in REQUIRED.items() if name not in named}
    assert not missing, f"no panel shows {missing}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses a rule's expression: each query becomes a recording rule.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": as_promql(expr)}
        for i, (_, expr) in enumerate(queries())
    ]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries())} rules found" in result.stdout


def test_a_broken_query_fails_the_promql_check(tmp_path: Path) -> None:
    # The check above can fail: promtool refuses an unbalanced query.
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (route (rate(streamlearn_serving_requests_total[5m]))"},
    ]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_panels_are_laid_out_on_the_grid_without_overlap() -> None:
    data = dashboard()
    assert data["uid"] == "streamlearn"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for p in data["panels"]:
        pos = p["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, p["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
    for p in panels():
        assert p["targets"] and p["description"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_every_panel_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    assert [d["type"] for d in provisioned] == ["prometheus"]
    uid = provisioned[0]["uid"]
    for p in panels():
        assert p["datasource"] == {"type": "prometheus", "uid": uid}, p["title"]
        for target in p["targets"]:
            assert target["datasource"]["uid"] == uid, p["title"]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def mounts(service: str) -> dict[str, str]:
    volumes = compose()["services"][service]["volumes"]
    return {v.split(":")[0]: v.split(":")[1] for v in volumes if v.startswith("./")}


def test_compose_provisions_the_dashboard_and_the_datasource() -> None:
    grafana = mounts("grafana")
    assert grafana["./config/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (GRAFANA / "provisioning/dashboards/streamlearn.yml").read_text()
    )["providers"][0]
    assert grafana["./config/grafana/dashboards"] == provider["options"]["path"]
    # Grafana's datasource URL is where compose's Prometheus listens (both on the host network).
    services = compose()["services"]
    assert services["grafana"]["network_mode"] == services["prometheus"]["network_mode"] == "host"
    listen = next(a.split("=", 1)[1] for a in services["prometheus"]["command"]
                  if a.startswith("--web.listen-address="))
    url = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]["url"]
    assert url == f"http://{listen}"


def test_docker_compose_accepts_the_file() -> None:
    if shutil.which("docker-compose"):
        command = ["docker-compose"]
    elif shutil.which("docker"):
        command = ["docker", "compose"]
    else:
        pytest.fail("no compose client: run `make system-deps` (Debian's docker-compose)")
    result = subprocess.run(
        [*command, "-f", "docker-compose.yml", "config", "--quiet"], cwd=ROOT,
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
