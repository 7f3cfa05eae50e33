"""`streamlearn demo run`: the whole loop on this machine, a scenario's traffic, and its report.

What ``make demo`` runs. On the local stack (Kafka + Redis, started by ``make demo``) it starts
``streamlearn serve``, ``streamlearn join`` and ``streamlearn train`` (``LocalLoop``) on topics,
consumer groups and a registry prefix of this run's own, so a demo never reads another run's
data. Then ``streamlearn simulate`` sends the scenario's traffic through the API for
``--seconds`` with live progress, and writes ``timeseries.csv``, ``summary.json`` and
``report.md`` with its plots to ``--out``. Last, it stops the three processes and deletes the
run's topics (and its registry keys unless ``--keep``).

The timings are the demo's, chosen so a few minutes show a drift and the recovery: a 10 s
attribution window (labels arrive within seconds, not the production default of 30 s), the
gate asked every 1,024 fresh labels, champion pointer polled every second.
"""

from __future__ import annotations

import argparse
import subprocess  # noqa: S404 - the simulator runs as its own process, like a client would
import sys
import time
from pathlib import Path

from rich.console import Console

from config.settings import KafkaSettings, RedisSettings, RegistrySettings, load
from services.local.loop import (
    LocalLoop,
    answers,
    delete_prefix,
    delete_topics,
    register_champion,
)
from services.local.wait import stop_process, wait_for
from services.simulator import SimulatorError, build

# STREAMLEARN_* settings of the demo's processes (each reads its own section).
DEMO_SETTINGS = {
    "STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS": "10000",
    "STREAMLEARN_JOINER_ALLOWED_LATENESS_MS": "2000",
    "STREAMLEARN_JOINER_IDLE_TIMEOUT_MS": "5000",
    "STREAMLEARN_JOINER_TICK_INTERVAL_MS": "500",
    "STREAMLEARN_TRAINER_GATE_EVERY_EXAMPLES": "1024",
    "STREAMLEARN_TRAINER_MAX_WAIT_MS": "2000",
    "STREAMLEARN_TRAINER_CHAMPION_POLL_MS": "500",
    "STREAMLEARN_TRAINER_LOG_INTERVAL_S": "5",
    "STREAMLEARN_SERVING_POLL_INTERVAL_S": "1",
}


def add_demo_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="sudden", help="a simulator scenario (default "
                        "sudden; stationary, gradual, cyclic, rare-event, cold-start, "
                        "bot-attack, or several joined by '+')")
    parser.add_argument("--seconds", type=float, default=300.0, help="traffic duration")
    parser.add_argument("--rate", type=float, default=40.0, help="predict calls per second")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("reports/demo"),
                        help="where the report goes (default reports/demo)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's registry keys (inspect with `streamlearn models`)")


