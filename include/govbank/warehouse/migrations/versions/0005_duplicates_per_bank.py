"""etl_file: a duplicate is the same bytes from the same bank

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_WHERE = "status <> 'duplicate'"


def upgrade() -> None:
    op.drop_index("uq_etl_file_sha256_original", table_name="etl_file")
    op.create_index(
        "uq_etl_file_bank_sha256_original", "etl_file", ["bank_code", "sha256"], unique=True,
        sqlite_where=sa.text(_WHERE), postgresql_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index("uq_etl_file_bank_sha256_original", table_name="etl_file")
    op.create_index(
        "uq_etl_file_sha256_original", "etl_file", ["sha256"], unique=True,
        sqlite_where=sa.text(_WHERE), postgresql_where=sa.text(_WHERE),
    )
