"""What the DAGs need from Airflow at run time: connections, turned into plain settings.

Imported only inside tasks; Airflow is imported inside the functions so the package
itself keeps importing without it. Secrets are read here and never logged.
"""

from __future__ import annotations

from govbank.config.connections import ALERT_WEBHOOK_CONN_ID, PSEUDONYM_CONN_ID
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
    from govbank.domain.pseudonym import check_key, key_from_env

    conn = _connection(PSEUDONYM_CONN_ID)
    if conn is not None and conn.password:
        return check_key(conn.password)
    return key_from_env()


def webhook_url() -> str | None:
    """The alert webhook from its connection; none configured means log only."""
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
