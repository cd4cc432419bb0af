"""The marts dashboards read, rebuilt from the warehouse after each load.

Each mart is replaced inside one transaction (delete, then insert-select), so a
reader sees the old or the new version, never half of one, and on PostgreSQL never
waits on the rebuild (MVCC).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import (
    Connection,
    Date,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
)

from govbank.config.contracts import BankContract
from govbank.domain.datasets import OUTLET_TYPES, Dataset
from govbank.domain.metrics import BY_CODE, METRICS
from govbank.domain.statuses import LOADED
from govbank.marts.reconcile import rebuild_reconciliation
from govbank.warehouse.dialect import month_of, month_start
from govbank.warehouse.schema import (
    dim_bank,
    dim_metric,
    dim_outlet,
    dim_town,
    etl_file,
    fact_elicense_biz,
    mart_bank_freshness,
    mart_bank_outlets,
    mart_elicense_monthly,
    mart_kpi,
    mart_outlet_detail,
    mart_outlets_by_town,
)

SUPERMARKET, TERMINAL, VAN, ORDINARY = OUTLET_TYPES


def kpi_values(conn: Connection, as_of: dt.date) -> dict[str, object]:
    o, f = dim_outlet, fact_elicense_biz
    year_start = dt.date(as_of.year, 1, 1)
    live = and_(o.c.is_current.is_(True), o.c.status == "正常")

    def outlets(kind: str, *extra) -> int:  # type: ignore[no-untyped-def]
        q = select(func.count()).where(live, o.c.outlet_type == kind, *extra)
        return int(conn.execute(q).scalar_one())

    biz = and_(f.c.status == "有效", f.c.biz_date >= year_start, f.c.biz_date <= as_of)
    loan = f.c.biz_type == "一照贷款"
    row = conn.execute(
        select(
            func.count(),
            func.count(case((f.c.biz_type == "一照开户", 1))),
            func.count(case((loan, 1))),
            func.coalesce(func.sum(case((loan, f.c.credit_amount_yuan))), 0),
            func.coalesce(func.sum(case((loan, f.c.drawn_amount_yuan))), 0),
        ).where(biz)
    ).one()
    return {
        "service_supermarkets": outlets("政务服务超市"),
        "service_supermarkets_opened_ytd": outlets(
            "政务服务超市", o.c.opened_on >= year_start, o.c.opened_on <= as_of
        ),
        "self_service_terminals": outlets("自助终端"),
        "mobile_service_vans": outlets("流动服务车"),
        "banks_in_cooperation": int(
            conn.execute(select(func.count(func.distinct(o.c.bank_code))).where(live)).scalar_one()
        ),
        "elicense_biz_total": row[0],
        "elicense_account_openings": row[1],
        "elicense_loans": row[2],
        "credit_amount_yuan": row[3],
        "drawn_amount_yuan": row[4],
    }


def rebuild_kpi(conn: Connection, as_of: dt.date) -> None:
    values = kpi_values(conn, as_of)
    if set(values) != set(BY_CODE):  # the labels and the report name exactly these
        raise AssertionError(f"kpi_values and domain.metrics disagree: {sorted(set(values) ^ set(BY_CODE))}")
    conn.execute(delete(mart_kpi).where(mart_kpi.c.as_of == as_of))
    conn.execute(insert(mart_kpi), [{"as_of": as_of, "metric": k, "value": v} for k, v in values.items()])


def rebuild_outlets_by_town(conn: Connection) -> None:
    o, t = dim_outlet, dim_town
    conn.execute(delete(mart_outlets_by_town))
    conn.execute(
        insert(mart_outlets_by_town).from_select(
            ["town_code", "town_name", "bank_code", "outlet_type", "outlets"],
            select(t.c.town_code, t.c.town_name, o.c.bank_code, o.c.outlet_type, func.count())
            .select_from(o.join(t, o.c.town_code == t.c.town_code))
            .where(o.c.is_current.is_(True), o.c.status == "正常")
            .group_by(t.c.town_code, t.c.town_name, o.c.bank_code, o.c.outlet_type),
        )
    )


def rebuild_elicense_monthly(conn: Connection) -> None:
    f = fact_elicense_biz
    month = month_of(conn, f.c.biz_date)
    first = month_start(conn, f.c.biz_date)
    credit = func.sum(f.c.credit_amount_yuan)
    drawn = func.sum(f.c.drawn_amount_yuan)
    utilisation = case((credit > 0, func.round(drawn * literal_column("1.0") / credit, 4)), else_=None)
    conn.execute(delete(mart_elicense_monthly))
    conn.execute(
        insert(mart_elicense_monthly).from_select(
            ["bank_code", "month", "biz_type", "records", "credit_amount_yuan", "drawn_amount_yuan",
             "utilisation", "month_start"],
            select(f.c.bank_code, month, f.c.biz_type, func.count(), credit, drawn, utilisation, first)
            .where(f.c.status == "有效")
            .group_by(f.c.bank_code, month, first, f.c.biz_type),
        )
    )


def counts_as_received():  # type: ignore[no-untyped-def]
    """Where an ``etl_file`` row counts as the bank having sent its feed for its business date.

    A loaded file; or a duplicate of a loaded file of the same dataset under a later
    business date: a bank re-sending an unchanged snapshot byte for byte under the new
    day's name did send for that day (its receipt says ``duplicate`` and names the
    original, nothing is loaded twice). The same file dropped again under its own date
    says nothing new and changes nothing here. Used by the late-bank check and
    ``mart_bank_freshness``; select from ``etl_file``.
    """
    original = etl_file.alias("original")
    loaded_original = (
        select(original.c.file_id)
        .where(
            original.c.file_id == etl_file.c.duplicate_of,
            original.c.status.in_(LOADED),
            original.c.dataset == etl_file.c.dataset,
            original.c.business_date < etl_file.c.business_date,
        )
        .exists()
    )
    return etl_file.c.status.in_(LOADED) | ((etl_file.c.status == "duplicate") & loaded_original)


def rebuild_outlet_detail(conn: Connection) -> None:
    """Every live outlet with its bank's and town's names: what a report quotes per outlet."""
    o, t, b = dim_outlet, dim_town, dim_bank
    conn.execute(delete(mart_outlet_detail))
    conn.execute(
        insert(mart_outlet_detail).from_select(
            ["bank_code", "outlet_code", "bank_name", "outlet_name", "outlet_type", "town_code",
             "town_name", "service_items", "opened_on", "opened_month"],
            select(
                o.c.bank_code, o.c.outlet_code, b.c.bank_name, o.c.outlet_name, o.c.outlet_type,
                o.c.town_code, t.c.town_name, o.c.service_items, o.c.opened_on,
                month_start(conn, o.c.opened_on),
            )
            .select_from(
                o.join(b, b.c.bank_code == o.c.bank_code).outerjoin(t, t.c.town_code == o.c.town_code)
            )
            .where(o.c.is_current.is_(True), o.c.status == "正常"),
        )
    )


def rebuild_bank_outlets(conn: Connection) -> None:
    """Per bank: when it joined and its live outlets, the service points apart."""
    d, b = mart_outlet_detail, dim_bank

    def of_type(*kinds: str):  # type: ignore[no-untyped-def]
        return func.count(case((d.c.outlet_type.in_(kinds), 1)))

    conn.execute(delete(mart_bank_outlets))
    conn.execute(
        insert(mart_bank_outlets).from_select(
            ["bank_code", "bank_name", "joined_on", "joined_month", "outlets", "service_outlets",
             "supermarkets", "terminals", "vans"],
            select(
                b.c.bank_code, b.c.bank_name, b.c.joined_on, month_start(conn, b.c.joined_on),
                func.count(d.c.outlet_code), of_type(SUPERMARKET, TERMINAL, VAN),
                of_type(SUPERMARKET), of_type(TERMINAL), of_type(VAN),
            )
            .select_from(b.outerjoin(d, d.c.bank_code == b.c.bank_code))
            .group_by(b.c.bank_code, b.c.bank_name, b.c.joined_on),
        )
    )


def rebuild_metric_dictionary(conn: Connection) -> None:
    """dim_metric follows domain.metrics, where the code's labels live."""
    conn.execute(delete(dim_metric))
    conn.execute(
        insert(dim_metric),
        [
            {"code": m.code, "label": m.label, "short_label": m.short, "unit": m.unit,
             "definition": m.definition, "position": i}
            for i, m in enumerate(METRICS, start=1)
        ],
    )