def drift_knobs(scenario: str, seed: int, requests: int) -> list[str]:
    """``--knob drift_at=N`` putting the drift a third of the way into the run, when the
    scenario has a drift point (its own default assumes a longer run)."""
    at = max(1, requests // 3)
    try:
        build(scenario, seed, drift_at=at)
    except SimulatorError:
        return []
    return ["--knob", f"drift_at={at}"]


def cmd_demo_run(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    from streams.topics import TopicError, ensure_topics, topic_specs

    console = Console(highlight=False)
    try:
        build(args.scenario, args.seed)
    except SimulatorError as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    base = load(KafkaSettings)
    tag = time.strftime("%Y%m%d-%H%M%S")
    kafka = base.model_copy(update={
        name: f"demo-{tag}-{getattr(base, name)}"
        for name in ("predictions_topic", "events_topic", "examples_topic", "dlq_topic",
                     "late_labels_topic")})
    registry = load(RegistrySettings)
    prefix = f"streamlearn-demo:{tag}:"
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    loop = LocalLoop(kafka, prefix, registry.signing_key.get_secret_value(), out / "logs",
                     DEMO_SETTINGS, tag=tag)
    try:
        ensure_topics(AdminClient({"bootstrap.servers": kafka.bootstrap_servers}), kafka)
    except TopicError as err:
        console.print(f"[red]error:[/] {err}")
        return 1
    console.print(f"demo [bold]{tag}[/]: scenario [bold]{args.scenario}[/] for "
                  f"{args.seconds:.0f} s at {args.rate:g} requests/s; logs in {loop.workdir}")
    try:
        _register_warm_champion(prefix, loop.signing_key, args, console)
        start_loop(loop, console)
        return _simulate(loop, args, console)
    except (TimeoutError, RuntimeError) as err:
        console.print(f"[red]error:[/] {err}")
        return 1
    finally:
        with console.status("stopping the demo's processes and deleting its topics…"):
            loop.stop()
            delete_topics(kafka.bootstrap_servers,
                          [s.name for s in topic_specs(kafka)] + loop.joiner_topics)
            if not args.keep:
                delete_prefix(load(RedisSettings).url, prefix)
        if args.keep:
            console.print(f"registry kept: STREAMLEARN_REGISTRY_PREFIX='{prefix}' "
                          "streamlearn models list")


WARMUP_REQUESTS = 3_000
WARMUP_START = 10_000_000  # request indices the run never sends


def _register_warm_champion(prefix: str, signing_key: str, args: argparse.Namespace,
                            console: Console) -> None:
    """Train the trainer's configured model on the world before any drift and make it the
    run's champion ``v1.0``: the demo starts from a deployed model, as a team would."""
    from config.settings import TrainerSettings
    from services.simulator.warmup import warm_model
    from services.trainer.build import new_model

    with console.status(f"training the first champion on {WARMUP_REQUESTS:,} requests of "
                        "the world before the drift…"):
        before = build("stationary", args.seed)
        model = warm_model(new_model(load(TrainerSettings)), before, before.world(),
                           requests=WARMUP_REQUESTS, start=WARMUP_START, seed=args.seed)
        version = register_champion(
            load(RedisSettings).url, prefix, signing_key, model,
            f"demo: trained on {WARMUP_REQUESTS:,} simulated requests before the run")
    console.print(f"[green]✔[/] champion {version}: trained on {WARMUP_REQUESTS:,} requests "
                  "before the run")


def start_loop(loop: LocalLoop, console: Console) -> None:
    """serve, join, train, each once the previous one answers (the demo, ``bench replay``)."""
    with console.status("starting serve…"):
        loop.start("serve")
        wait_for(lambda: loop.serving_ready() or loop.dead(), 90, "serving's /readyz",
                 loop.logs)
        loop.check_alive()
    console.print(f"[green]✔[/] serve at {loop.url} (champion loaded)")
    with console.status("starting join…"):
        loop.start("join")
        wait_for(lambda: answers(_metrics(loop.joiner_metrics_port)) or loop.dead(), 90,
                 "the joiner's metrics", loop.logs)
        loop.check_alive()
    console.print("[green]✔[/] join (natural labels, exactly once)")
    with console.status("starting train…"):
        loop.start("train")
        wait_for(lambda: answers(_metrics(loop.trainer_metrics_port)) or loop.dead(), 90,
                 "the trainer's metrics", loop.logs)
        loop.check_alive()
    console.print("[green]✔[/] train (stateful micro-batches + the gate)")


def _simulate(loop: LocalLoop, args: argparse.Namespace, console: Console) -> int:
    requests = int(args.seconds * args.rate)
    command = [sys.executable, "-m", "services.cli", "simulate", "--scenario", args.scenario,
               "--seed", str(args.seed), "--seconds", str(args.seconds), "--rate",
               str(args.rate), "--every", "250", "--api", loop.url, "--out", str(args.out),
               *drift_knobs(args.scenario, args.seed, requests)]
    sim = subprocess.Popen(command, env=loop.env())  # noqa: S603
    while sim.poll() is None:
        dead = loop.dead()
        if dead:
            stop_process(sim, timeout_s=30)
            console.print(f"[red]error:[/] {', '.join(dead)} exited during the demo\n"
                          f"{loop.logs()}")
            return 1
        time.sleep(1.0)
    if sim.returncode == 0:
        console.print(f"\n[bold green]done[/]: open [bold]{args.out / 'report.md'}[/] "
                      "(plots next to it); the services' logs are in "
                      f"{loop.workdir}")
    return sim.returncode


def _metrics(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"
