"""BI: month columns as dates, the outlet and bank marts, dim_metric, Chinese comments

Adds ``month_start`` (the first of the month, a date) beside the ``YYYY-MM`` text of the
marts that have months; creates ``mart_outlet_detail``, ``mart_bank_outlets`` and the
metric dictionary ``dim_metric`` (seeded from ``govbank.domain.metrics``; the marts build
refreshes it); on PostgreSQL grants the dashboard role SELECT on the three new tables and
writes the models' Chinese comments (``comment=`` in ``govbank.warehouse.schema``) onto
every table and column the dashboard role can read, with ``COMMENT ON``. The comments
are taken from the models for the tables and columns that exist at this revision, so a
later migration that changes them runs :func:`apply_comments` again. SQLite keeps no
comments.

Revision ID: 0007_bi_comments
Revises: 0006
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from govbank.domain.metrics import METRICS
from govbank.warehouse.db import DASHBOARD_ROLE, dashboard_grant_sql

revision = "0007_bi_comments"
down_revision = "0006"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

MONTHLY = ("mart_elicense_monthly", "mart_reconciliation", "mart_reconciliation_detail")
NEW_DASHBOARD_TABLES = ("mart_outlet_detail", "mart_bank_outlets", "dim_metric")
# Frozen here, as 0004 froze its list: the dashboard role's tables at this revision
# (granting revokes everything else first, so the whole list is granted again).
DASHBOARD_TABLES_0006 = (
    "mart_kpi",
    "mart_outlets_by_town",
    "mart_elicense_monthly",
    "mart_bank_freshness",
    "mart_reconciliation",
    "mart_reconciliation_detail",
    "dim_town",
    "dim_bank",
    "dim_outlet",
    *NEW_DASHBOARD_TABLES,
)


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def apply_comments(tables: tuple[str, ...], *, clear: bool = False) -> None:
    """``COMMENT ON`` each table and column of ``tables`` that exists, from the models.

    Alembic's comment operations write the statements (PostgreSQL takes no bound
    parameter in ``COMMENT ON``; they quote the text as a literal themselves).
    """
    from govbank.warehouse.schema import metadata

    bind = op.get_bind()
    inspector = sa.inspect(bind)
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    present = set(inspector.get_table_names(schema=schema))
    for name in tables:
        if name not in present or name not in metadata.tables:
            continue
        table = metadata.tables[name]
        if clear or table.comment is None:
            op.drop_table_comment(name, schema=schema)
        else:
            op.create_table_comment(name, table.comment, schema=schema)
        columns = {c["name"] for c in inspector.get_columns(name, schema=schema)}
        for column in table.columns:
            if column.name in columns:
                op.alter_column(
                    name, column.name, schema=schema, existing_type=column.type,
                    existing_nullable=column.nullable, comment=None if clear else column.comment,
                )


def upgrade() -> None:
    for name in MONTHLY:
        op.add_column(name, sa.Column("month_start", sa.Date(), nullable=True))
        mart = sa.table(name, sa.column("month", sa.String), sa.column("month_start", sa.Date))
        first = mart.c.month + "-01"
        op.execute(
            mart.update().values(month_start=sa.func.to_date(first, "YYYY-MM-DD") if _pg() else first)
        )
    op.create_table(
        "mart_outlet_detail",
        sa.Column("bank_code", sa.String(16), nullable=False),
        sa.Column("outlet_code", sa.String(32), nullable=False),
        sa.Column("bank_name", sa.String(100), nullable=False),
        sa.Column("outlet_name", sa.Text(), nullable=False),
        sa.Column("outlet_type", sa.String(16), nullable=False),
        sa.Column("town_code", sa.String(12), nullable=True),
        sa.Column("town_name", sa.String(32), nullable=True),
        sa.Column("service_items", sa.Integer(), nullable=True),
        sa.Column("opened_on", sa.Date(), nullable=True),
        sa.Column("opened_month", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("bank_code", "outlet_code", name="pk_mart_outlet_detail"),
    )
    op.create_table(
        "mart_bank_outlets",
        sa.Column("bank_code", sa.String(16), nullable=False),
        sa.Column("bank_name", sa.String(100), nullable=False),
        sa.Column("joined_on", sa.Date(), nullable=True),
        sa.Column("joined_month", sa.Date(), nullable=True),
        sa.Column("outlets", sa.Integer(), nullable=False),
        sa.Column("service_outlets", sa.Integer(), nullable=False),
        sa.Column("supermarkets", sa.Integer(), nullable=False),
        sa.Column("terminals", sa.Integer(), nullable=False),
        sa.Column("vans", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bank_code", name="pk_mart_bank_outlets"),
    )
    dim_metric = op.create_table(
        "dim_metric",
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("short_label", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("code", name="pk_dim_metric"),
    )
    op.bulk_insert(
        dim_metric,
        [
            {
                "code": m.code,
                "label": m.label,
                "short_label": m.short,
                "unit": m.unit,
                "definition": m.definition,
                "position": i,
            }
            for i, m in enumerate(METRICS, start=1)
        ],
    )
    if not _pg():
        return
    roles = op.get_bind().execute(
        sa.text("SELECT rolname FROM pg_roles WHERE rolname = :d"), {"d": DASHBOARD_ROLE}
    )
    if roles.first() is not None:
        for statement in dashboard_grant_sql(DASHBOARD_ROLE, DASHBOARD_TABLES_0006):
            op.execute(statement)
    else:
        log.warning("role %s is missing: the new marts are not granted to it", DASHBOARD_ROLE)
    apply_comments(DASHBOARD_TABLES_0006)


def downgrade() -> None:
    if _pg():
        apply_comments(DASHBOARD_TABLES_0006, clear=True)
    for name in reversed(NEW_DASHBOARD_TABLES):
        op.drop_table(name)
    for name in MONTHLY:
        with op.batch_alter_table(name) as batch:
            batch.drop_column("month_start")
