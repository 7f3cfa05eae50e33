"""`streamlearn simulate`: a scenario's traffic through the real API, with live figures.

The frozen model is the champion when the run starts, loaded from the registry. The attribution
window comes from the joiner's settings (``STREAMLEARN_JOINER_ATTRIBUTION_WINDOW_MS``), so the
simulator labels predictions as the joiner does. ``--out DIR`` writes ``timeseries.csv`` (one
row per ``--every`` labels: rolling log losses, CTR, champion) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", required=True,
                        help="a preset (stationary, sudden, gradual, cyclic, rare-event, "
                             "cold-start, bot-attack) or several joined by '+'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=50.0,
                        help="requests per second before the scenario's multiplier (0 = max)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--requests", type=int, help="how many predict calls (default 5000)")
    length.add_argument("--seconds", type=float, help="how long to send traffic")
    parser.add_argument("--knob", action="append", default=[], metavar="K=V",
                        help="a scenario knob, e.g. drift_at=3000 (repeatable)")
    parser.add_argument("--top-k", type=int, default=5, help="items shown per response")
    parser.add_argument("--epsilon", type=float, default=0.0, help="exploration share")
    parser.add_argument("--api", default=None,
                        help="serving URL (default: http://<serving host>:<port> from config)")
    parser.add_argument("--every", type=int, default=500, help="labels per CSV row")
    parser.add_argument("--out", type=Path, help="directory for timeseries.csv + summary.json")


def _knobs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--knob {pair!r}: expected K=V")
        out[key.strip()] = value.strip()
    return out


def _fmt(x: float, digits: int = 4) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def cmd_simulate(args: argparse.Namespace) -> int:
    import httpx
    import redis

    from config.settings import (
        JoinerSettings,
        RedisSettings,
        RegistrySettings,
        ServingSettings,
        load,
    )
    from models.errors import ModelError
    from services.registry.redis import connect
    from services.simulator import Behaviour, SimulatorError, build
    from services.simulator.driver import ROW_FIELDS, Driver

    console = Console(highlight=False)
    try:
        scenario = build(args.scenario, args.seed, **_knobs(args.knob))
        behaviour = Behaviour(k=args.top_k, epsilon=args.epsilon)
    except (SimulatorError, ValueError) as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    window_ms = load(JoinerSettings).attribution_window_ms
    # Clicks come inside the window (as the default delays do in the demo's 30 s window), so
    # the true p is the probability behind the joiner's labels.
    cap = min(behaviour.click_delay_cap_ms,
              max(1, window_ms - behaviour.impression_delay_max_ms - 100))
    behaviour = replace(behaviour, click_delay_cap_ms=cap,
                        click_delay_median_ms=min(behaviour.click_delay_median_ms, cap / 3))
    if args.api is None:
        serving = load(ServingSettings)
        args.api = f"http://{serving.host}:{serving.port}"
    http = httpx.Client(base_url=args.api, timeout=10.0)
    try:
        models = http.get("/v1/models")
        champion = models.json().get("champion") if models.status_code == 200 else None
        if not champion:
            console.print(f"[red]error:[/] no champion at {args.api}/v1/models "
                          f"(HTTP {models.status_code}); is `streamlearn serve` running?")
            return 1
        registry = connect(load(RedisSettings), load(RegistrySettings))
        frozen = registry.load(champion)
        registry.client.close()
    except (ModelError, redis.RedisError) as err:
        console.print(f"[red]error:[/] cannot load the frozen model {champion}: {err}")
        http.close()
        return 1
    except (httpx.HTTPError, ValueError) as err:
        console.print(f"[red]error:[/] serving at {args.api} is not reachable: {err}")
        http.close()
        return 1
    world = scenario.world()
    driver = Driver(http, scenario, world, behaviour, frozen, window_ms, rate=args.rate,
                    seed=args.seed, row_every=args.every)
    requests = args.requests if args.requests is not None or args.seconds else 5_000
    console.print(f"simulating [bold]{scenario.name}[/] (seed {args.seed}) against {args.api}: "
                  f"frozen model {champion}, window {window_ms} ms, drift at "
                  f"{list(scenario.drift_points) or '-'}")
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[figures]}"))
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(scenario.name, total=requests or args.seconds, figures="")

            def tick(d: Driver) -> None:
                r = d.row()
                done = d.counts.requests if requests else r["elapsed_s"]
                progress.update(task, completed=done, figures=(
                    f"logloss sys {_fmt(r['system'])} frozen {_fmt(r['frozen'])} opt "
                    f"{_fmt(r['optimal'])} | CTR {_fmt(r['ctr'], 3)} | {r['champion']} "
                    f"({r['promotions']} promotions) | labels {d.counts.labels} "
                    f"failed {d.counts.failed_calls}"))

            driver.run(requests=requests, seconds=args.seconds, on_tick=tick)
    finally:
        http.close()
    summary = _summary(driver, champion)
    _print_summary(summary, console)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "timeseries.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS)
            writer.writeheader()
            writer.writerows(driver.rows)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        console.print(f"wrote {args.out / 'timeseries.csv'} and {args.out / 'summary.json'}")
        return _report(args.out, console)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`streamlearn report DIR`: report.md + PNG plots from a simulate --out directory."""
    return _report(args.dir, Console(highlight=False))


