"""The dashboard's tables under the page's filters, and their csv/xlsx exports.

The page filters its charts in the browser (``static/dashboard.js``); an export is
asked of the server with the same filters in the query string, so the file holds what
the page showed. The two apply one rule, tested against each other in Chromium:

- a bank: only that bank's outlets, business, reconciliation and freshness;
- a town: only that town's outlets; business, reconciliation and freshness of the
  banks with an outlet there (the marts count business per bank, not per town);
- a month range: business and reconciliation in those months (outlets are today's
  snapshot and freshness is as of the rebuild: neither has a month).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from govbank.dashboard.data import DATASET_LABELS, STATUS_LABELS, DashboardData
from govbank.domain.datasets import BIZ_TYPES, OUTLET_TYPES

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
TABLES: dict[str, str] = {
    "towns": "各街道（镇）服务点",
    "monthly": "电子营业执照业务月度明细",
    "reconciliation": "业务核对",
    "freshness": "报送及时性",
}
SOURCES: dict[str, str] = {
    "towns": "mart_outlets_by_town",
    "monthly": "mart_elicense_monthly",
    "reconciliation": "mart_reconciliation",
    "freshness": "mart_bank_freshness",
}


@dataclass(frozen=True)
class Filters:
    start: str | None = None  # YYYY-MM, inclusive
    end: str | None = None
    town: str | None = None
    bank: str | None = None

    @classmethod
    def from_query(cls, params: Mapping[str, str], data: DashboardData) -> Filters:
        """Unknown towns, banks and malformed months are dropped, not errors: a stale
        bookmark still opens the page."""
        towns = {t.code for t in data.towns}

        def month(key: str) -> str | None:
            value = params.get(key) or ""
            return value if MONTH.match(value) else None

        start, end = month("from"), month("to")
        if start and end and start > end:
            start, end = end, start
        town = params.get("town") if params.get("town") in towns else None
        bank = params.get("bank") if params.get("bank") in data.banks else None
        return cls(start, end, town, bank)

    def banks_in_scope(self, data: DashboardData) -> set[str] | None:
        """The banks the business, reconciliation and freshness rows are limited to."""
        scope: set[str] | None = None
        if self.town:
            scope = {o.bank_code for o in data.outlets if o.town_code == self.town and o.outlets}
        if self.bank:
            scope = {self.bank} if scope is None else scope & {self.bank}
        return scope

    def in_range(self, month: str) -> bool:
        return (self.start is None or month >= self.start) and (self.end is None or month <= self.end)

    def range_label(self, data: DashboardData) -> tuple[str, str]:
        months = data.months or [""]
        return self.start or months[0], self.end or months[-1]


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    source: str
    headers: tuple[str, ...]
    rows: list[tuple[object, ...]]


def _names(data: DashboardData) -> dict[str, str]:
    return dict(data.banks)


def table(data: DashboardData, name: str, filters: Filters) -> Table:
    """One of :data:`TABLES` as the page shows it under ``filters``."""
    names = _names(data)
    scope = filters.banks_in_scope(data)
    rows: list[tuple[object, ...]] = []
    if name == "towns":
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for o in data.outlets:
            if (filters.bank is None or o.bank_code == filters.bank) and (
                filters.town is None or o.town_code == filters.town
            ):
                counts[o.town_code][o.outlet_type] += o.outlets
        for t in data.towns:
            if filters.town is None or t.code == filters.town:
                per = [counts[t.code].get(k, 0) for k in OUTLET_TYPES]
                rows.append((t.name, *per, sum(per)))
        headers: tuple[str, ...] = ("街道（镇）", *OUTLET_TYPES, "合计")
    elif name == "monthly":
        merged: dict[tuple[str, str], list] = {}
        for m in data.monthly:
            if (scope is None or m.bank_code in scope) and filters.in_range(m.month):
                row = merged.setdefault((m.bank_code, m.month), [0, 0, Decimal(0), Decimal(0)])
                row[BIZ_TYPES.index(m.biz_type) if m.biz_type in BIZ_TYPES else 0] += m.records
                row[2] += m.credit_amount_yuan or 0
                row[3] += m.drawn_amount_yuan or 0
        for (bank, month), (opened, loans, credit, drawn) in sorted(merged.items()):
            rows.append((names.get(bank, bank), month, opened, loans, credit, drawn))
        headers = ("银行", "月份", "一照开户（笔）", "一照贷款（笔）", "授信金额（元）", "用信金额（元）")
    elif name == "reconciliation":
        for r in data.recon:
            if (scope is None or r.bank_code in scope) and filters.in_range(r.month):
                rows.append((names.get(r.bank_code, r.bank_code), r.month, r.scene, r.matched, r.bank_only, r.gov_only))
        headers = ("银行", "月份", "场景", "已匹配（笔）", "仅银行有（笔）", "仅政务平台有（笔）")
    elif name == "freshness":
        for f in data.freshness:
            if scope is None or f.bank_code in scope:
                rows.append((
                    names.get(f.bank_code, f.bank_code),
                    DATASET_LABELS.get(f.dataset, f.dataset),
                    f.last_business_date.isoformat() if f.last_business_date else "从未报送",
                    "逾期" if f.is_late else "按时",
                    STATUS_LABELS.get(f.last_status or "", f.last_status or ""),
                    f.days_late,
                ))
        headers = ("银行", "数据", "最近业务日期", "状态", "最近文件", "逾期天数")
    else:
        raise KeyError(name)
    return Table(name, TABLES[name], SOURCES[name], headers, rows)


def describe(data: DashboardData, filters: Filters) -> str:
    """The filters in words, written above an exported table."""
    start, end = filters.range_label(data)
    parts = [f"月份 {start} 至 {end}"]
    if filters.town:
        parts.append("街道（镇） " + next(t.name for t in data.towns if t.code == filters.town))
    if filters.bank:
        parts.append("银行 " + data.banks.get(filters.bank, filters.bank))
    return "；".join(parts)


def filename(data: DashboardData, t: Table, filters: Filters, ext: str) -> str:
    """ASCII, with the month range: ``govbank_monthly_2023-01_2023-06.xlsx``."""
    start, end = filters.range_label(data)
    extra = "".join(f"_{v}" for v in (filters.town, filters.bank) if v)
    return f"govbank_{t.name}_{start}_{end}{extra}.{ext}"


def to_csv(t: Table) -> bytes:
    """UTF-8 with a BOM: Excel on a Chinese Windows opens it without mojibake."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(t.headers)
    writer.writerows([(f"{v:f}" if isinstance(v, Decimal) else v) for v in row] for row in t.rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def to_xlsx(t: Table, note: str) -> bytes:
    """One sheet: the title, the filters and the mart it came from, then the table."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = t.title[:31]
    ws.append([t.title])
    ws["A1"].font = Font(bold=True, size=13)
    ws.append([note])
    ws.append([f"来源：{t.source}"])
    ws.append(list(t.headers))
    for cell in ws[4]:
        cell.font = Font(bold=True)
    for row in t.rows:
        ws.append(list(row))
    for col, header in zip(ws.iter_cols(min_row=4, max_row=4), t.headers, strict=True):
        ws.column_dimensions[col[0].column_letter].width = max(10, 2 * len(header) + 2)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
