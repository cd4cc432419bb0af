"""reference data: Ouhai's 13 towns

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from govbank.domain.reference import towns

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_dim_town = sa.table(
    "dim_town",
    sa.column("town_code", sa.String),
    sa.column("town_name", sa.String),
    sa.column("town_kind", sa.String),
    sa.column("longitude", sa.Numeric(9, 6)),
    sa.column("latitude", sa.Numeric(9, 6)),
)


def upgrade() -> None:
    op.bulk_insert(
        _dim_town,
        [
            {
                "town_code": t.town_code,
                "town_name": t.town_name,
                "town_kind": t.town_kind,
                "longitude": t.longitude,
                "latitude": t.latitude,
            }
            for t in towns()
        ],
    )


def downgrade() -> None:
    op.execute(_dim_town.delete())
