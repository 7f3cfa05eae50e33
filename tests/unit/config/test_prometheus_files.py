"""The Prometheus files in config/prometheus are checked by promtool and against our metrics.

promtool (Debian's prometheus package, installed by `make system-deps`) validates the scrape
config and the rules and runs the rule unit tests. The other tests tie the files to the code:
every metric an alert names is one the processes register, every alert is tested on both sides,
and the scrape targets are the default ports of config/defaults.yaml.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.services.ops.helpers import ROOT, exported_names, promtool

PROM = ROOT / "config/prometheus"
SEVERITIES = {"critical", "warning", "info"}


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((PROM / name).read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load("alerts.yml")["groups"] for rule in group["rules"]]


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "config/prometheus/prometheus.yml"),
        ("check", "rules", "config/prometheus/alerts.yml"),
        ("test", "rules", "config/prometheus/alerts_test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_config_loads_the_alert_rules() -> None:
    # promtool check config also checks the rule files it names, so this keeps them checked.
    assert load("prometheus.yml")["rule_files"] == ["alerts.yml"]


def test_every_metric_an_alert_names_is_registered_by_our_code() -> None:
    samples, families = exported_names()
    assert "streamlearn_serving_request_duration_seconds_bucket" in samples  # the parse works
    for rule in alert_rules():
        in_expr = set(re.findall(r"\bstreamlearn_\w+", rule["expr"]))
        # Only a rule on Prometheus's own `up` may name none of ours.
        assert in_expr or re.search(r"\bup\{", rule["expr"]), f"{rule['alert']} names no metric"
        unknown = in_expr - samples
        assert not unknown, f"{rule['alert']} queries series no process exports: {unknown}"
        # The text may also name a histogram by its family name.
        text = " ".join(rule["annotations"].values())
        unknown = set(re.findall(r"\bstreamlearn_\w+", text)) - samples - families
        assert not unknown, f"{rule['alert']} describes metrics no process registers: {unknown}"


def test_every_alert_has_a_severity_and_text() -> None:
    rules = alert_rules()
    assert len(rules) >= 7
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in load("alerts_test.yml")["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fires == set(), "alerts no test fires"
    assert alerts - quiet == set(), "alerts no test expects to stay quiet"
    assert (fires | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_scrape_targets_are_the_default_ports() -> None:
    defaults = yaml.safe_load((ROOT / "config/defaults.yaml").read_text())
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in load("prometheus.yml")["scrape_configs"]
    }
    expected = {
        "streamlearn-serving": defaults["serving"]["port"],
        "streamlearn-joiner": defaults["joiner"]["metrics_port"],
        "streamlearn-trainer": defaults["trainer"]["metrics_port"],
    }
    for job, port in expected.items():
        assert [target.rsplit(":", 1)[1] for target in targets[job]] == [str(port)], job


def test_compose_mounts_the_rules_next_to_the_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {
        volume.split(":")[0]: volume.split(":")[1]
        for volume in compose["services"]["prometheus"]["volumes"]
        if volume.startswith("./")
    }
    assert mounts["./config/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./config/prometheus/alerts.yml"] == "/etc/prometheus/alerts.yml"
