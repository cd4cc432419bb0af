"""What the DAGs need from Airflow at run time: connections, turned into plain settings.

Imported only inside tasks; Airflow is imported inside the functions so the package
itself keeps importing without it. Secrets are read here and never logged.
"""

from __future__ import annotations

import dataclasses
import os

from govbank.config.settings import Settings

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
    from govbank.domain.pseudonym import check_key, key_from_env

    conn = _connection(PSEUDONYM_CONN)
    if conn is not None and conn.password:
        return check_key(conn.password)
    return key_from_env()


def webhook_url() -> str | None:
    """The alert webhook from its connection; none configured means log only."""
    from govbank.config.connections import ALERT_WEBHOOK_CONN_ID

    conn = _connection(ALERT_WEBHOOK_CONN_ID)
    if conn is None or not conn.host:
        return None
    host = conn.host if "://" in conn.host else f"{conn.schema or 'https'}://{conn.host}"
    port = f":{conn.port}" if conn.port else ""
    return host.rstrip("/") + port + (conn.extra_dejson.get("endpoint") or "")


def alert_late_bank(context) -> None:  # type: ignore[no-untyped-def]
    """on_failure_callback of the wait sensor: a bank missed its deadline."""
    from govbank.orchestration.alerts import send_alert

    exc = context.get("exception")
    ti = context.get("ti") or context.get("task_instance")
    where = f"{ti.dag_id}.{ti.task_id}[{ti.map_index}]" if ti is not None else "govbank_ingest"
    send_alert(f"{exc or 'a bank is late'} ({where})", webhook_url())
