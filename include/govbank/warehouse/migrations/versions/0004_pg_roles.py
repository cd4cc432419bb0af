"""PostgreSQL: the writer and dashboard group roles and their privileges

``govbank_writer``: DML on every table and sequence of schema govbank (and on tables
created later by the migrations' owner), no DDL. ``govbank_dashboard``: USAGE on the
schema and SELECT on the marts and dimensions listed below, nothing else; tables
created later are not readable until a migration grants them. Both NOLOGIN: login
users are made members (see docker/grant_dashboard.py). Idempotent; roles that exist
already (the compose stack creates them as login roles) are kept as they are.
Downgrade takes the privileges back but keeps the roles: they belong to the whole
cluster, not to this database. SQLite: nothing to do.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

from govbank.warehouse.db import (
    DASHBOARD_ROLE,
    WRITER_ROLE,
    create_group_role_sql,
    dashboard_grant_sql,
    revoke_sql,
    writer_grant_sql,
)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# Frozen here: a later migration that adds a mart grants it itself
# (tests/integration/test_postgres.py checks the result equals govbank.warehouse.schema.DASHBOARD_TABLES).
DASHBOARD_TABLES_0004 = (
    "mart_kpi",
    "mart_outlets_by_town",
    "mart_elicense_monthly",
    "mart_bank_freshness",
    "mart_reconciliation",
    "mart_reconciliation_detail",
    "dim_town",
    "dim_bank",
    "dim_outlet",
)


def _existing_roles() -> set[str]:
    rows = op.get_bind().execute(
        sa.text("SELECT rolname FROM pg_roles WHERE rolname IN (:w, :d)"),
        {"w": WRITER_ROLE, "d": DASHBOARD_ROLE},
    )
    return set(rows.scalars())


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for role in (WRITER_ROLE, DASHBOARD_ROLE):
        op.execute(create_group_role_sql(role))
    roles = _existing_roles()
    if WRITER_ROLE in roles:
        for statement in writer_grant_sql(WRITER_ROLE):
            op.execute(statement)
    if DASHBOARD_ROLE in roles:
        for statement in dashboard_grant_sql(DASHBOARD_ROLE, DASHBOARD_TABLES_0004):
            op.execute(statement)
    for role in {WRITER_ROLE, DASHBOARD_ROLE} - roles:
        log.warning("role %s is missing: no privileges granted to it", role)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for role in sorted(_existing_roles()):
        for statement in revoke_sql(role):
            op.execute(statement)
