"""A real Prometheus server scrapes the real processes (issue 7, "checked for real").

``streamlearn serve``, ``join`` and ``train`` run as subprocesses (the LoopStack of the
closed-loop tests) and Debian's ``prometheus`` runs on a free port with a temporary TSDB, with
config/prometheus/prometheus.yml's jobs and alert rules pointed at the test's ports. The test
serves a known number of predictions, promotes and rolls back through serving's admin API, and
reads every one of those counts back through Prometheus's HTTP query API. It also runs
``promtool check metrics`` on a live scrape of each process, every dashboard query against the
live server, and renders the dashboard's key panels.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from models.registry import ModelRecord
from services.ops import render as ops_render
from services.ops.prometheus import JOBS, local_prometheus
from services.registry.redis import RedisRegistry
from tests.integration.loop_helpers import LoopStack, World, wait_for

SIGNING_KEY = "prometheus-integration-key"
ADMIN_TOKEN = "prometheus-integration-admin"  # noqa: S105 - a test's own token
SETTINGS = {
    "STREAMLEARN_SERVING_ADMIN_TOKEN": ADMIN_TOKEN,
    "STREAMLEARN_SERVING_POLL_INTERVAL_S": "1",
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "2000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "1000",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "3000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
    "STREAMLEARN_TRAINER_MODEL": "fm",
    "STREAMLEARN_TRAINER_HASH_BITS": "14",
    "STREAMLEARN_TRAINER_BATCH_SIZE": "64",
    "STREAMLEARN_TRAINER_MAX_WAIT_MS": "300",
    "STREAMLEARN_TRAINER_CHAMPION_POLL_MS": "500",
}
REQUESTS = 10  # of 10 candidates each: 100 predictions served
SCRAPE_S = 1


@contextmanager
def prometheus_server(loop: LoopStack) -> Iterator[str]:
    """Debian's Prometheus with our scrape jobs and rules aimed at ``loop``'s ports."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: run `make system-deps` (Debian's prometheus)")
    ports = {"serving": loop.serving_port, "joiner": loop.joiner_metrics_port,
             "trainer": loop.trainer_metrics_port}
    with local_prometheus(ports, interval_s=SCRAPE_S) as url:
        yield url


def query(prom: httpx.Client, expr: str) -> list[dict[str, Any]]:
    """An instant query's result vector (fails on any error Prometheus reports)."""
    body = prom.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def value(prom: httpx.Client, expr: str) -> float | None:
    """The single value of an instant query; None while it has no result."""
    result = query(prom, expr)
    assert len(result) <= 1, f"{expr} has several series: {result}"
    return float(result[0]["value"][1]) if result else None


def reaches(prom: httpx.Client, expr: str, expected: float) -> bool:
    return value(prom, expr) == expected


def live_scrape(port: int, containing: str) -> str | None:
    """The text of a scrape of ``port`` once it contains ``containing``, else None."""
    body: bytes = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()  # noqa: S310
    text = body.decode()
    return text if containing in text else None


def register_copy_of_champion(registry: RedisRegistry) -> str:
    """A second version (the champion's model again) for the admin API to promote."""
    champion = registry.champion()
    assert champion is not None
    model = registry.load(champion.version)
    blob = model.save()
    version = registry.next_version(champion.version, "stateful")
    registry.put(ModelRecord.for_model(model, blob, version=version, parent=champion.version,
                                       mode="stateful", created_at=int(time.time() * 1000)), blob)
    return version


