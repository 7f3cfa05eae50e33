"""The learning-quality report: markdown figures from the inputs, real PNGs, clear errors."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from services.simulator.driver import ROW_FIELDS
from services.simulator.report import ReportError, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_row(i: int, champion: str = "v1", promotions: int = 0, **over: Any) -> dict[str, Any]:
    """Row ``i`` of a run with 500 labels per row; regret shrinks as the system learns."""
    regret = 0.1 / (i + 1)
    row = {"labels": 500 * (i + 1), "requests": 120 * (i + 1), "elapsed_s": 2.0 * (i + 1),
           "system": 0.3 + regret, "frozen": 0.45, "optimal": 0.3, "regret": regret,
           "ctr": 0.05, "ctr_expected": 0.05, "ctr_oracle": 0.07, "ctr_frozen": 0.04,
           "champion": champion,
           "promotions": promotions}
    return {**row, **over}


def make_summary(**over: Any) -> dict[str, Any]:
    summary = {"scenario": "sudden", "seed": 3, "labels": 4000, "failed_calls": 7,
               "champion": "v2", "frozen_version": "v1", "promotions": 1,
               "logloss": {"system": 0.3321, "frozen": 0.45, "optimal": 0.3},
               "regret": {"system": 0.0321, "frozen": 0.15},
               "ctr": {"served": 0.05, "served_expected": 0.051, "oracle_expected": 0.07},
               "recovery_labels": {"480": 1234}}
    return {**summary, **over}


@pytest.fixture
def make_run(tmp_path: Path) -> Callable[..., Path]:
    """``make_run(rows=..., summary=...)``: a simulate --out directory; by default 8 rows with
    a promotion v1 → v2 at row 5 and a drift at request 480."""

    def make(rows: list[dict[str, Any]] | None = None,
             summary: dict[str, Any] | None = None) -> Path:
        if rows is None:
            rows = [make_row(i, *(("v2", 1) if i >= 5 else ("v1", 0))) for i in range(8)]
        with open(tmp_path / "timeseries.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=ROW_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        (tmp_path / "summary.json").write_text(json.dumps(summary or make_summary()))
        return tmp_path

    return make


def test_report_states_the_figures_and_links_real_pngs(make_run: Callable[..., Path]) -> None:
    out = make_run()
    report = write_report(out)
    assert report == out / "report.md"
    text = report.read_text()
    for figure in ("sudden", "0.0321", "0.1500", "1234", "| promotions | 1 |",
                   "| failed calls | 7 |", "v2 (v1)"):
        assert figure in text
    # final rolling regret: the last row's, 0.1 / 8
    assert "| final rolling regret (system) | 0.0125 |" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 3
    for link in links:
        png = out / link
        assert not Path(link).is_absolute()
        data = png.read_bytes()
        assert data[:8] == PNG_SIGNATURE
        assert len(data) > 5_000


def test_a_run_without_promotions_or_drift_still_reports(make_run: Callable[..., Path]) -> None:
    out = make_run(rows=[make_row(0, champion="")],
                   summary=make_summary(promotions=0, recovery_labels={}))
    text = write_report(out).read_text()
    assert "| recovery labels | - |" in text
    assert "| promotions | 0 |" in text


def test_missing_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="timeseries.csv: not found"):
        write_report(tmp_path)


@pytest.mark.parametrize(("breaks", "message"), [
    (lambda d: (d / "timeseries.csv").write_text("labels,requests\n1,2\n"),
     r"timeseries.csv: missing column\(s\) elapsed_s"),
    (lambda d: (d / "timeseries.csv").write_text(",".join(ROW_FIELDS) + "\n"),
     "timeseries.csv: no data rows"),
    (lambda d: (d / "timeseries.csv").write_text(
        ",".join(ROW_FIELDS) + "\n" + ",".join(["x"] * len(ROW_FIELDS)) + "\n"),
     "timeseries.csv, line 2: not a number"),
    (lambda d: (d / "summary.json").write_text("{not json"), "summary.json: not valid JSON"),
    (lambda d: (d / "summary.json").write_text('{"scenario": "s"}'),
     r"summary.json: missing key\(s\) regret, promotions, failed_calls"),
    (lambda d: (d / "summary.json").unlink(), "summary.json: not found"),
])
def test_malformed_input_is_a_clear_error(make_run: Callable[..., Path],
                                          breaks: Callable[[Path], Any], message: str) -> None:
    out = make_run()
    breaks(out)
    with pytest.raises(ReportError, match=message):
        write_report(out)
    assert not (out / "report.md").exists()


def test_streamlearn_report_command_writes_it_and_fails_clearly(
        make_run: Callable[..., Path], tmp_path: Path) -> None:
    from services.cli import main

    out = make_run()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").is_file()
    assert main(["report", str(tmp_path / "absent")]) == 1
