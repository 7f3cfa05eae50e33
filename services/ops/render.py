"""Render panels of the Grafana dashboard to a PNG from a live Prometheus, without Grafana.

The queries are the dashboard's own (config/grafana/dashboards/streamlearn.json), run through
Prometheus's ``/api/v1/query_range``, so the picture shows exactly what the dashboard shows for
the same time range. Used for the README's "Operating streamlearn" image and by the
Prometheus integration test::

    python -m services.ops.render --prometheus http://127.0.0.1:9090 --minutes 15 \\
        --out docs/ops/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from config import GRAFANA_DASHBOARD
from services.errors import ServicesError

DASHBOARD: Final = GRAFANA_DASHBOARD
# The panels of the README picture: traffic, latency, which model answers, labels, quality.
KEY_PANELS: Final = (
    "Request rate by route and status",
    "Latency p99 by route",
    "Predictions by model version and arm",
    "Joiner throughput",
    "Join coverage",
    "Prequential log loss by version",
    "Prequential AUC by version",
    "Trainer consumer lag",
)
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")


class RenderError(ServicesError):
    """Prometheus refused a query, or a panel named is not on the dashboard."""


@dataclass(frozen=True)
class Series:
    """One line of a panel: its legend and (epoch seconds, value) points."""

    legend: str
    times: tuple[float, ...]
    values: tuple[float, ...]


def promql(expr: str, rate_interval: str, range_s: int) -> str:
    """A dashboard query with Grafana's interval variables replaced.

    Example:
        >>> promql("increase(x_total[$__range]) / rate(y_total[$__rate_interval])", "30s", 900)
        'increase(x_total[900s]) / rate(y_total[30s])'
    """
    out = expr.replace("$__rate_interval", rate_interval).replace("$__interval", rate_interval)
    return out.replace("$__range", f"{range_s}s")


def legend(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend format filled from a series' labels.

    Example:
        >>> legend("{{model_version}} {{arm}}", {"model_version": "ctr-v1.1", "arm": "champion"})
        'ctr-v1.1 champion'
    """
    return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), template).strip()


def load_panels(path: Path = DASHBOARD) -> dict[str, dict[str, Any]]:
    """The dashboard's panels by title (rows left out)."""
    data = json.loads(path.read_text())
    return {p["title"]: p for p in data["panels"] if p["type"] != "row"}


def query_range(client: httpx.Client, expr: str, start: float, end: float,
                step_s: float) -> list[dict[str, Any]]:
    """The matrix Prometheus returns for ``expr``.

    Raises:
        RenderError: Prometheus answered with an error (a bad query names itself here).
    """
    response = client.get("/api/v1/query_range",
                          params={"query": expr, "start": start, "end": end, "step": step_s})
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise RenderError(f"{expr}: {body.get('error', response.text)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def panel_series(client: httpx.Client, panel: dict[str, Any], start: float, end: float,
                 step_s: float, rate_interval: str) -> list[Series]:
    """Every series of every target of a panel over [start, end]."""
    out = []
    for target in panel["targets"]:
        expr = promql(target["expr"], rate_interval, int(end - start))
        for item in query_range(client, expr, start, end, step_s):
            points = [(float(t), float(v)) for t, v in item["values"]]
            points = [(t, v) for t, v in points if math.isfinite(v)]
            if points:
                times, values = zip(*points, strict=True)
                out.append(Series(legend(target.get("legendFormat", ""), item["metric"]),
                                  tuple(times), tuple(values)))
    return out


def render(prometheus_url: str, out: Path, *, minutes: float = 15.0,
           titles: Sequence[str] = KEY_PANELS, rate_interval: str = "1m",
           dashboard: Path = DASHBOARD, end: float | None = None) -> dict[str, int]:
    """Draw the panels ``titles`` over the last ``minutes`` into one PNG at ``out``.

    Returns:
        The number of series drawn per panel title (0: the panel had no data).

    Raises:
        RenderError: A title is not on the dashboard, or Prometheus refused a query.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    panels = load_panels(dashboard)
    unknown = [t for t in titles if t not in panels]
    if unknown:
        raise RenderError(f"not on the dashboard: {unknown}")
    end = time.time() if end is None else end
    start = end - minutes * 60
    step_s = max(1.0, minutes * 60 / 300)
    cols = 2
    rows = math.ceil(len(titles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, 2.8 * rows), squeeze=False)
    drawn: dict[str, int] = {}
    with httpx.Client(base_url=prometheus_url, timeout=30.0) as client:
        for ax, title in zip(axes.flat, titles, strict=False):
            series = panel_series(client, panels[title], start, end, step_s, rate_interval)
            drawn[title] = len(series)
            for s in series[:12]:  # a legend of more lines is unreadable anyway
                # A series with a single point is a dot, not an invisible line.
                ax.plot([_datetime(t) for t in s.times], s.values, label=s.legend or None,
                        linewidth=1.2, marker="." if len(s.times) < 3 else None)
            unit = panels[title].get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            ax.set_title(f"{title}" + (f"  [{unit}]" if unit and unit != "short" else ""),
                         fontsize=10, loc="left")
            ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6))
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M" if minutes > 10
                                                              else "%H:%M:%S"))
            ax.grid(alpha=0.3)
            if not series:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            elif any(s.legend for s in series):
                ax.legend(fontsize=7, loc="upper left")
        for ax in list(axes.flat)[len(titles):]:
            ax.set_visible(False)
    fig.suptitle(f"streamlearn dashboard: the panels' queries on a live Prometheus, "
                 f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(end))}, last "
                 f"{minutes:.1f} min", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))  # room for the title
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return drawn


def _datetime(epoch_s: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, tz=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=Path("docs/ops/dashboard.png"))
    parser.add_argument("--rate-interval", default="1m",
                        help="what $__rate_interval stands for (Grafana: 4 scrape intervals)")
    parser.add_argument("--panel", action="append", dest="panels",
                        help="a panel title (repeatable); default: the key panels")
    args = parser.parse_args(argv)
    drawn = render(args.prometheus, args.out, minutes=args.minutes,
                   titles=args.panels or KEY_PANELS, rate_interval=args.rate_interval)
    print_drawn(drawn, args.out)
    return 0


def print_drawn(drawn: dict[str, int], out: Path) -> None:
    """What ``render`` drew, a line a panel (a panel without data says 0)."""
    for title, n in drawn.items():
        print(f"{n:3d} series  {title}")
    print(f"wrote {out}")


if __name__ == "__main__":
    raise SystemExit(main())
