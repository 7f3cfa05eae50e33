"""The learning-quality report of a simulation: ``report.md`` and its PNG plots.

``write_report(out_dir)`` reads what ``streamlearn simulate --out DIR`` wrote
(``timeseries.csv`` and ``summary.json``) and writes ``DIR/report.md`` with three plots next
to it: rolling log loss (system / frozen / optimal, with promotion and drift markers), CTR
served vs the oracle ranking, and the champion timeline. Pure file in, files out; matplotlib
runs on the non-interactive Agg backend, so no display is needed.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.simulator.driver import ROW_FIELDS
from services.simulator.world import SimulatorError

NUMERIC = tuple(f for f in ROW_FIELDS if f != "champion")
SUMMARY_KEYS = ("scenario", "regret", "promotions", "failed_calls")
PLOTS = {"logloss": "logloss.png", "ctr": "ctr.png", "champion": "champion.png"}


class ReportError(SimulatorError):
    """The simulation output a report is built from is missing or malformed."""


@dataclass(frozen=True)
class Series:
    """The time series as columns; ``champion`` is text, the rest floats (NaN = no value)."""

    columns: dict[str, list[float]]
    champion: list[str]

    def __len__(self) -> int:
        return len(self.champion)

    def promotion_labels(self) -> list[float]:
        """Labels at the rows where the promotion counter went up.

        >>> s = Series({"labels": [1.0, 2.0, 3.0], "promotions": [0.0, 1.0, 1.0]}, ["a"] * 3)
        >>> s.promotion_labels()
        [2.0]
        """
        count, labels = self.columns["promotions"], self.columns["labels"]
        return [labels[i] for i in range(1, len(count)) if count[i] > count[i - 1]]

    def labels_at_request(self, request: float) -> float | None:
        """The label count of the first row at or after ``request`` requests (None: beyond).

        >>> Series({"labels": [10.0, 20.0], "requests": [50.0, 100.0]}, ["a"] * 2
        ...        ).labels_at_request(60)
        20.0
        """
        for labels, requests in zip(self.columns["labels"], self.columns["requests"],
                                    strict=True):
            if requests >= request:
                return labels
        return None


def _float(text: str) -> float:
    return math.nan if text.strip() in ("", "None") else float(text)


def read_timeseries(path: Path) -> Series:
    """``timeseries.csv`` as columns.

    Raises:
        ReportError: the file is missing, lacks a column, has no rows or a non-number.
    """
    if not path.is_file():
        raise ReportError(f"{path}: not found (write it with `streamlearn simulate --out DIR`)")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [f for f in ROW_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise ReportError(f"{path}: missing column(s) {', '.join(missing)}")
        columns: dict[str, list[float]] = {f: [] for f in NUMERIC}
        champion: list[str] = []
        for line, row in enumerate(reader, start=2):
            try:
                for f in NUMERIC:
                    columns[f].append(_float(row[f] or ""))
            except (ValueError, AttributeError) as err:
                raise ReportError(f"{path}, line {line}: not a number ({err})") from None
            champion.append(row["champion"] or "")
    if not champion:
        raise ReportError(f"{path}: no data rows (the run labelled fewer than --every labels)")
    return Series(columns, champion)


def read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` as a dict.

    Raises:
        ReportError: the file is missing, not JSON, or lacks a key the report needs.
    """
    if not path.is_file():
        raise ReportError(f"{path}: not found (write it with `streamlearn simulate --out DIR`)")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    if not isinstance(summary.get("regret", {}), dict):
        missing.append("regret.system/frozen (an object)")
    if missing:
        raise ReportError(f"{path}: missing key(s) {', '.join(missing)}")
    return summary


