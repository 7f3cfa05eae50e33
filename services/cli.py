"""The `streamlearn` console script.

Settings and the console are built when a command runs (here and in each command), once per
process, and passed down; importing this module builds nothing. A bad configuration value stops
the process at start with exit code 2 and a message naming the field and the allowed values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from config.settings import (
    ConfigError,
    JoinerSettings,
    KafkaSettings,
    RedisSettings,
    SchemaSettings,
    StackSettings,
    load,
)
from services.local.demo import add_demo_run_arguments, cmd_demo_run
from services.local.stack.manager import Stack
from services.local.stack.process import StackError
from services.registry.cli import (
    add_models_arguments,
    cmd_models_list,
    cmd_models_promote,
    cmd_models_refresh_sanity,
    cmd_models_rollback,
    cmd_models_show,
)
from services.serving.cli import add_serve_arguments, cmd_serve
from services.simulator.cli import (
    add_freshness_arguments,
    add_simulate_arguments,
    cmd_freshness,
    cmd_report,
    cmd_simulate,
)
from services.trainer.cli import add_train_arguments, cmd_retrain, cmd_train


def _stack() -> Stack:
    return Stack(load(StackSettings), load(KafkaSettings), load(RedisSettings))


def cmd_stack_up(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    stack = _stack()
    with console.status("starting the local stack (first run fetches Kafka's jars)…"):
        reports = stack.up()
    for r in reports:
        took = f" in {r.seconds:.1f} s" if r.action == "started" else ""
        console.print(f"[green]✔[/] {r.name}: {r.action}{took}")
    return 0


def cmd_stack_down(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    stack = _stack()
    stopped = stack.down()
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    return 0


def cmd_stack_status(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    stack = _stack()
    table = Table("service", "address", "pid", "state")
    statuses = stack.status()
    for s in statuses:
        colour = {"running": "green", "stopped": "red"}.get(s.state, "yellow")
        table.add_row(s.name, s.address, str(s.pid or "-"), f"[{colour}]{s.state}[/]")
    console.print(table)
    return 0 if all(s.answering for s in statuses) else 1


def cmd_topics_create(args: argparse.Namespace) -> int:
    from confluent_kafka.admin import AdminClient

    from streams.topics import TopicError, ensure_topics

    console = Console(highlight=False)
    kafka = load(KafkaSettings)
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    try:
        plan = ensure_topics(admin, kafka)
    except TopicError as err:
        console.print(f"[red]error:[/] {err}")
        return 1
    for spec in plan.create:
        console.print(f"[green]created[/] {spec.name} ({spec.partitions} partitions)")
    for name in plan.existing:
        console.print(f"exists  {name}")
    for note in plan.notes:
        console.print(f"[yellow]note:[/] {note}")
    return 0


def cmd_demo_roundtrip(args: argparse.Namespace) -> int:
    from services.local.roundtrip import roundtrip

    console = Console(highlight=False)
    hops = roundtrip(load(KafkaSettings), load(SchemaSettings))
    for hop in hops:
        console.print(
            f"[green]✔[/] {hop.topic}[{hop.partition}]@{hop.offset} "
            f"round trip {hop.ms:.1f} ms: {hop.message}"
        )
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from services.local.supervisor import is_child, supervise, this_command
    from streams.joiner.worker.app import JoinerWorker, run_worker

    console = Console(highlight=False)
    if not is_child():
        load(JoinerSettings)  # a bad value stops here, not in a restart loop
        return supervise(this_command(), say=lambda text: console.print(f"[yellow]{text}[/]"))

    overrides = {
        name: value
        for name, value in (("metrics_port", args.metrics_port), ("state_dir", args.state_dir))
        if value is not None
    }
    joiner = load(JoinerSettings, **overrides)
    worker = JoinerWorker(load(KafkaSettings), joiner, load(SchemaSettings))
    if joiner.metrics_port:
        start_http_server(joiner.metrics_port, addr="127.0.0.1", registry=worker.metrics.registry)
    console.print(
        f"joiner worker of group [bold]{joiner.group_id}[/]: {joiner.policy}, window "
        f"{joiner.attribution_window_ms} ms; metrics on :{joiner.metrics_port or '-'}"
    )
    run_worker(worker, args.loglevel)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command tree; each leaf sets ``func``."""
    parser = argparse.ArgumentParser(prog="streamlearn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def group(
        name: str, help_: str, leaves: dict[str, tuple[str, Callable[..., int]]]
    ) -> dict[str, argparse.ArgumentParser]:
        node = sub.add_parser(name, help=help_).add_subparsers(dest="action", required=True)
        parsers = {}
        for leaf, (leaf_help, func) in leaves.items():
            parsers[leaf] = node.add_parser(leaf, help=leaf_help)
            parsers[leaf].set_defaults(func=func)
        return parsers

    group(
        "stack",
        "the local Kafka + Redis stack (what make up/down/status run)",
        {
            "up": ("start Kafka (KRaft) and redis-server; idempotent", cmd_stack_up),
            "down": ("stop what 'stack up' started", cmd_stack_down),
            "status": ("show what runs (exit 1 unless all answer)", cmd_stack_status),
        },
    )
    group(
        "topics",
        "Kafka topics",
        {"create": ("create the configured topics (idempotent)", cmd_topics_create)},
    )
    demo = group(
        "demo",
        "demonstrations",
        {
            "run": ("serve + join + train, a scenario's traffic, and its report (make demo)",
                    cmd_demo_run),
            "roundtrip": ("produce a prediction and a click, read both back", cmd_demo_roundtrip),
        },
    )
    add_demo_run_arguments(demo["run"])
    models = group(
        "models",
        "the model registry (Redis): versions, lineage, the champion",
        {
            "list": ("every version, newest first", cmd_models_list),
            "show": ("one version: lineage, gate figures, hyperparameters", cmd_models_show),
            "promote": ("make a version the champion (serving swaps to it)", cmd_models_promote),
            "rollback": ("restore the previous champion", cmd_models_rollback),
            "refresh-sanity": ("have the trainer freeze a new sanity set from fresh examples",
                               cmd_models_refresh_sanity),
        },
    )
    add_models_arguments(models)
    join = sub.add_parser(
        "join", help="the natural-label joiner (a Faust worker; run several for scale-out)"
    )
    join.add_argument("--metrics-port", type=int, help="Prometheus port (0 = none)")
    join.add_argument("--state-dir", help="table store of this worker (one per worker)")
    join.add_argument("--loglevel", default="warning", help="Faust log level")
    join.set_defaults(func=cmd_join)
    serve = sub.add_parser("serve", help="the serving API (FastAPI under uvicorn)")
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)
    train = sub.add_parser("train", help="the micro-batch trainer + evaluation gate")
    retrain = sub.add_parser("retrain", help="a one-off model trained from scratch (stage 1)")
    add_train_arguments(train, retrain)
    train.set_defaults(func=cmd_train)
    retrain.set_defaults(func=cmd_retrain)
    simulate = sub.add_parser(
        "simulate", help="the click simulator: a scenario's traffic through the real API")
    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    report = sub.add_parser(
        "report", help="report.md + PNG plots from a `simulate --out DIR` directory")
    report.add_argument("dir", type=Path, help="the directory simulate --out wrote")
    report.set_defaults(func=cmd_report)
    fresh = sub.add_parser(
        "freshness", help="the value of data freshness: one model per training-data age")
    add_freshness_arguments(fresh)
    fresh.set_defaults(func=cmd_freshness)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    try:
        return int(args.func(args))
    except ConfigError as err:
        console.print(f"[red]configuration error[/]\n{err}")
        return 2
    except StackError as err:
        console.print(f"[red]stack error:[/] {err}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