def _report(out: Path, console: Console) -> int:
    from services.simulator.report import ReportError, write_report

    try:
        console.print(f"wrote {write_report(out)}")
    except ReportError as err:
        console.print(f"[red]report error:[/] {err}")
        return 1
    return 0


def _summary(driver: Any, frozen_version: str) -> dict[str, Any]:
    overall = driver.accounting.overall()
    ctr = driver.ctr.figures()

    def num(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 6)

    return {
        "scenario": driver.scenario.name, "seed": driver.seed, **asdict(driver.counts),
        "forced_labels": driver.book.forced, "frozen_version": frozen_version,
        "champion": driver.champion, "promotions": driver.promotions,
        "logloss": {"system": num(overall.system), "frozen": num(overall.frozen),
                    "optimal": num(overall.optimal)},
        "regret": {"system": num(overall.regret), "frozen": num(overall.frozen_regret)},
        "ctr": {"served": num(ctr.served), "served_expected": num(ctr.served_expected),
                "oracle_expected": num(ctr.oracle_expected),
                "frozen_expected": num(ctr.frozen_expected)},
        "recovery_labels": {str(k): v for k, v in driver.recoveries.items()},
    }


def _print_summary(s: dict[str, Any], console: Console) -> None:
    table = Table("figure", "value", title=f"simulation summary: {s['scenario']}")
    rows = [
        ("requests / predictions", f"{s['requests']} / {s['predictions']}"),
        ("events sent / accepted / rejected",
         f"{s['events_sent']} / {s['events_accepted']} / {s['events_rejected']}"),
        ("failed HTTP calls", str(s["failed_calls"])),
        ("labels (clicks)", f"{s['labels']} ({s['clicks']})"),
        ("log loss system / frozen / optimal", " / ".join(
            _fmt(s["logloss"][k]) if s["logloss"][k] is not None else "-"
            for k in ("system", "frozen", "optimal"))),
        ("regret system / frozen", " / ".join(
            _fmt(s["regret"][k]) if s["regret"][k] is not None else "-"
            for k in ("system", "frozen"))),
        ("CTR served / frozen / oracle (expected)",
         f"{_fmt(s['ctr']['served_expected'] or math.nan)} / "
         f"{_fmt(s['ctr'].get('frozen_expected') or math.nan)} / "
         f"{_fmt(s['ctr']['oracle_expected'] or math.nan)}"),
        ("champion (frozen)", f"{s['champion']} ({s['frozen_version']})"),
        ("promotions", str(s["promotions"])),
        ("recovery labels", json.dumps(s["recovery_labels"]) if s["recovery_labels"] else "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if s["last_error"]:
        console.print(f"[yellow]last HTTP error:[/] {s['last_error']}")


def add_freshness_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="gradual",
                        help="a world that keeps changing (default gradual)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lags", default="0,2000,4000,8000,16000",
                        help="comma-separated lags, in requests")
    parser.add_argument("--window", type=int, default=4_000, help="requests trained on")
    parser.add_argument("--evaluate", type=int, default=1_000, help="newest requests judged")
    parser.add_argument("--model", default=None, help="model name (default: the trainer's)")
    parser.add_argument("--out", type=Path, default=Path("reports/freshness"),
                        help="where freshness.csv and freshness.png go")


def cmd_freshness(args: argparse.Namespace) -> int:
    """`streamlearn freshness`: the value of data freshness on a simulated world."""
    from config.settings import TrainerSettings, load
    from services.simulator import SimulatorError, build
    from services.simulator.freshness import freshness, plot

    console = Console(highlight=False)
    try:
        lags = sorted({int(x) for x in args.lags.split(",") if x.strip()})
        if not lags or min(lags) < 0 or args.window < 1 or args.evaluate < 1:
            raise ValueError("lags must be >= 0, window and evaluate >= 1")
        total = max(lags) + args.window + args.evaluate
        knobs = {"drift_at": 0, "duration": total} if args.scenario == "gradual" else {}
        scenario = build(args.scenario, args.seed, **knobs)
    except (SimulatorError, ValueError) as err:
        console.print(f"[red]error:[/] {err}")
        return 2
    trainer = load(TrainerSettings)
    model = args.model or trainer.model
    table = Table("lag (requests)", "trained on", "log loss", "optimal", "regret",
                  title=f"value of data freshness: {model} on {scenario.name}")
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("training one model per lag", total=len(lags))
        rows = freshness(scenario, model, trainer.model_hyperparams(), lags=lags,
                         window=args.window, evaluate=args.evaluate, seed=args.seed,
                         on_lag=lambda row: progress.advance(task))
    for r in rows:
        table.add_row(f"{r.lag:,}", f"{r.examples:,}", _fmt(r.log_loss), _fmt(r.optimal),
                      _fmt(r.regret))
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "freshness.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["lag", "examples", "log_loss", "optimal", "regret"])
        writer.writerows([r.lag, r.examples, r.log_loss, r.optimal, r.regret] for r in rows)
    png = plot(rows, args.out / "freshness.png", f"value of data freshness ({scenario.name})")
    console.print(f"wrote {args.out / 'freshness.csv'} and {png}")
    return 0
