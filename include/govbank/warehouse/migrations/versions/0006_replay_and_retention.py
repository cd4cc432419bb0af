"""etl_file: a replay links to the outcome it reprocessed; a purged archive file is dated

``replay_of``: an operator's replay is a new row for the same bytes, pointing at the
earlier outcome, which stays as it was. The one-original-per-bank-and-digest index
leaves replays out, so the bank re-sending the bytes is still a duplicate.
``archive_purged_at``: housekeeping removed the raw bytes past retention.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OLD = "status <> 'duplicate'"
_NEW = "status <> 'duplicate' AND replay_of IS NULL"
_INDEX = "uq_etl_file_bank_sha256_original"


def _index(where: str) -> None:
    op.create_index(
        _INDEX, "etl_file", ["bank_code", "sha256"], unique=True,
        sqlite_where=sa.text(where), postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.add_column("etl_file", sa.Column("replay_of", sa.Integer(), nullable=True))
    op.add_column("etl_file", sa.Column("archive_purged_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_index(_INDEX, table_name="etl_file")
    _index(_NEW)


def downgrade() -> None:
    # replays of the same bytes would break the old index: only the earliest row stays
    op.execute("DELETE FROM etl_file WHERE replay_of IS NOT NULL")
    op.drop_index(_INDEX, table_name="etl_file")
    _index(_OLD)
    with op.batch_alter_table("etl_file") as batch:
        batch.drop_column("archive_purged_at")
        batch.drop_column("replay_of")
