"""The ops tools' pure parts: the Prometheus config they derive, the dashboard queries they run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config import PROMETHEUS_DIR
from services.ops import render as ops_render
from services.ops.prometheus import JOBS, PrometheusError, scrape_config
from tests.unit.services.ops.helpers import promtool


def test_the_derived_config_aims_our_jobs_at_the_given_ports_and_promtool_accepts_it(
    tmp_path: Path,
) -> None:
    config = scrape_config({"serving": 18000, "joiner": 19101, "trainer": 19102}, 0.5)
    assert config["global"]["scrape_interval"] == "500ms"
    assert config["rule_files"] == ["alerts.yml"]
    targets = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert targets == {
        JOBS["serving"]: [{"targets": ["127.0.0.1:18000"]}],
        JOBS["joiner"]: [{"targets": ["127.0.0.1:19101"]}],
        JOBS["trainer"]: [{"targets": ["127.0.0.1:19102"]}],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "alerts.yml").write_text(
        (PROMETHEUS_DIR / "alerts.yml").read_text())
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_subset_of_processes_keeps_only_their_jobs() -> None:
    config = scrape_config({"serving": 18000}, 1)
    assert [job["job_name"] for job in config["scrape_configs"]] == [JOBS["serving"]]
    assert scrape_config({}, 1)["scrape_configs"] == []


def test_an_unknown_process_is_ignored_and_a_lost_job_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    assert scrape_config({"simulator": 1}, 1)["scrape_configs"] == []
    trimmed = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    trimmed["scrape_configs"] = [j for j in trimmed["scrape_configs"]
                                 if j["job_name"] != JOBS["joiner"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(trimmed))
    monkeypatch.setattr("services.ops.prometheus.PROM_CONFIG", tmp_path)
    with pytest.raises(PrometheusError, match="lacks a job"):
        scrape_config({"joiner": 19101}, 1)


def test_the_key_panels_are_on_the_dashboard() -> None:
    panels = ops_render.load_panels()
    assert set(ops_render.KEY_PANELS) <= set(panels)
    for title in ops_render.KEY_PANELS:
        assert panels[title]["type"] == "timeseries", title


def test_render_refuses_a_panel_the_dashboard_does_not_have(tmp_path: Path
                                                            ) -> None:
    with pytest.raises(ops_render.RenderError, match="not on the dashboard"):
        ops_render.render("http://127.0.0.1:9", tmp_path / "x.png",
                          titles=["No such panel"])
