"""Let the dashboard role read the marts and dimensions of the warehouse, and nothing else.

Run by airflow-init after the warehouse migrations, because the tables must exist
before they can be granted. It first revokes everything the role has in the schema,
so a table dropped from ``DASHBOARD_TABLES`` stops being readable. Idempotent.
"""

from __future__ import annotations

import os
import re

from sqlalchemy import text

from govbank.db import is_postgres, make_engine
from govbank.schema import DASHBOARD_TABLES, PG_SCHEMA

ROLE_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def grant_dashboard(url: str, role: str) -> None:
    """Grant ``role`` USAGE on the schema and SELECT on exactly ``DASHBOARD_TABLES``."""
    if not ROLE_PATTERN.fullmatch(role):
        raise SystemExit(f"not a plain role name: {role!r}")
    engine = make_engine(url)
    if not is_postgres(engine):
        print("grant_dashboard: not PostgreSQL, nothing to grant")
        return
    quote = engine.dialect.identifier_preparer.quote
    schema, grantee = quote(PG_SCHEMA), quote(role)
    with engine.begin() as conn:
        conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {grantee}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {schema} TO {grantee}"))
        for table in DASHBOARD_TABLES:
            conn.execute(text(f"GRANT SELECT ON {schema}.{quote(table)} TO {grantee}"))
    engine.dispose()
    print(f"grant_dashboard: {role} may read {', '.join(DASHBOARD_TABLES)}")


if __name__ == "__main__":
    grant_dashboard(
        os.environ["GOVBANK_WAREHOUSE_URL"],
        os.environ.get("GOVBANK_DASHBOARD_ROLE", "govbank_dashboard"),
    )
