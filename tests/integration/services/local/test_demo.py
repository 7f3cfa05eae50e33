"""`streamlearn demo run` (what `make demo` runs), short, on the real stack.

The demo trains and registers its first champion, starts serve, join and train on topics of
its own, sends a scenario's traffic through the API and writes the report; afterwards nothing
it started is left: no process, no topic, no registry key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient

from services.local.stack.manager import Stack
from streams.topics import existing_topics
from tests.paths import ROOT


def test_demo_runs_the_loop_writes_the_report_and_leaves_nothing(stack: Stack,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "run", "--scenario", "sudden",
         "--seconds", "25", "--rate", "20", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=420, check=False)
    logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in (out / "logs").glob("*.log"))
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{logs}"
    assert "champion ctr-v1.0: trained on" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed_calls"] == 0 and summary["requests"] > 100
    assert summary["labels"] == summary["requests"] * 5
    assert summary["frozen_version"] == "ctr-v1.0"
    # The report and its plots.
    report = (out / "report.md").read_text()
    assert "sudden" in report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs and all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    # Nothing left behind: the run's topics and registry keys are gone, its processes too.
    tag = done.stdout.split("demo ", 1)[1].split(":", 1)[0].strip()
    admin = AdminClient({"bootstrap.servers": stack.kafka_settings.bootstrap_servers})
    assert [t for t in existing_topics(admin) if tag in t] == []
    client = redis.Redis.from_url(stack.redis_settings.url)
    try:
        assert list(client.scan_iter(match=f"streamlearn-demo:{tag}:*")) == []
    finally:
        client.close()
    ps = subprocess.run(["pgrep", "-f", f"loop-joiner-{tag}"], capture_output=True, text=True,
                        check=False)
    assert ps.stdout == ""
