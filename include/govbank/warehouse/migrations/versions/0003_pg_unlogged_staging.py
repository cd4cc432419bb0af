"""PostgreSQL: staging tables UNLOGGED

Staged rows live only inside one file's load transaction and are deleted when it
merges, so writing them to the WAL buys nothing; a crash empties UNLOGGED tables,
which is what a rolled-back load leaves anyway. SQLite: nothing to do.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from govbank.warehouse.schema import PG_SCHEMA

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STAGING = ("stg_outlet", "stg_elicense_biz")


def _set(persistence: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in STAGING:
        op.execute(f'ALTER TABLE "{PG_SCHEMA}"."{table}" SET {persistence}')


def upgrade() -> None:
    _set("UNLOGGED")


def downgrade() -> None:
    _set("LOGGED")
