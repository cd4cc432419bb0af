"""Engines and migrations for the warehouse (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from govbank.schema import PG_SCHEMA

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def is_postgres(url_or_engine: str | Engine) -> bool:
    name = url_or_engine.dialect.name if isinstance(url_or_engine, Engine) else url_or_engine
    return str(name).startswith("postgresql")


def make_engine(url: str) -> Engine:
    """An engine whose unqualified tables land in ``govbank`` on PostgreSQL."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if is_postgres(url):
        engine = create_engine(url, pool_pre_ping=True)
        return engine.execution_options(schema_translate_map={None: PG_SCHEMA})
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=60000")
        cur.close()

    return engine


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Create or upgrade the warehouse schema with Alembic."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
