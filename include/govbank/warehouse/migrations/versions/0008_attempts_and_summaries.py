"""etl_file.attempts (poison files) and etl_reject.occurrences (summarised issues)

Revision ID: 0008_attempts_and_summaries
Revises: 0007_bi_comments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_attempts_and_summaries"
down_revision = "0007_bi_comments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("etl_file") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("etl_reject") as batch:
        batch.add_column(sa.Column("occurrences", sa.Integer()))


def downgrade() -> None:
    with op.batch_alter_table("etl_reject") as batch:
        batch.drop_column("occurrences")
    with op.batch_alter_table("etl_file") as batch:
        batch.drop_column("attempts")
