"""The half-year report, downloadable from the dashboard.

The page runs the report's own command line (``python -m govbank report --from --to
[--as-of] --out FILE.xlsx``) in a separate process, so the report reads the marts with
the job's settings and the dashboard process never imports the report's dependencies.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

# (first day, last day, as-of day or None) -> the xlsx workbook's bytes
ReportMaker = Callable[[dt.date, dt.date, "dt.date | None"], bytes]


def default_report_maker() -> ReportMaker | None:
    """The report's writer when ``govbank.report`` is installed, else None (no link)."""
    try:
        found = importlib.util.find_spec("govbank.report") is not None
    except ModuleNotFoundError:
        found = False
    return _via_cli if found else None


def _via_cli(start: dt.date, end: dt.date, as_of: dt.date | None) -> bytes:
    """A separate process: the report reads the marts with the job's own settings."""
    with tempfile.TemporaryDirectory(prefix="govbank-report-") as tmp:
        out = Path(tmp) / "report.xlsx"
        cmd = [sys.executable, "-m", "govbank", "report", "--from", start.isoformat(),
               "--to", end.isoformat(), "--out", str(out)]
        if as_of:
            cmd += ["--as-of", as_of.isoformat()]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if run.returncode != 0 or not out.is_file():
            raise RuntimeError(f"govbank report exited {run.returncode}: {run.stderr[-500:]}")
        return out.read_bytes()


def month_bounds(start: str, end: str) -> tuple[dt.date, dt.date]:
    """'2023-01', '2023-06' -> 2023-01-01, 2023-06-30."""
    first = dt.date.fromisoformat(start + "-01")
    y, m = int(end[:4]), int(end[5:7])
    last = dt.date(y + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)
    return first, last
