"""`streamlearn models list|show|promote|rollback`: registry admin from the command line.

Talks to the registry in Redis directly (``STREAMLEARN_REDIS_URL``, ``STREAMLEARN_REGISTRY_*``).
A refused operation (unknown version, tampered artifact, nothing to roll back to) prints the
``RegistryError`` and exits 1.

Everything from ``models`` is imported inside the commands: the ``models`` package loads torch
and river (about 4 s), which no other ``streamlearn`` command should pay for.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from config.settings import RedisSettings, RegistrySettings, load

if TYPE_CHECKING:
    from models.registry import ModelRecord
    from services.registry.redis import RedisRegistry

Command = Callable[[argparse.Namespace], int]

_STATUS_COLOUR = {"champion": "green", "rejected": "red", "retired": "dim", "candidate": "yellow"}


def add_models_arguments(leaves: Mapping[str, argparse.ArgumentParser]) -> None:
    """Add the leaf arguments of the ``models`` command group."""
    leaves["show"].add_argument("version", help="e.g. ctr-v1.3")
    leaves["promote"].add_argument("version", help="e.g. ctr-v1.3")
    leaves["promote"].add_argument("--reason", default="manual promotion from the CLI")
    leaves["promote"].add_argument(
        "--force", action="store_true", help="promote even a version the gate rejected"
    )
    leaves["rollback"].add_argument("--reason", default="manual rollback from the CLI")


def _refusals_exit_1(command: Command) -> Command:
    """Print a ``RegistryError`` and return exit code 1 instead of a traceback."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from models.errors import RegistryError

        try:
            return command(args)
        except RegistryError as err:
            Console(highlight=False).print(f"[red]registry error:[/] {err}")
            return 1

    return run


def _registry() -> RedisRegistry:
    import redis

    from models.errors import RegistryError
    from services.registry.redis import connect

    redis_settings = load(RedisSettings)
    registry = connect(redis_settings, load(RegistrySettings))
    try:
        registry.client.ping()
    except (redis.RedisError, OSError) as exc:
        raise RegistryError(f"Redis at {redis_settings.url} is not reachable: {exc}") from exc
    return registry


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _status(record: ModelRecord) -> str:
    return f"[{_STATUS_COLOUR.get(record.status, 'white')}]{record.status}[/]"


@_refusals_exit_1
def cmd_models_list(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    registry = _registry()
    records = registry.list()
    if not records:
        console.print(f"no versions registered under {registry.cfg.prefix!r}")
        return 0
    table = Table("version", "status", "model", "mode", "parent", "created (UTC)", "examples",
                  "gate", "artifact", title=f"registry {registry.cfg.prefix}")
    for r in records:
        table.add_row(
            r.version, _status(r), r.model, r.mode, r.parent or "-", _when(r.created_at),
            str(r.lineage.n_examples), r.gate.outcome if r.gate else "-",
            "stored" if registry.has_artifact(r.version) else "pruned",
        )
    console.print(table)
    return 0


@_refusals_exit_1
def cmd_models_show(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    registry = _registry()
    r = registry.get(args.version)
    about = Table.grid(padding=(0, 2))
    for key, value in (
        ("version", r.version), ("status", _status(r)), ("model", r.model), ("mode", r.mode),
        ("parent", r.parent or "-"), ("created", f"{_when(r.created_at)} UTC"),
        ("examples", str(r.lineage.n_examples)), ("feature spec", r.feature_spec_hash[:16]),
        ("artifact", f"{r.artifact.size} bytes, sha256 {r.artifact.sha256[:16]}…, "
                     + ("stored" if registry.has_artifact(r.version) else "pruned")),
    ):
        about.add_row(f"[bold]{key}[/]", value)
    console.print(about)
    lineage = Table("topic", "partition", "first offset", "last offset", "messages",
                    title="lineage: offsets trained on")
    for span in r.lineage.ranges:
        lineage.add_row(span.topic, str(span.partition), str(span.first), str(span.last),
                        str(span.last - span.first + 1))
    console.print(lineage)
    if r.gate is not None:
        console.print(f"[bold]gate[/]: {r.gate.outcome} — {r.gate.reason}")
        figures = Table("figure", "value", title="gate figures")
        for name, figure in sorted(r.gate.figures.items()):
            figures.add_row(name, f"{figure:.6g}")
        console.print(figures)
    params = ", ".join(f"{k}={v}" for k, v in sorted(r.hyperparameters.items()))
    console.print(f"[bold]hyperparameters[/]: {params}")
    return 0


@_refusals_exit_1
def cmd_models_promote(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    registry = _registry()
    before = registry.champion_version()
    record = registry.promote(args.version, args.reason, force=args.force)
    if before == record.version:
        console.print(f"{record.version} is already the champion")
    else:
        console.print(f"[green]✔[/] champion: {before or 'none'} → {record.version}")
    return 0


@_refusals_exit_1
def cmd_models_rollback(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    registry = _registry()
    before = registry.champion_version()
    record = registry.rollback(args.reason)
    console.print(f"[green]✔[/] rolled back: champion {before} → {record.version}")
    return 0


def cmd_models_refresh_sanity(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    at = _registry().request_sanity_refresh()
    console.print(f"[green]✔[/] sanity-set refresh requested at {_when(at)} UTC: the trainer "
                  "freezes a new one from the examples it sees next")
    return 0