def rebuild_bank_freshness(
    conn: Connection, contracts: Mapping[str, BankContract], as_of: dt.date
) -> list[dict]:
    """Per bank and dataset: the last business date received and how late it is."""
    e = etl_file
    last_ok = {
        (r.bank_code, r.dataset): r.last_date
        for r in conn.execute(
            select(e.c.bank_code, e.c.dataset, func.max(e.c.business_date).label("last_date"))
            .where(counts_as_received(), cast(e.c.business_date, Date) <= as_of)
            .group_by(e.c.bank_code, e.c.dataset)
        )
    }
    latest = {}
    for r in conn.execute(
        select(e.c.bank_code, e.c.dataset, e.c.received_at, e.c.status)
        .where(e.c.dataset.is_not(None), (e.c.status != "duplicate") | counts_as_received())
        .order_by(e.c.business_date, e.c.received_at, e.c.file_id)
    ):
        latest[(r.bank_code, r.dataset)] = r
    rows = []
    for code, contract in sorted(contracts.items()):
        for dataset in Dataset:
            feed = contract.feeds.get(dataset)
            if feed is None:
                continue
            last = last_ok.get((code, dataset.value))
            since = last if last is not None else contract.joined_on
            days_late = max(0, (as_of - since).days - (feed.expected_every_days - 1))
            seen = latest.get((code, dataset.value))
            rows.append(
                {
                    "bank_code": code,
                    "dataset": dataset.value,
                    "as_of": as_of,
                    "last_business_date": last,
                    "last_received_at": seen.received_at if seen else None,
                    "last_status": seen.status if seen else None,
                    "expected_every_days": feed.expected_every_days,
                    "days_late": days_late,
                    "is_late": last is None or days_late >= max(1, feed.warn_after_days),
                }
            )
    conn.execute(delete(mart_bank_freshness))
    if rows:
        conn.execute(insert(mart_bank_freshness), rows)
    return rows


def rebuild_all(
    conn: Connection, contracts: Mapping[str, BankContract], as_of: dt.date
) -> dict[str, object]:
    """Rebuild every mart; returns the KPI figures for the log and the demo."""
    rebuild_kpi(conn, as_of)
    rebuild_outlets_by_town(conn)
    rebuild_elicense_monthly(conn)
    rebuild_outlet_detail(conn)
    rebuild_bank_outlets(conn)
    rebuild_metric_dictionary(conn)
    rebuild_bank_freshness(conn, contracts, as_of)
    rebuild_reconciliation(conn)
    return kpi_values(conn, as_of)


