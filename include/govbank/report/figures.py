"""What a period's report quotes, read from the marts (and the e-licence fact table).

Every figure comes with the table it was counted from (``SourcedTable.source`` names the
mart and the filter), so the xlsx can show where each number stands. Stocks (outlets,
terminals, vans, banks) are the live outlets on record in the marts, opened by ``as_of``;
flows (e-licence business, new supermarkets, banks joined, reconciliation) are counted
inside the period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select

from govbank.domain.datasets import OUTLET_TYPES
from govbank.warehouse.schema import (
    dim_bank,
    fact_elicense_biz,
    mart_bank_outlets,
    mart_outlet_detail,
    mart_reconciliation,
)

SUPERMARKET, TERMINAL, VAN, _ORDINARY = OUTLET_TYPES
OPENING, LOAN = "一照开户", "一照贷款"


@dataclass(frozen=True)
class SourcedTable:
    """A table the report quotes, and the mart (with its filter) it was read from."""

    sheet: str  # xlsx sheet name (at most 31 characters)
    title: str
    source: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]


@dataclass
class ReportData:
    start: dt.date
    end: dt.date
    as_of: dt.date
    context: dict[str, Any] = field(default_factory=dict)  # what the template sees
    tables: list[SourcedTable] = field(default_factory=list)


def period_label(start: dt.date, end: dt.date) -> str:
    """How a work summary names the period: 2023年上半年, 2023年5月, or the two days."""
    if start.year == end.year and (start.month, start.day) == (1, 1) and (end.month, end.day) == (6, 30):
        return f"{start.year}年上半年"
    if start.year == end.year and (start.month, start.day) == (7, 1) and (end.month, end.day) == (12, 31):
        return f"{start.year}年下半年"
    next_month = (end.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    if start.day == 1 and (start.year, start.month) == (end.year, end.month) and end == next_month - dt.timedelta(1):
        return f"{start.year}年{start.month}月"
    return f"{cn_date(start)}至{cn_date(end) if end.year != start.year else f'{end.month}月{end.day}日'}"


def cn_date(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _live_by(as_of: dt.date):  # type: ignore[no-untyped-def]
    d = mart_outlet_detail
    return or_(d.c.opened_on.is_(None), d.c.opened_on <= as_of)


def _elicense(conn: Connection, start: dt.date, end: dt.date) -> tuple[dict, SourcedTable]:
    f, b = fact_elicense_biz, dim_bank
    loan = f.c.biz_type == LOAN
    rows = conn.execute(
        select(
            f.c.bank_code,
            b.c.bank_name,
            func.count(case((f.c.biz_type == OPENING, 1))),
            func.count(case((loan, 1))),
            func.coalesce(func.sum(case((loan, f.c.credit_amount_yuan))), 0),
            func.coalesce(func.sum(case((loan, f.c.drawn_amount_yuan))), 0),
        )
        .select_from(f.outerjoin(b, b.c.bank_code == f.c.bank_code))
        .where(f.c.status == "有效", f.c.biz_date >= start, f.c.biz_date <= end)
        .group_by(f.c.bank_code, b.c.bank_name)
        .order_by(f.c.bank_code)
    ).all()
    rows = [(r[0], r[1], int(r[2]), int(r[3]), Decimal(r[4]), Decimal(r[5])) for r in rows]
    figures = {
        "openings": sum(r[2] for r in rows),
        "loans": sum(r[3] for r in rows),
        "credit": sum((r[4] for r in rows), Decimal(0)),
        "drawn": sum((r[5] for r in rows), Decimal(0)),
    }
    figures["total"] = figures["openings"] + figures["loans"]
    table = SourcedTable(
        "电子营业执照业务",
        "电子营业执照业务（按银行）",
        f"fact_elicense_biz：status = 有效，biz_date 在 {start} 至 {end}；"
        "授信、用信为一照贷款的 credit_amount_yuan、drawn_amount_yuan 之和（元）",
        ("银行代码", "银行名称", "一照开户（笔）", "一照贷款（笔）", "授信金额（元）", "用信金额（元）"),
        rows,
    )
    return figures, table


def _outlets(conn: Connection, kind: str, as_of: dt.date) -> list[Any]:
    d = mart_outlet_detail
    return list(
        conn.execute(
            select(
                d.c.bank_code, d.c.bank_name, d.c.outlet_code, d.c.outlet_name, d.c.town_name,
                d.c.service_items, d.c.opened_on,
            )
            .where(d.c.outlet_type == kind, _live_by(as_of))
            .order_by(d.c.bank_code, d.c.outlet_code)
        ).all()
    )


_OUTLET_COLUMNS = ("银行代码", "银行名称", "网点编码", "网点名称", "所在镇街", "可办事项（项）", "开设日期")


def collect(conn: Connection, start: dt.date, end: dt.date, as_of: dt.date | None = None) -> ReportData:
    """Read every figure of the period's report; ``as_of`` (default ``end``) dates the stocks."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    as_of = as_of or end
    data = ReportData(start, end, as_of)
    period = {
        "start": start, "end": end, "as_of": as_of, "label": period_label(start, end),
        "start_cn": cn_date(start), "end_cn": cn_date(end), "as_of_cn": cn_date(as_of),
    }
    elic, elic_table = _elicense(conn, start, end)
    (terminal_fig, super_fig, van_fig), outlet_tables = _service_points(conn, start, end, as_of)
    bank_fig, bank_table = _banks(conn, start, end)
    recon_fig, recon_table = _reconciliation(conn, start, end)
    data.context = {
        "period": period,
        "elic": elic,
        "terminals": terminal_fig,
        "supermarkets": super_fig,
        "banks": bank_fig,
        "vans": van_fig,
        "recon": recon_fig,
    }
    terminal_table, super_table, van_table = outlet_tables
    data.tables = [elic_table, terminal_table, super_table, bank_table, van_table, recon_table]
    return data


