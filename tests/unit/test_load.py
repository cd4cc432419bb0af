"""Set-based merges on a real SQLite warehouse built by the Alembic migrations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select

from govbank.domain.datasets import Dataset, spec_of
from govbank.ingest.merge import merge_elicense_biz, merge_outlets
from govbank.ingest.stage import create_staging, drop_staging, stage
from govbank.warehouse.db import make_engine
from govbank.warehouse.schema import dim_outlet, fact_elicense_biz, stg_elicense_biz, stg_outlet


def _outlet(code: str, name: str = "网点", status: str = "正常") -> dict:
    return {
        "bank_code": "WZB",
        "outlet_code": code,
        "outlet_name": name,
        "outlet_type": "政务服务超市",
        "town_code": "330304001000",
        "community": None,
        "address": "路",
        "longitude": Decimal("120.62"),
        "latitude": Decimal("27.99"),
        "service_items": 10,
        "opened_on": dt.date(2023, 1, 1),
        "status": status,
    }


def _staged(conn, base, columns: tuple[str, ...], rows: list[dict], tag: str):  # type: ignore[no-untyped-def]
    """``rows`` in a temporary staging table, as the pipeline stages them (Arrow columns,
    amounts and decimals as exact text)."""
    import pyarrow as pa

    tmp = create_staging(conn, base, columns, tag)
    text = {n for n in columns if n in ("credit_amount_yuan", "drawn_amount_yuan", "longitude", "latitude")}
    stage(conn, tmp, pa.table({
        c: pa.array([str(r[c]) if c in text and r[c] is not None else r[c] for r in rows],
                    pa.string() if c in text else None)
        for c in columns
    }))
    return tmp


def _snapshot(engine, day: dt.date, rows: list[dict], tag: str) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        tmp = _staged(conn, stg_outlet, spec_of(Dataset.OUTLET).staged, rows, tag)
        merge_outlets(conn, tmp, "WZB", day, f"OUTLET_WZB_{day:%Y%m%d}.txt")
        drop_staging(conn, tmp)


def _history(engine) -> list[tuple]:  # type: ignore[no-untyped-def]
    d = dim_outlet.c
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(
                    d.outlet_code, d.outlet_name, d.status, d.valid_from, d.valid_to, d.is_current
                ).order_by(d.outlet_code, d.valid_from)
            )
        ]


def test_type2_history(warehouse_url: str) -> None:
    engine = make_engine(warehouse_url)
    d1, d2, d3 = dt.date(2023, 6, 1), dt.date(2023, 6, 10), dt.date(2023, 6, 15)
    _snapshot(engine, d1, [_outlet("A"), _outlet("B"), _outlet("C")], "l1")
    # renamed A, unchanged B, C left out, D new
    _snapshot(engine, d2, [_outlet("A", "新名"), _outlet("B"), _outlet("D")], "l2")
    # the same snapshot again changes nothing
    _snapshot(engine, d2, [_outlet("A", "新名"), _outlet("B"), _outlet("D")], "l3")
    # a second file the same day corrects D in place
    _snapshot(engine, d2, [_outlet("A", "新名"), _outlet("B"), _outlet("D", "更正")], "l4")
    _snapshot(engine, d3, [_outlet("A", "新名"), _outlet("B"), _outlet("D", "更正")], "l5")
    assert _history(engine) == [
        ("A", "网点", "正常", d1, d2, False),
        ("A", "新名", "正常", d2, None, True),
        ("B", "网点", "正常", d1, None, True),
        ("C", "网点", "正常", d1, d2, False),
        ("C", "网点", "撤销", d2, None, True),
        ("D", "更正", "正常", d2, None, True),
    ]


def _biz(biz_id: str, status: str = "有效", credit: str | None = "100.00") -> dict:
    return {
        "bank_code": "WZB",
        "biz_id": biz_id,
        "biz_type": "一照贷款",
        "uscc": "91350100M000100Y43",
        "enterprise_name": "某公司",
        "outlet_code": "A",
        "biz_date": dt.date(2023, 6, 1),
        "credit_amount_yuan": Decimal(credit) if credit else None,
        "drawn_amount_yuan": None,
        "loan_product": None,
        "status": status,
        "legal_rep_key": None,
        "source_file": "f",
        "source_line": 2,
        "loaded_at": dt.datetime(2023, 6, 1, tzinfo=dt.UTC),
    }


def test_biz_upsert_latest_version_wins(warehouse_url: str) -> None:
    engine = make_engine(warehouse_url)
    columns = tuple(c.name for c in stg_elicense_biz.columns if c.name != "load_id")
    for tag, rows in (("l1", [_biz("1"), _biz("2")]), ("l2", [_biz("2", "撤销", "250.50")])):
        with engine.begin() as conn:
            tmp = _staged(conn, stg_elicense_biz, columns, rows, tag)
            merge_elicense_biz(conn, tmp)
            drop_staging(conn, tmp)
    f = fact_elicense_biz.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(f.biz_id, f.status, f.credit_amount_yuan).order_by(f.biz_id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("1", "有效", Decimal("100.00")),
        ("2", "撤销", Decimal("250.50")),
    ]


def test_biz_resent_unchanged_keeps_its_provenance(warehouse_url: str) -> None:
    check_resent_unchanged_keeps_provenance(warehouse_url)  # PostgreSQL: tests/integration/test_postgres.py


def check_resent_unchanged_keeps_provenance(url: str) -> None:
    """A record re-sent with the same values is not rewritten (no new row version): its
    file and line stay those that brought the values; a changed one takes the new file's.
    Temporary staging, as the pipeline stages."""
    engine = make_engine(url)

    def load(file: str, rows: list[dict]) -> None:
        with engine.begin() as conn:
            tmp = _staged(conn, stg_elicense_biz, spec_of(Dataset.ELIC).staged, rows, f"t{len(file)}")
            merge_elicense_biz(conn, tmp, constants={
                "bank_code": "WZB", "source_file": file, "loaded_at": dt.datetime(2023, 6, 2, tzinfo=dt.UTC),
            })
            drop_staging(conn, tmp)

    load("first.txt", [_biz("1"), _biz("2")])
    load("second.txt", [{**_biz("1"), "source_line": 9}, {**_biz("2", "撤销"), "source_line": 7}, _biz("3")])
    f = fact_elicense_biz.c
    with engine.connect() as conn:
        rows = conn.execute(select(f.biz_id, f.status, f.source_file, f.source_line).order_by(f.biz_id)).all()
    assert [tuple(r) for r in rows] == [
        ("1", "有效", "first.txt", 2),
        ("2", "撤销", "second.txt", 7),
        ("3", "有效", "second.txt", 2),
    ]