def test_prometheus_scrapes_the_processes_and_answers_with_their_metrics(
    loop: LoopStack, loop_registry: RedisRegistry, tmp_path: Path
) -> None:
    world = World(seed=7)
    loop.start("serve")  # before the trainer: it cold-starts ctr-v1.0, counted by serving
    loop.start("join")  # the joiner never touches the registry: it may start at once
    http = httpx.Client(base_url=loop.url, timeout=10.0)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        wait_for(lambda: _serving_ready(loop, http), 60, "serving to be ready", loop.logs)
        loop.start("train")
        with prometheus_server(loop) as url, httpx.Client(base_url=url, timeout=10.0) as prom:
            served = 0
            for _ in range(REQUESTS):
                body = world.request(per_category=2)
                response = http.post("/v1/predict", json=body)
                assert response.status_code == 200, response.text
                served += len(response.json()["predictions"])
                events = world.events(body, response.json(), int(time.time() * 1000))
                assert http.post("/v1/events", json={"events": events}).status_code == 202
            version = register_copy_of_champion(loop_registry)
            promoted = http.post(f"/v1/models/{version}/promote", headers=admin)
            assert promoted.status_code == 200, promoted.text
            rolled = http.post("/v1/models/rollback", headers=admin)
            assert rolled.status_code == 200, rolled.text
            refused = http.post("/v1/models/rollback", headers=admin)  # nothing further back
            assert refused.status_code == 409, refused.text

            # Every process is scraped, and serving's counts come back exactly.
            for job in JOBS.values():
                wait_for(lambda j=job: reaches(prom, f'up{{job="{j}"}}', 1.0), 60,
                         f"Prometheus to scrape {job}", loop.logs)
            s = f'job="{JOBS["serving"]}"'
            wait_for(lambda: reaches(
                prom, f"sum(streamlearn_serving_predictions_total{{{s}}})", served), 20,
                f"{served} predictions in Prometheus", loop.logs)
            expected = {
                f'sum(streamlearn_registry_promotions_total{{{s}, forced="false"}})': 2.0,
                f"sum(streamlearn_registry_rollbacks_total{{{s}}})": 1.0,
                f'sum(streamlearn_registry_change_failures_total{{{s}, action="rollback", '
                f'reason="refused"}})': 1.0,
                f'sum(streamlearn_serving_requests_total{{{s}, route="/v1/predict", '
                f'status="200"}})': float(REQUESTS),
            }
            for expr, want in expected.items():
                wait_for(lambda e=expr, w=want: reaches(prom, e, w), 20, f"{expr} == {want}",
                         lambda e=expr: f"{e} = {value(prom, e)}")
            # The trainer exposes the registry's counters too (it promotes through the gate).
            t = f'job="{JOBS["trainer"]}"'
            wait_for(lambda: value(prom, f"count(streamlearn_registry_promotions_total{{{t}}})"),
                     20, "the trainer's registry counters", loop.logs)
            wait_for(lambda: value(
                prom, f'sum(streamlearn_joiner_predictions_in_total{{job="{JOBS["joiner"]}"}})'),
                60, "the joiner to consume predictions", loop.logs)

            # promtool lints a live scrape of each process.
            for name, port, populated in (
                ("serving", loop.serving_port, 'streamlearn_serving_requests_total{route="'),
                ("joiner", loop.joiner_metrics_port, "streamlearn_joiner_pending{partition="),
                ("trainer", loop.trainer_metrics_port, "consumer_lag_messages{partition="),
            ):
                # Lint a scrape with labelled series in it, not only the empty families.
                text = wait_for(lambda p=port, s=populated: live_scrape(p, containing=s), 30,
                                f"{name} to export {populated}…", loop.logs)
                lint = subprocess.run(["promtool", "check", "metrics"], input=text,  # noqa: S607
                                      capture_output=True, text=True, check=False, timeout=60)
                assert lint.returncode == 0, f"{name}: {lint.stdout}{lint.stderr}"

            # Every dashboard query runs on the live server; the traffic shows up in the panels.
            for panel in ops_render.load_panels().values():
                for target in panel["targets"]:
                    query(prom, ops_render.promql(target["expr"], "10s", 300))
            drawn = ops_render.render(url, tmp_path / "dashboard.png", minutes=2,
                                      rate_interval="10s")
            assert (tmp_path / "dashboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            for title in ("Request rate by route and status",
                          "Predictions by model version and arm", "Joiner throughput"):
                assert drawn[title] > 0, f"{title} drew nothing: {drawn}"

            # The alert rules load and evaluate without errors against the real series.
            def evaluated() -> list[dict[str, Any]] | None:
                groups = prom.get("/api/v1/rules").json()["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                done = all(r["lastEvaluation"] > "2000" for r in rules)
                return rules if rules and done else None

            rules = wait_for(evaluated, 20, "the alert rules to be evaluated")
            assert [r["name"] for r in rules if r["health"] != "ok"] == [], rules
        loop.check_alive()
    finally:
        http.close()


def _serving_ready(loop: LoopStack, http: httpx.Client) -> bool:
    loop.check_alive()
    try:
        return http.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False