def _service_points(
    conn: Connection, start: dt.date, end: dt.date, as_of: dt.date
) -> tuple[tuple[dict, dict, dict], tuple[SourcedTable, SourcedTable, SourcedTable]]:
    """Terminals, service supermarkets (opened in the period, per bank) and vans as of ``as_of``."""
    terminals = _outlets(conn, TERMINAL, as_of)
    items = [t.service_items for t in terminals if t.service_items is not None]
    terminal_fig = {"count": len(terminals), "max_items": max(items, default=0)}

    supers = _outlets(conn, SUPERMARKET, as_of)
    opened = [s for s in supers if s.opened_on is not None and start <= s.opened_on <= end]
    super_fig = {"total": len(supers), "opened": len(opened)}
    per_bank: dict[tuple[str, str], list[int]] = {}
    for s in supers:
        counts = per_bank.setdefault((s.bank_code, s.bank_name), [0, 0])
        counts[0] += 1
        counts[1] += s in opened

    vans = _outlets(conn, VAN, as_of)
    towns = sorted({v.town_name for v in vans if v.town_name})
    van_fig = {"count": len(vans), "towns": towns}

    live = f"mart_outlet_detail：outlet_type = {{}}，opened_on ≤ {as_of}（正常营业的当前网点）"
    tables = (
        SourcedTable("自助终端", "“瓯e办”自助服务终端", live.format(TERMINAL), _OUTLET_COLUMNS,
                     [tuple(t) for t in terminals]),
        SourcedTable(
            "政务服务超市", "政务服务超市（按银行）",
            live.format(SUPERMARKET) + f"；本期新开 = opened_on 在 {start} 至 {end}",
            ("银行代码", "银行名称", "政务服务超市（个）", "其中本期新开（个）"),
            [(code, name, n, new) for (code, name), (n, new) in sorted(per_bank.items())],
        ),
        SourcedTable("流动服务车", "政银服务流动车", live.format(VAN), _OUTLET_COLUMNS,
                     [tuple(v) for v in vans]),
    )
    return (terminal_fig, super_fig, van_fig), tables


def _banks(conn: Connection, start: dt.date, end: dt.date) -> tuple[dict, SourcedTable]:
    """The cooperating banks, those that joined in the period, and their outlets."""
    bo = mart_bank_outlets
    banks = conn.execute(
        select(
            bo.c.bank_code, bo.c.bank_name, bo.c.joined_on, bo.c.outlets, bo.c.service_outlets,
            bo.c.supermarkets, bo.c.terminals, bo.c.vans,
        ).order_by(bo.c.joined_on, bo.c.bank_code)
    ).all()
    joined = [b for b in banks if b.joined_on is not None and start <= b.joined_on <= end]
    bank_fig = {
        "total": sum(1 for b in banks if b.outlets > 0),
        "joined": [
            {"bank_code": b.bank_code, "bank_name": b.bank_name, "joined_on": b.joined_on,
             "joined_cn": cn_date(b.joined_on), "outlets": b.outlets,
             "service_outlets": b.service_outlets}
            for b in joined
        ],
    }
    table = SourcedTable(
        "合作银行", "合作银行及其网点",
        f"mart_bank_outlets（本期加入 = joined_on 在 {start} 至 {end}）",
        ("银行代码", "银行名称", "加入日期", "本期加入", "网点（个）", "政银合作网点（个）",
         "政务服务超市（个）", "自助终端（台）", "流动服务车（辆）"),
        [(b.bank_code, b.bank_name, b.joined_on, "是" if b in joined else "否", b.outlets,
          b.service_outlets, b.supermarkets, b.terminals, b.vans) for b in banks],
    )
    return bank_fig, table


def _reconciliation(conn: Connection, start: dt.date, end: dt.date) -> tuple[dict, SourcedTable]:
    """Matched, bank-only and government-only records of the period's months."""
    r = mart_reconciliation
    first_month = start.replace(day=1)
    rows = conn.execute(
        select(r.c.bank_code, r.c.scene, func.sum(r.c.matched), func.sum(r.c.bank_only), func.sum(r.c.gov_only))
        .where(and_(r.c.month_start >= first_month, r.c.month_start <= end))
        .group_by(r.c.bank_code, r.c.scene)
        .order_by(r.c.bank_code, r.c.scene)
    ).all()
    recon_rows = [(a, s, int(m), int(bo_), int(go)) for a, s, m, bo_, go in rows]
    recon_fig = {
        "matched": sum(x[2] for x in recon_rows),
        "bank_only": sum(x[3] for x in recon_rows),
        "gov_only": sum(x[4] for x in recon_rows),
    }
    table = SourcedTable(
        "对账", "与政府平台对账（按银行、场景）",
        f"mart_reconciliation：month_start 在 {first_month} 至 {end}",
        ("银行代码", "场景", "一致（笔）", "仅银行报送（笔）", "仅平台记录（笔）"),
        recon_rows,
    )
    return recon_fig, table
