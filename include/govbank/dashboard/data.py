"""What the dashboard reads: the marts and the reference dimensions, nothing else.

The engine is the dashboard role's: on PostgreSQL a login that may only read the marts
and dimensions (``docker/grant_dashboard.py``); on the embedded SQLite file, which has
no roles, the file opened read-only (``mode=ro``), so the dashboard cannot write even
by mistake.
"""

from __future__ import annotations

import datetime as dt
import os
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, func, select

from govbank.config.connections import DASHBOARD_CONN_ID
from govbank.config.settings import ConnectionUrl, Settings
from govbank.domain.errors import ConfigError
from govbank.domain.metrics import BY_CODE
from govbank.warehouse.schema import (
    dim_bank,
    dim_town,
    mart_bank_freshness,
    mart_elicense_monthly,
    mart_kpi,
    mart_outlets_by_town,
    mart_reconciliation,
)


def _tile(code: str) -> tuple[str, str, str, str]:
    """metric, label, unit, kind ("count", or "yi" = yuan shown in 亿元)."""
    m = BY_CODE[code]
    return (code, m.short, "亿元", "yi") if m.unit == "元" else (code, m.short, m.unit, "count")


HEADLINE: tuple[tuple[str, str, str, str], ...] = tuple(
    _tile(code)
    for code in (
        "service_supermarkets",
        "service_supermarkets_opened_ytd",
        "self_service_terminals",
        "elicense_account_openings",
        "elicense_loans",
        "credit_amount_yuan",
        "drawn_amount_yuan",
    )
)
SECONDARY: tuple[tuple[str, str, str, str], ...] = tuple(
    _tile(code) for code in ("banks_in_cooperation", "mobile_service_vans", "elicense_biz_total")
)
DATASET_LABELS = {"OUTLET": "服务网点", "ELIC": "一照通办业务"}
STATUS_LABELS = {
    "accepted": "已接收",
    "partially_accepted": "部分接收",
    "rejected": "已拒收",
    "duplicate": "重复文件",
    "processing": "处理中",
}


def dashboard_url(
    env: dict[str, str] | None = None, connection_url: ConnectionUrl | None = None
) -> str:
    """The dashboard role's database URL.

    ``GOVBANK_DASHBOARD_URL`` when set, else the ``govbank_dashboard`` connection when
    ``connection_url`` finds it (PostgreSQL: the dashboard login); otherwise the embedded
    SQLite warehouse, read-only. A PostgreSQL warehouse without a dashboard URL is
    refused: the writer's credentials never serve the dashboard.
    """
    env = dict(os.environ if env is None else env)
    if env.get("GOVBANK_DASHBOARD_URL"):
        return env["GOVBANK_DASHBOARD_URL"]
    url = connection_url(DASHBOARD_CONN_ID) if connection_url else None
    if url:
        return url
    warehouse = Settings.from_env(env).warehouse_url
    if warehouse.startswith("sqlite:///"):
        return readonly_sqlite_url(Path(warehouse.removeprefix("sqlite:///")))
    raise ConfigError(
        f"the warehouse is not SQLite: set GOVBANK_DASHBOARD_URL (or the {DASHBOARD_CONN_ID} "
        "connection) to the read-only dashboard role"
    )


def readonly_sqlite_url(path: Path) -> str:
    """A SQLAlchemy URL that opens the SQLite file read-only (SQLite URI ``mode=ro``)."""
    return f"sqlite:///file:{quote(str(Path(path).resolve()))}?mode=ro&uri=true"


def make_dashboard_engine(url: str) -> Engine:
    """An engine on the dashboard's URL; PostgreSQL tables resolve in schema ``govbank``."""
    if url.startswith("sqlite:"):
        if "mode=ro" not in url:
            raise ConfigError("the dashboard opens SQLite read-only: use readonly_sqlite_url()")
        return create_engine(url, connect_args={"timeout": 30})
    from govbank.warehouse.db import make_engine

    return make_engine(url)


@dataclass(frozen=True)
class Town:
    code: str
    name: str
    kind: str
    longitude: float | None
    latitude: float | None
    by_type: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_type.values())


@dataclass(frozen=True)
class Freshness:
    bank_code: str
    dataset: str
    last_business_date: dt.date | None
    last_received_at: dt.datetime | None
    last_status: str | None
    expected_every_days: int
    days_late: int
    is_late: bool


class OutletRow(NamedTuple):
    town_code: str
    bank_code: str
    outlet_type: str
    outlets: int


class MonthlyRow(NamedTuple):
    bank_code: str
    month: str
    biz_type: str
    records: int
    credit_amount_yuan: Decimal | None
    drawn_amount_yuan: Decimal | None


class ReconRow(NamedTuple):
    bank_code: str
    month: str
    scene: str
    matched: int
    bank_only: int
    gov_only: int


@dataclass
class DashboardData:
    as_of: dt.date | None
    as_of_choices: list[dt.date]
    kpi: dict[str, Decimal]
    banks: dict[str, str]  # code -> name
    towns: list[Town]
    # bank -> month -> records (both biz types) and amounts of loans
    monthly_records: dict[str, dict[str, int]] = field(default_factory=dict)
    monthly_credit: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    # bank -> (matched, bank_only, gov_only)
    reconciliation: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    freshness: list[Freshness] = field(default_factory=list)
    # the rows behind the charts, for filtering on the page and the exports
    outlets: list[OutletRow] = field(default_factory=list)
    monthly: list[MonthlyRow] = field(default_factory=list)
    recon: list[ReconRow] = field(default_factory=list)

    @property
    def months(self) -> list[str]:
        return sorted({m for per in self.monthly_records.values() for m in per})


