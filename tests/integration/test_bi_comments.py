"""Issue 20, item 2, on PostgreSQL: after the migrations every table and column the
dashboard role can read carries a Chinese comment (what a BI tool shows), the comments
are the models' own, and the dashboard role reads the metric dictionary."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from govbank.domain.metrics import METRICS
from govbank.warehouse.db import DASHBOARD_ROLE, make_engine, upgrade
from govbank.warehouse.schema import DASHBOARD_TABLES, PG_SCHEMA, metadata

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get("GOVBANK_TEST_POSTGRES_URL")
    if not url:
        pytest.fail("set GOVBANK_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/govbank_test)")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    engine.dispose()
    upgrade(url)
    return url


def test_every_table_and_column_the_dashboard_reads_has_a_comment(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.connect() as conn:
        readable = set(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_class c WHERE c.relnamespace = CAST(:s AS regnamespace)"
                    " AND c.relkind = 'r' AND has_table_privilege(:d, c.oid, 'SELECT')"
                ),
                {"s": PG_SCHEMA, "d": DASHBOARD_ROLE},
            ).scalars()
        )
        assert readable == set(DASHBOARD_TABLES)
        tables = dict(
            conn.execute(
                text(
                    "SELECT c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c"
                    " WHERE c.relnamespace = CAST(:s AS regnamespace) AND c.relkind = 'r'"
                ),
                {"s": PG_SCHEMA},
            ).all()
        )
        columns = {
            (t, c): comment
            for t, c, comment in conn.execute(
                text(
                    "SELECT c.relname, a.attname, col_description(c.oid, a.attnum) FROM pg_class c"
                    " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
                    " WHERE c.relnamespace = CAST(:s AS regnamespace) AND c.relkind = 'r'"
                ),
                {"s": PG_SCHEMA},
            )
        }
    engine.dispose()
    missing = [t for t in readable if not tables.get(t)]
    missing += [f"{t}.{c}" for (t, c), comment in columns.items() if t in readable and not comment]
    assert not missing, missing
    for name in readable:  # the database says what the models say
        table = metadata.tables[name]
        assert tables[name] == table.comment
        for column in table.columns:
            assert columns[(name, column.name)] == column.comment, (name, column.name)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in tables["mart_kpi"])


def test_the_dashboard_role_reads_the_metric_dictionary(pg_url: str) -> None:
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'SET LOCAL ROLE "{DASHBOARD_ROLE}"')
        rows = conn.execute(
            text(f'SELECT code, label, unit, definition FROM "{PG_SCHEMA}".dim_metric ORDER BY position')
        ).all()
    engine.dispose()
    assert [(r.code, r.label, r.unit) for r in rows] == [(m.code, m.label, m.unit) for m in METRICS]
    assert all(r.definition for r in rows)
