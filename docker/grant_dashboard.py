"""Let the dashboard's login read the marts and dimensions of the warehouse, and nothing else.

The privileges are defined once, in ``govbank.warehouse.db.dashboard_grant_sql``: the warehouse
migration 0004 applies it to the group role ``govbank_dashboard``, and airflow-init runs
this script after the migrations to apply the very same SQL to the login the
``govbank_dashboard`` connection uses (in the compose stack that login *is* the role).
Everything else in the schema is revoked first, so a table dropped from
``DASHBOARD_TABLES`` stops being readable. It then checks what the login can actually
read (membership in other roles included) and fails if that is more. Idempotent.
"""

from __future__ import annotations

import json
import os

from sqlalchemy import make_url, text

from govbank.warehouse.db import (
    DASHBOARD_ROLE,
    dashboard_grant_sql,
    is_postgres,
    make_engine,
    quote_name,
)
from govbank.warehouse.schema import DASHBOARD_TABLES, PG_SCHEMA


def grant_dashboard(url: str, role: str) -> None:
    """Grant ``role`` USAGE on the schema and SELECT on exactly ``DASHBOARD_TABLES``."""
    try:
        quote_name(role)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc
    engine = make_engine(url)
    if not is_postgres(engine):
        print("grant_dashboard: not PostgreSQL, nothing to grant")
        return
    try:
        with engine.begin() as conn:
            for statement in dashboard_grant_sql(role, DASHBOARD_TABLES):
                conn.execute(text(statement))
            readable = set(
                conn.execute(
                    text(
                        "SELECT c.relname FROM pg_class c"
                        " WHERE c.relnamespace = CAST(:schema AS regnamespace)"
                        " AND c.relkind IN ('r', 'p', 'v', 'm', 'f')"
                        " AND has_table_privilege(:role, c.oid, 'SELECT')"
                    ),
                    {"schema": PG_SCHEMA, "role": role},
                ).scalars()
            )
    finally:
        engine.dispose()
    extra = readable - set(DASHBOARD_TABLES)
    if extra:
        raise SystemExit(
            f"grant_dashboard: {role} can still read {', '.join(sorted(extra))} "
            "(through PUBLIC or another role): revoke that first"
        )
    print(f"grant_dashboard: {role} may read {', '.join(sorted(readable))}")


def dashboard_login(env: dict[str, str]) -> str:
    """The login to grant: ``GOVBANK_DASHBOARD_ROLE``, else the ``govbank_dashboard``
    connection's login (``AIRFLOW_CONN_GOVBANK_DASHBOARD``, JSON or URI), else the role."""
    if env.get("GOVBANK_DASHBOARD_ROLE"):
        return env["GOVBANK_DASHBOARD_ROLE"]
    conn = env.get("AIRFLOW_CONN_GOVBANK_DASHBOARD", "").strip()
    if conn.startswith("{"):
        return json.loads(conn).get("login") or DASHBOARD_ROLE
    if conn:
        return make_url(conn).username or DASHBOARD_ROLE
    return DASHBOARD_ROLE


if __name__ == "__main__":
    grant_dashboard(os.environ["GOVBANK_WAREHOUSE_URL"], dashboard_login(dict(os.environ)))