def drift_points(summary: dict[str, Any]) -> list[int]:
    """Request indices where drift starts: ``drift_points``, else ``recovery_labels``' keys.

    >>> drift_points({"recovery_labels": {"3000": 812}})
    [3000]
    """
    points = summary.get("drift_points") or list(summary.get("recovery_labels") or {})
    return sorted(int(p) for p in points)


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _last(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return finite[-1] if finite else math.nan


def _markers(ax: Any, series: Series, drifts: list[int]) -> None:
    for i, x in enumerate(series.promotion_labels()):
        ax.axvline(x, color="tab:green", linestyle="--", linewidth=1,
                   label="promotion" if i == 0 else None)
    for i, request in enumerate(drifts):
        x = series.labels_at_request(request)
        if x is not None:
            ax.axvline(x, color="tab:red", linestyle=":", linewidth=1.5,
                       label="drift" if i == 0 else None)


def _time_axis(ax: Any, series: Series) -> None:
    """Elapsed seconds along the top, interpolated from the rows (labels come unevenly)."""
    import numpy as np

    labels, seconds = series.columns["labels"], series.columns["elapsed_s"]
    if len(series) > 1 and (np.diff(labels) > 0).all() and (np.diff(seconds) > 0).all():
        top = ax.secondary_xaxis("top", functions=(lambda x: np.interp(x, labels, seconds),
                                                   lambda t: np.interp(t, seconds, labels)))
        top.set_xlabel("elapsed s")


def _plots(out_dir: Path, series: Series, summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, safe in CI and over ssh
    import matplotlib.pyplot as plt

    labels, cols, drifts = series.columns["labels"], series.columns, drift_points(summary)
    title = summary.get("scenario", "")

    fig, (ax, below) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 2]})
    marker = "." if len(labels) < 3 else None
    for name, color in (("system", "tab:blue"), ("frozen", "tab:gray"),
                        ("optimal", "black")):
        ax.plot(labels, cols[name], label=name, color=color, marker=marker)
    _markers(ax, series, drifts)
    ax.set(ylabel="rolling log loss", title=f"{title}: rolling log loss")
    ax.legend(loc="best")
    _time_axis(ax, series)
    # Regret (above the optimal) takes out what the world does to every scorer alike: after a
    # drift that lowers the CTR, all losses fall, and only the gap shows who adapted.
    for name, color in (("system", "tab:blue"), ("frozen", "tab:gray")):
        below.plot(labels, [a - b for a, b in zip(cols[name], cols["optimal"], strict=True)],
                   label=f"{name} regret", color=color, marker=marker)
    below.axhline(0.0, color="black", lw=0.8)
    _markers(below, series, drifts)
    below.set(xlabel="labels", ylabel="log loss above optimal")
    below.legend(loc="best")
    fig.tight_layout()
    fig.savefig(out_dir / PLOTS["logloss"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(labels, cols["ctr_expected"], label="served (expected)", color="tab:blue")
    ax.plot(labels, cols["ctr_oracle"], label="oracle (expected)", color="black")
    ax.plot(labels, cols["ctr_frozen"], label="frozen model (expected)", color="tab:gray",
            ls="--")
    _markers(ax, series, drifts)
    ax.set(xlabel="labels", ylabel="CTR", title=f"{title}: CTR served vs frozen vs oracle")
    ax.legend(loc="best")
    _time_axis(ax, series)
    fig.tight_layout()
    fig.savefig(out_dir / PLOTS["ctr"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    versions = list(dict.fromkeys(c for c in series.champion if c))
    level = [versions.index(c) if c else math.nan for c in series.champion]
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.step(labels, level, where="post", color="tab:green")
    ax.set_yticks(range(len(versions)), versions)
    ax.set(xlabel="labels", ylabel="champion", title=f"{title}: champion over time")
    _time_axis(ax, series)
    fig.tight_layout()
    fig.savefig(out_dir / PLOTS["champion"], dpi=100, bbox_inches="tight")
    plt.close(fig)


def _markdown(series: Series, summary: dict[str, Any]) -> str:
    regret = summary["regret"]
    recovery = summary.get("recovery_labels") or {}
    ctr = summary.get("ctr") or {}
    rows = [
        ("scenario (seed)", f"{summary['scenario']} ({summary.get('seed', '-')})"),
        ("labels", _fmt(summary.get("labels", int(series.columns["labels"][-1])))),
        ("final rolling regret (system)", _fmt(_last(series.columns["regret"]))),
        ("mean regret (system)", _fmt(regret.get("system"))),
        ("mean regret (frozen)", _fmt(regret.get("frozen"))),
        ("CTR served / frozen / oracle (expected)",
         f"{_fmt(ctr.get('served_expected'))} / {_fmt(ctr.get('frozen_expected'))} / "
         f"{_fmt(ctr.get('oracle_expected'))}"),
        ("recovery labels", ", ".join(f"drift at request {k}: "
                                      f"{'not recovered' if v is None else v}"
                                      for k, v in recovery.items()) or "-"),
        ("promotions", _fmt(summary["promotions"])),
        ("champion (frozen)", f"{summary.get('champion', '-')} "
                              f"({summary.get('frozen_version', '-')})"),
        ("failed calls", _fmt(summary["failed_calls"])),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"""# Learning-quality report: {summary['scenario']}

Regret is log loss above the optimal (the true click probability): 0 is the best possible.

| figure | value |
|---|---|
{table}

## Rolling log loss

![rolling log loss]({PLOTS['logloss']})

The live system (blue) should track the optimal (black) and fall back towards it after each
drift (red dotted) and promotion (green dashed), while the frozen model (grey) stays behind.
The lower panel is the same as regret, the loss above the optimal: a drift that changes how
often people click moves every loss, the gap shows who adapted.

## CTR

![CTR served vs oracle]({PLOTS['ctr']})

The gap between the served ranking's expected CTR and the oracle ranking's is the clicks the
model's ranking loses.

## Champion timeline

![champion over time]({PLOTS['champion']})

Each step up is a new champion version promoted by the gate, at the label count shown.
"""


def write_report(out_dir: Path) -> Path:
    """Write ``out_dir/report.md`` and its PNG plots from a simulation's output.

    Args:
        out_dir: the directory ``streamlearn simulate --out`` wrote.

    Returns:
        The path of ``report.md``.

    Raises:
        ReportError: ``timeseries.csv`` or ``summary.json`` is missing or malformed.
    """
    out_dir = Path(out_dir)
    series = read_timeseries(out_dir / "timeseries.csv")
    summary = read_summary(out_dir / "summary.json")
    _plots(out_dir, series, summary)
    report = out_dir / "report.md"
    report.write_text(_markdown(series, summary))
    return report
