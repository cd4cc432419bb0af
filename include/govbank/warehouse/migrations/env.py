"""Alembic environment: the same migrations for SQLite and for PostgreSQL (schema govbank)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from govbank.warehouse.db import is_postgres, make_engine
from govbank.warehouse.schema import PG_SCHEMA, metadata

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        pg = is_postgres(engine)
        if pg:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{PG_SCHEMA}"'))
            # migrations name tables without a schema (they serve SQLite too)
            connection.execute(text(f'SET search_path TO "{PG_SCHEMA}"'))
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=PG_SCHEMA if pg else None,
            render_as_batch=not pg,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: run them against a database")
run_migrations_online()
