"""What the DAGs need from Airflow at run time: connections, turned into plain settings.

Imported only inside tasks; Airflow is imported inside the functions so the package
itself keeps importing without it. Secrets are read here and never logged.
"""

from __future__ import annotations

from govbank.config.connections import PSEUDONYM_CONN_ID
from govbank.config.settings import Settings


def _connection(conn_id: str):  # type: ignore[no-untyped-def]
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def connection_url(conn_id: str) -> str | None:
    """A task's view of a postgres connection as a SQLAlchemy URL; None when undefined."""
    from govbank.warehouse.db import connection_url as url_of

    conn = _connection(conn_id)
    return None if conn is None else url_of(conn)


def settings() -> Settings:
    """Settings from the environment, the warehouse from its connection when one exists."""
    return Settings.from_env(connection_url=connection_url)


def pseudonym_key() -> bytes:
    from govbank.config.settings import pseudonym_key_from_env
    from govbank.domain.pseudonym import check_key

    conn = _connection(PSEUDONYM_CONN_ID)
    if conn is not None and conn.password:
        return check_key(conn.password)
    return pseudonym_key_from_env()

