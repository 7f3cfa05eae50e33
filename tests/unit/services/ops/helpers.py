"""Shared by the ops tests: what the metrics modules register (the names alert rules and the
dashboard may use) and promtool, which must be installed (`make system-deps`)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry

from services.registry.metrics import RegistryMetrics
from services.serving.metrics import ServingMetrics
from services.trainer.metrics import TrainerMetrics
from streams.joiner.worker.metrics import JoinerMetrics
from tests.paths import ROOT

METRICS_MODULES = (ServingMetrics, TrainerMetrics, JoinerMetrics, RegistryMetrics)
# What the exposition format adds to a family's name, by metric type.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "info": ("_info",),
    "gauge": ("",),
}


def exported_names() -> tuple[set[str], set[str]]:
    """The sample names the processes' metrics can expose, and their family names."""
    samples: set[str] = set()
    families: set[str] = set()
    for metrics in METRICS_MODULES:
        registry = CollectorRegistry()
        metrics(registry)
        for family in registry.collect():
            if family.name.startswith("streamlearn_"):
                families.add(family.name)
                samples |= {family.name + end for end in SUFFIXES.get(family.type, ("",))}
    return samples, families


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool in the repository; a missing promtool fails the test (never a skip)."""
    if shutil.which("promtool") is None:
        # `make test` installs it (make system-deps): without it these checks are not done.
        pytest.fail("promtool is not installed: run `make system-deps` (Debian's prometheus)")
    return subprocess.run(
        ["promtool", *args], input=stdin, capture_output=True, text=True, check=False, cwd=ROOT,
        timeout=120,
    )
