"""Record the dashboard picture: a whole loop under simulated traffic, scraped by Prometheus.

Starts ``streamlearn serve``, ``join`` and ``train`` on topics and a registry prefix of their
own (``LocalLoop``), a throwaway Prometheus on their ports (``local_prometheus``), drives them
with ``streamlearn simulate``, then renders the dashboard's panels over the run
(``ops_render.render``). Everything it created is removed afterwards: processes, topics,
registry keys, the TSDB. This is how docs/ops/dashboard.png is made::

    python -m services.ops.record --seconds 240 --scenario sudden --out docs/ops/dashboard.png
"""

from __future__ import annotations

import argparse
import subprocess  # noqa: S404 - the simulator is our own command
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from config.settings import KafkaSettings, RedisSettings, load
from services.local.loop import LocalLoop, delete_prefix, delete_topics
from services.local.wait import wait_for
from services.ops.prometheus import local_prometheus
from services.ops.render import print_drawn, render

# Windows of seconds and small micro-batches, so labels, training and a gate decision happen
# within a few minutes of traffic (the closed-loop test's settings).
SETTINGS = {
    "STREAMLEARN_SERVING_POLL_INTERVAL_S": "1",
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "2000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "1000",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "3000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "250",
    "STREAMLEARN_TRAINER_BATCH_SIZE": "256",
    "STREAMLEARN_TRAINER_MAX_WAIT_MS": "500",
    "STREAMLEARN_TRAINER_GATE_EVERY_EXAMPLES": "2000",
    "STREAMLEARN_TRAINER_CHAMPION_POLL_MS": "500",
    # Triggered mode, so the trigger panels show firings; drift windows sized for minutes.
    "STREAMLEARN_TRAINER_MODE": "triggered",
    "STREAMLEARN_TRIGGERS_VOLUME_EVERY_LABELS": "3000",
    "STREAMLEARN_DRIFT_REFERENCE_SIZE": "3000",
    "STREAMLEARN_DRIFT_WINDOW": "3000",
    "STREAMLEARN_DRIFT_SLICE_WINDOW": "3000",
}
# The README picture: quality, drift and triggers besides traffic.
PANELS = (
    "Request rate by route and status",
    "Latency p99 by route",
    "Predictions by model version and arm",
    "Joiner throughput",
    "Prequential log loss by version",
    "Trainer consumer lag",
    "Feature drift (PSI)",
    "Drift alarms",
    "Training trigger firings",
    "Calibration by slice: observed vs predicted CTR",
)


def record(out: Path, *, seconds: float, scenario: str, rate: float,
           titles: Sequence[str] = PANELS, interval_s: float = 2.0) -> dict[str, int]:
    """Run the loop under ``scenario`` for ``seconds`` and render ``titles`` to ``out``.

    The scenario's drift point is put half-way through the traffic (``rate * seconds / 2``
    requests in).

    Returns:
        Series drawn per panel (see ``ops_render.render``).
    """
    base = load(KafkaSettings)
    tag = f"ops{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(
        bootstrap_servers=base.bootstrap_servers, partitions=base.partitions,
        predictions_topic=f"{tag}-predictions", events_topic=f"{tag}-events",
        examples_topic=f"{tag}-examples", dlq_topic=f"{tag}-dlq",
        late_labels_topic=f"{tag}-late-labels",
    )
    from confluent_kafka.admin import AdminClient

    from streams.topics import ensure_topics, topic_specs

    ensure_topics(AdminClient({"bootstrap.servers": kafka.bootstrap_servers}), kafka)
    prefix = f"{tag}:"
    with tempfile.TemporaryDirectory(prefix="streamlearn-ops-record-") as work:
        loop = LocalLoop(kafka, prefix, uuid.uuid4().hex, Path(work), SETTINGS)
        try:
            loop.start("serve")
            wait_for(lambda: _ready(loop), 120, "serving to be ready", loop.logs)
            loop.start("join")
            loop.start("train")
            ports = {"serving": loop.serving_port, "joiner": loop.joiner_metrics_port,
                     "trainer": loop.trainer_metrics_port}
            with local_prometheus(ports, interval_s=interval_s) as url:
                started = time.time()
                with open(Path(work) / "simulate.log", "wb") as log:
                    subprocess.run(  # noqa: S603
                        [sys.executable, "-m", "services.cli", "simulate", "--scenario",
                         scenario, "--seconds", f"{seconds:g}", "--rate", f"{rate:g}",
                         "--knob", f"drift_at={int(rate * seconds / 2)}", "--api", loop.url],
                        env=loop.env(), stdout=log, stderr=subprocess.STDOUT,
                        check=True, timeout=seconds + 300,
                    )
                loop.check_alive()
                minutes = (time.time() - started) / 60 + 0.5
                return render(url, out, minutes=minutes, titles=titles,
                              rate_interval=f"{4 * interval_s:g}s")
        finally:
            loop.stop()
            delete_topics(kafka.bootstrap_servers,
                          [*(s.name for s in topic_specs(kafka)), *loop.joiner_topics])
            delete_prefix(load(RedisSettings).url, prefix)


def _ready(loop: LocalLoop) -> bool:
    loop.check_alive()
    return loop.serving_ready()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--scenario", default="sudden")
    parser.add_argument("--rate", type=float, default=20.0, help="predict calls per second")
    parser.add_argument("--out", type=Path, default=Path("docs/ops/dashboard.png"))
    parser.add_argument("--panel", action="append", dest="panels",
                        help="a panel title (repeatable); default: PANELS")
    args = parser.parse_args(argv)
    drawn = record(args.out, seconds=args.seconds, scenario=args.scenario, rate=args.rate,
                   titles=args.panels or PANELS)
    print_drawn(drawn, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
