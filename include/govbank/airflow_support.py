"""What the DAGs need from Airflow at run time: connections, turned into plain settings.

Imported only inside tasks; Airflow is imported inside the functions so the package
itself keeps importing without it. Secrets are read here and never logged.
"""

from __future__ import annotations

import dataclasses
import os

from govbank.settings import Settings

WAREHOUSE_CONN = "govbank_warehouse"
PSEUDONYM_CONN = "govbank_pseudonym"


def _connection(conn_id: str):  # type: ignore[no-untyped-def]
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def sqlalchemy_url(conn) -> str:  # type: ignore[no-untyped-def]
    """A postgres connection as a SQLAlchemy URL (psycopg 3), password included."""
    from sqlalchemy.engine import URL

    return URL.create(
        "postgresql+psycopg",
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
    ).render_as_string(hide_password=False)


def settings() -> Settings:
    """Settings from the environment, the warehouse from its connection when one exists."""
    base = Settings.from_env()
    if os.environ.get("GOVBANK_WAREHOUSE_URL"):
        return base
    conn = _connection(WAREHOUSE_CONN)
    if conn is None:
        return base
    return dataclasses.replace(base, warehouse_url=sqlalchemy_url(conn))


def pseudonym_key() -> bytes:
    from govbank.pseudonym import check_key, key_from_env

    conn = _connection(PSEUDONYM_CONN)
    if conn is not None and conn.password:
        return check_key(conn.password)
    return key_from_env()
