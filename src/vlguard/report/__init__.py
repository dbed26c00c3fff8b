"""Reports over evaluation runs: one self-contained HTML file + markdown, or JSON / CSV tables.

``write_report(["runs/before", "runs/after"], "report/")`` is what ``vlguard report`` calls; the first
run is the baseline. The report only reads run folders (see docs/design.md for their format).
"""

from vlguard.report.build import FORMATS, ReportFiles, build_report, write_report
from vlguard.report.loading import RunData, RunFolderError, load_run, load_runs

__all__ = [
    "FORMATS",
    "ReportFiles",
    "RunData",
    "RunFolderError",
    "build_report",
    "load_run",
    "load_runs",
    "write_report",
]