def _date(value: object) -> dt.date | None:
    if value is None or isinstance(value, dt.date):
        return value  # type: ignore[return-value]
    return dt.date.fromisoformat(str(value)[:10])


def load(engine: Engine, as_of: dt.date | None = None) -> DashboardData:
    """Everything the page shows, for ``as_of`` (default: the date of the last mart rebuild)."""
    with engine.connect() as conn:
        as_of, choices = _as_of(conn, as_of)
        kpi = {
            metric: Decimal(str(value))
            for metric, value in conn.execute(
                select(mart_kpi.c.metric, mart_kpi.c.value).where(mart_kpi.c.as_of == as_of)
            )
        }
        banks = dict(conn.execute(select(dim_bank.c.bank_code, dim_bank.c.bank_name)).all())
        outlets, towns = _outlets_and_towns(conn)
        monthly, records, credit = _monthly(conn)
        recon, reconciliation = _reconciliation(conn)
        freshness = _freshness(conn)
    return DashboardData(
        as_of=as_of,
        as_of_choices=choices,
        kpi=kpi,
        banks=banks,
        towns=towns,
        monthly_records={b: dict(v) for b, v in records.items()},
        monthly_credit={b: dict(v) for b, v in credit.items()},
        reconciliation=reconciliation,
        freshness=freshness,
        outlets=outlets,
        monthly=monthly,
        recon=recon,
    )


def _as_of(conn: Connection, as_of: dt.date | None) -> tuple[dt.date | None, list[dt.date]]:
    """The date shown (``as_of`` if the KPIs have it) and every date they have."""
    choices = [
        _date(d)
        for d in conn.execute(
            select(mart_kpi.c.as_of).distinct().order_by(mart_kpi.c.as_of.desc())
        ).scalars()
    ]
    choices = [d for d in choices if d is not None]
    if as_of is None or as_of not in choices:
        # the whole-table marts (towns, trend, freshness) are those of the last rebuild,
        # whose date mart_bank_freshness records: show the tiles of that same date
        rebuilt = _date(conn.execute(select(func.max(mart_bank_freshness.c.as_of))).scalar())
        as_of = rebuilt if rebuilt in choices else (choices[0] if choices else None)
    return as_of, choices


def _outlets_and_towns(conn: Connection) -> tuple[list[OutletRow], list[Town]]:
    o = mart_outlets_by_town.c
    outlets = [
        OutletRow(r.town_code, r.bank_code, r.outlet_type, int(r.outlets))
        for r in conn.execute(
            select(o.town_code, o.bank_code, o.outlet_type, o.outlets).order_by(
                o.town_code, o.bank_code, o.outlet_type
            )
        )
    ]
    by_town: dict[str, dict[str, int]] = defaultdict(dict)
    for row in outlets:
        by_town[row.town_code][row.outlet_type] = by_town[row.town_code].get(row.outlet_type, 0) + row.outlets
    towns = [
        Town(
            t.town_code,
            t.town_name,
            t.town_kind,
            float(t.longitude) if t.longitude is not None else None,
            float(t.latitude) if t.latitude is not None else None,
            by_town.get(t.town_code, {}),
        )
        for t in conn.execute(select(dim_town).order_by(dim_town.c.town_code))
    ]
    return outlets, towns


def _monthly(conn: Connection) -> tuple[list[MonthlyRow], dict[str, dict[str, int]], dict[str, dict[str, Decimal]]]:
    """E-licence business per bank, month and type; records and credit per bank and month."""
    m = mart_elicense_monthly.c
    records: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    credit: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    monthly = [
        MonthlyRow(
            r.bank_code,
            r.month,
            r.biz_type,
            int(r.records),
            None if r.credit_amount_yuan is None else Decimal(str(r.credit_amount_yuan)),
            None if r.drawn_amount_yuan is None else Decimal(str(r.drawn_amount_yuan)),
        )
        for r in conn.execute(
            select(
                m.bank_code, m.month, m.biz_type, m.records, m.credit_amount_yuan, m.drawn_amount_yuan
            ).order_by(m.bank_code, m.month, m.biz_type)
        )
    ]
    for row in monthly:
        records[row.bank_code][row.month] += row.records
        if row.credit_amount_yuan is not None:
            credit[row.bank_code][row.month] += row.credit_amount_yuan
    return monthly, records, credit


def _reconciliation(conn: Connection) -> tuple[list[ReconRow], dict[str, tuple[int, int, int]]]:
    """The reconciliation per bank, month and scene, and its totals per bank."""
    rc = mart_reconciliation.c
    recon = [
        ReconRow(r.bank_code, r.month, r.scene, int(r.matched), int(r.bank_only), int(r.gov_only))
        for r in conn.execute(
            select(rc.bank_code, rc.month, rc.scene, rc.matched, rc.bank_only, rc.gov_only).order_by(
                rc.bank_code, rc.month, rc.scene
            )
        )
    ]
    reconciliation: dict[str, tuple[int, int, int]] = {}
    for row in recon:
        a, b, c = reconciliation.get(row.bank_code, (0, 0, 0))
        reconciliation[row.bank_code] = (a + row.matched, b + row.bank_only, c + row.gov_only)
    reconciliation = dict(sorted(reconciliation.items()))
    return recon, reconciliation


def _freshness(conn: Connection) -> list[Freshness]:
    """Each bank's feeds, the late ones first."""
    f = mart_bank_freshness.c
    freshness = [
        Freshness(
            r.bank_code,
            r.dataset,
            _date(r.last_business_date),
            r.last_received_at,
            r.last_status,
            int(r.expected_every_days),
            int(r.days_late),
            bool(r.is_late),
        )
        for r in conn.execute(
            select(mart_bank_freshness).order_by(
                f.is_late.desc(), f.days_late.desc(), f.bank_code, f.dataset
            )
        )
    ]
    return freshness
