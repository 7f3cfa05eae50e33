"""A throwaway Prometheus server (Debian's ``prometheus``) scraping streamlearn processes.

The scrape jobs and alert rules are config/prometheus's own; only the targets (the ports the
processes were given) and the intervals change. The TSDB lives in a temporary directory that
is deleted with the server. Used by the Prometheus integration test and to record the README's
dashboard picture (``python -m services.ops.render --record``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess  # noqa: S404 - running Prometheus is the point
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import yaml

from config import PROMETHEUS_DIR
from services.errors import ServicesError
from services.local.wait import stop_process, wait_for

PROM_CONFIG: Final = PROMETHEUS_DIR
JOBS: Final = {"serving": "streamlearn-serving", "joiner": "streamlearn-joiner",
               "trainer": "streamlearn-trainer"}


class PrometheusError(ServicesError):
    """The binary is missing, or the server did not become ready."""


def scrape_config(ports: Mapping[str, int], interval_s: float) -> dict[str, Any]:
    """config/prometheus/prometheus.yml with the streamlearn jobs aimed at ``ports``.

    Args:
        ports: Port per process: ``serving``, ``joiner``, ``trainer`` (others are ignored).
        interval_s: Scrape and rule evaluation interval.

    Raises:
        PrometheusError: prometheus.yml has no job for one of ``ports``.
    """
    config: dict[str, Any] = yaml.safe_load((PROM_CONFIG / "prometheus.yml").read_text())
    by_job = {JOBS[name]: port for name, port in ports.items() if name in JOBS}
    # Prometheus durations take no fractions ("0.5s" is refused): whole milliseconds.
    every = f"{max(1, round(interval_s * 1000))}ms"
    config["global"].update(scrape_interval=every, evaluation_interval=every)
    jobs = [job for job in config["scrape_configs"] if job["job_name"] in by_job]
    if len(jobs) != len(by_job):
        raise PrometheusError(f"prometheus.yml lacks a job of {sorted(by_job)}")
    for job in jobs:
        job["static_configs"] = [{"targets": [f"127.0.0.1:{by_job[job['job_name']]}"]}]
    config["scrape_configs"] = jobs
    return config


@contextmanager
def local_prometheus(ports: Mapping[str, int], interval_s: float = 1.0,
                     ready_timeout_s: float = 30.0) -> Iterator[str]:
    """Run Prometheus on a free port of 127.0.0.1 with our jobs and alert rules.

    Yields:
        Its base URL. The server is stopped and its TSDB deleted afterwards.

    Raises:
        PrometheusError: No ``prometheus`` binary (``make system-deps``), or it did not get
            ready (its log is in the message).
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusError("prometheus is not installed: run `make system-deps`")
    config = scrape_config(ports, interval_s)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="streamlearn-prometheus-") as tmp:
        root = Path(tmp)
        (root / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.copy(PROM_CONFIG / "alerts.yml", root / "alerts.yml")
        log_path = root / "prometheus.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(  # noqa: S603
                [binary, f"--config.file={root / 'prometheus.yml'}",
                 f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_ready(proc, url, log_path, ready_timeout_s)
                yield url
            finally:
                stop_process(proc, timeout_s=15)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path,
                timeout_s: float) -> None:
    def failed() -> PrometheusError:
        return PrometheusError(f"Prometheus did not get ready:\n"
                               f"{log_path.read_text(errors='replace')[-3000:]}")

    def ready() -> bool:
        if proc.poll() is not None:
            raise failed()
        return _ready(url)

    try:
        wait_for(ready, timeout_s, "Prometheus to get ready", interval_s=0.2)
    except TimeoutError:
        raise failed() from None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False
