"""Engines and migrations for the warehouse (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL

from govbank.warehouse.schema import PG_SCHEMA

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Group roles (NOLOGIN) of the PostgreSQL warehouse; login users are members of them.
WRITER_ROLE = "govbank_writer"  # the pipeline: DML on every table of the schema
DASHBOARD_ROLE = "govbank_dashboard"  # dashboards: SELECT on marts and dimensions only
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def is_postgres(url_or_engine: str | Engine) -> bool:
    name = url_or_engine.dialect.name if isinstance(url_or_engine, Engine) else url_or_engine
    return str(name).startswith("postgresql")


def connection_url(conn) -> str:  # type: ignore[no-untyped-def]
    """An Airflow postgres connection (login, password, host, port, schema) as a
    SQLAlchemy URL on psycopg 3, password included: the one place such a URL is built."""
    return URL.create(
        "postgresql+psycopg",
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
    ).render_as_string(hide_password=False)


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


# --- PostgreSQL roles: the SQL lives here so the migration and docker/grant_dashboard.py
# grant exactly the same privileges.


def quote_name(name: str) -> str:
    """A plain lower-case identifier, double-quoted; anything else is refused."""
    if not _PLAIN_NAME.fullmatch(name):
        raise ValueError(f"not a plain PostgreSQL name: {name!r}")
    return f'"{name}"'


def create_group_role_sql(role: str) -> str:
    """Create ``role`` NOLOGIN unless it exists. A migrator without CREATEROLE gets a
    warning, not a failure: a superuser creates the role, then re-runs the grants
    (``docker/grant_dashboard.py`` with ``GOVBANK_DASHBOARD_ROLE=govbank_dashboard``)."""
    q = quote_name(role)
    return f"""
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
    BEGIN
      CREATE ROLE {q} NOLOGIN;
    EXCEPTION
      WHEN duplicate_object THEN NULL;
      WHEN insufficient_privilege THEN
        RAISE WARNING 'role {role} does not exist and % may not create roles: '
          'a superuser must run CREATE ROLE {role} NOLOGIN, then grant it again', current_user;
    END;
  END IF;
END $$"""


def writer_grant_sql(role: str, schema: str = PG_SCHEMA) -> list[str]:
    """DML on every table and sequence of the schema, now and for tables created later
    by the role running this (the migrations' owner); no DDL."""
    r, s = quote_name(role), quote_name(schema)
    return [
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}",
    ]


def dashboard_grant_sql(role: str, tables: Iterable[str], schema: str = PG_SCHEMA) -> list[str]:
    """SELECT on exactly ``tables``: everything else in the schema is revoked first, and
    tables created later stay unreadable until a migration grants them."""
    r, s = quote_name(role), quote_name(schema)
    return [
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM {r}",
        f"REVOKE ALL ON SCHEMA {s} FROM {r}",
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
        *(f"GRANT SELECT ON {s}.{quote_name(t)} TO {r}" for t in tables),
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} REVOKE ALL ON TABLES FROM {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} REVOKE ALL ON SEQUENCES FROM {r}",
    ]


def revoke_sql(role: str, schema: str = PG_SCHEMA) -> list[str]:
    """Take back what the two grant functions gave, but never an owner's own rights."""
    r, s = quote_name(role), quote_name(schema)
    return [
        f"""
DO $$
DECLARE obj record;
BEGIN
  FOR obj IN
    SELECT c.oid::regclass::text AS name, c.relkind = 'S' AS is_sequence
    FROM pg_class c
    WHERE c.relnamespace = '{s}'::regnamespace
      AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND pg_get_userbyid(c.relowner) <> '{role}'
  LOOP
    EXECUTE format('REVOKE ALL ON %s %s FROM {r}',
                   CASE WHEN obj.is_sequence THEN 'SEQUENCE' ELSE 'TABLE' END, obj.name);
  END LOOP;
  IF (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE oid = '{s}'::regnamespace)
     <> '{role}' THEN
    REVOKE ALL ON SCHEMA {s} FROM {r};
  END IF;
END $$""",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} REVOKE ALL ON TABLES FROM {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} REVOKE ALL ON SEQUENCES FROM {r}",
    ]
