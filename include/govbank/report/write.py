"""The report as text, xlsx (the paragraphs, then one sheet per quoted table with its
source) or docx (paragraphs and the same tables, written as plain WordprocessingML: the
format needs no library for paragraphs and simple tables)."""

from __future__ import annotations

import datetime as dt
import io
import os
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from govbank.report.figures import ReportData, collect
from govbank.report.render import paragraphs, render_text

REPORTS_DIR_ENV = "GOVBANK_REPORTS_DIR"


def build(conn: Any, start: dt.date, end: dt.date, as_of: dt.date | None = None,
          template: str | os.PathLike[str] | None = None) -> tuple[ReportData, str]:
    data = collect(conn, start, end, as_of)
    return data, render_text(data.context, template)


def _cell(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def xlsx_bytes(data: ReportData, text: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    title, paras = paragraphs(text)
    wb = Workbook()
    ws = wb.active
    ws.title = "报告"
    ws.column_dimensions["A"].width = 110
    row = 1
    if title:
        ws.cell(row, 1, title).font = Font(bold=True, size=14)
        row += 1
    for p in paras:
        ws.cell(row, 1, p).alignment = Alignment(wrap_text=True, vertical="top")
        row += 1
    ws.cell(row + 1, 1, "每个数字的来源见后面各表（每表第1行写明来自哪个数据集市及筛选条件）。")
    for table in data.tables:
        sheet = wb.create_sheet(table.sheet[:31])
        sheet.cell(1, 1, f"来源：{table.source}")
        sheet.cell(2, 1, table.title).font = Font(bold=True)
        for c, name in enumerate(table.columns, start=1):
            sheet.cell(3, c, name).font = Font(bold=True)
            sheet.column_dimensions[sheet.cell(3, c).column_letter].width = max(12, len(name) * 2 + 2)
        for r, values in enumerate(table.rows, start=4):
            for c, value in enumerate(values, start=1):
                cell = sheet.cell(r, c, _cell(value))
                if isinstance(value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                elif isinstance(value, Decimal):
                    cell.number_format = "#,##0.00"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType='
    '"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)


def _para(text: str, *, bold: bool = False, size: int | None = None, center: bool = False) -> str:
    props = "".join((
        "<w:rFonts w:eastAsia=\"宋体\"/>",
        "<w:b/>" if bold else "",
        f'<w:sz w:val="{size}"/>' if size else "",
    ))
    ppr = '<w:pPr><w:jc w:val="center"/></w:pPr>' if center else ""
    return f'<w:p>{ppr}<w:r><w:rPr>{props}</w:rPr><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    return str(value)


def docx_bytes(data: ReportData, text: str) -> bytes:
    title, paras = paragraphs(text)
    body = []
    if title:
        body.append(_para(title, bold=True, size=32, center=True))
    body += [_para(p) for p in paras]
    body.append(_para("附表（每表注明来源数据集市及筛选条件）", bold=True))
    for table in data.tables:
        body.append(_para(table.title, bold=True))
        body.append(_para(f"来源：{table.source}", size=18))
        grid = [table.columns, *[tuple(_text(v) for v in row) for row in table.rows]]
        rows = "".join(
            "<w:tr>" + "".join(f"<w:tc>{_para(str(v), bold=(i == 0), size=18)}</w:tc>" for v in row) + "</w:tr>"
            for i, row in enumerate(grid)
        )
        borders = "".join(
            f'<w:{side} w:val="single" w:sz="4" w:space="0" w:color="auto"/>'
            for side in ("top", "left", "bottom", "right", "insideH", "insideV")
        )
        body.append(f'<w:tbl><w:tblPr><w:tblBorders>{borders}</w:tblBorders></w:tblPr>{rows}</w:tbl>')
    document = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {_W}><w:body>'
        + "".join(body)
        + "<w:sectPr/></w:body></w:document>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CONTENT_TYPES)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("word/document.xml", document)
    return out.getvalue()


def write_report(conn: Any, start: dt.date, end: dt.date, out: str | Path,
                 as_of: dt.date | None = None, template: str | None = None) -> str:
    """Write the period's report to ``out`` (.xlsx, .docx, or ``-`` for the text, returned)."""
    data, text = build(conn, start, end, as_of, template)
    if str(out) == "-":
        return text
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        payload = xlsx_bytes(data, text)
    elif suffix == ".docx":
        payload = docx_bytes(data, text)
    elif suffix in (".txt", ".md"):
        payload = text.encode("utf-8")
    else:
        raise ValueError(f"unknown report format {suffix!r}: use .xlsx, .docx, .txt or -")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(payload)
    tmp.replace(path)  # a reader never sees half a workbook
    return text


def periods_for(as_of: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    """The month and the half-year ``as_of`` falls in, each up to ``as_of``: name -> (start, end)."""
    half_start = dt.date(as_of.year, 1 if as_of.month <= 6 else 7, 1)
    half = "H1" if as_of.month <= 6 else "H2"
    return {
        f"{as_of:%Y-%m}": (as_of.replace(day=1), as_of),
        f"{as_of.year}{half}": (half_start, as_of),
    }


def reports_dir(env: dict[str, str] | None = None) -> Path:
    """``$GOVBANK_REPORTS_DIR``, else ``$GOVBANK_LOCAL_DIR/reports``."""
    from govbank.config.settings import DEFAULT_LOCAL_DIR

    env = dict(os.environ if env is None else env)
    if env.get(REPORTS_DIR_ENV):
        return Path(env[REPORTS_DIR_ENV])
    return Path(env.get("GOVBANK_LOCAL_DIR", str(DEFAULT_LOCAL_DIR))) / "reports"


def write_reports(warehouse_url: str, as_of: dt.date, folder: Path) -> list[Path]:
    """The month's and the half-year's report as of ``as_of``, as xlsx and docx, into ``folder``."""
    from govbank.warehouse.db import make_engine

    engine = make_engine(warehouse_url)
    written = []
    try:
        with engine.connect() as conn:
            for name, (start, end) in periods_for(as_of).items():
                for suffix in (".xlsx", ".docx"):
                    path = folder / f"govbank_report_{name}{suffix}"
                    write_report(conn, start, end, path, as_of)
                    written.append(path)
    finally:
        engine.dispose()
    return written
