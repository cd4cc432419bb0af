"""The 政银合作 work report: figures from the marts, wording from an editable template.

``figures`` reads what a period's report quotes, each table with the mart it came from;
``render`` fills the Jinja2 template (``templates/half_year.md.j2``, or the file named
by ``GOVBANK_REPORT_TEMPLATE``); ``write`` makes the text, the xlsx and the docx.
"""

from govbank.report.figures import ReportData, SourcedTable, collect
from govbank.report.render import render_text, yi_yuan
from govbank.report.write import periods_for, write_report, write_reports

__all__ = [
    "ReportData",
    "SourcedTable",
    "collect",
    "periods_for",
    "render_text",
    "write_report",
    "write_reports",
    "yi_yuan",
]
