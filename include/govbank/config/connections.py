"""The Airflow connections the pipeline uses: one list, so the stack and the DAGs agree.

The compose stack defines each one as ``AIRFLOW_CONN_<ID>`` and tests/integration/test_compose.py
checks that it does; DAGs and the package name connections only through these ids.
"""

from __future__ import annotations

from typing import NamedTuple


class ConnectionSpec(NamedTuple):
    conn_id: str
    conn_type: str
    description: str
    required: bool = True


WAREHOUSE_CONN_ID = "govbank_warehouse"
DASHBOARD_CONN_ID = "govbank_dashboard"
SFTP_CONN_ID = "govbank_sftp"
ELICENSE_API_CONN_ID = "govbank_elicense_api"
PSEUDONYM_CONN_ID = "govbank_pseudonym"
ALERTS_CONN_ID = "govbank_alerts"

CONNECTIONS: tuple[ConnectionSpec, ...] = (
    ConnectionSpec(WAREHOUSE_CONN_ID, "postgres", "the warehouse, as the pipeline's writer role"),
    ConnectionSpec(DASHBOARD_CONN_ID, "postgres", "the warehouse, as the read-only dashboard role"),
    ConnectionSpec(
        SFTP_CONN_ID,
        "sftp",
        "the banks' SFTP server, pipeline account (extra: host_key, private_key)",
    ),
    ConnectionSpec(
        ELICENSE_API_CONN_ID,
        "http",
        "the e-licence usage API (login=client_id, password=client_secret)",
    ),
    ConnectionSpec(PSEUDONYM_CONN_ID, "generic", "password = the HMAC key that pseudonymises IDs"),
    ConnectionSpec(
        ALERTS_CONN_ID,
        "apprise",
        "operator alerts through Apprise (extra.config.path: dingtalk://, wecombot://, mailtos:// URLs);"
        " no URL means log only",
        False,
    ),
)

CONNECTION_IDS: tuple[str, ...] = tuple(c.conn_id for c in CONNECTIONS)
