"""govbank in the Airflow UI: Data Docs and the district's dashboard, behind Airflow's login.

Two FastAPI apps from ``govbank.dashboard`` are mounted in Airflow's API server:

- ``/govbank/data-docs/``: the bank files received (``etl_file``) with status, rows
  in/loaded/rejected and top reject reasons, each linked to its Great Expectations Data
  Docs page (which expectation failed on which rows), and the Data Docs site itself,
  served so that it renders without the internet. Reached from *Browse → Data Docs*,
  from a DAG's *Bank files* tab, and from every task instance's *Data Docs* tab, which
  lists the files that task instance handled (for ``ingest_bank``, its bank's files).
- ``/govbank/dashboard/``: the 政银合作 dashboard (top navigation), read from the marts
  with the dashboard role only.

Both ask Airflow's auth manager who the user is (the UI's session cookie, or a bearer
token) and whether they may see the site; anonymous visitors go to Airflow's login page.
Every response carries the security headers; Airflow's own origin may frame them (the
UI shows plugin pages in an iframe), no other.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

DATA_DOCS_PREFIX = "/govbank/data-docs"
DASHBOARD_PREFIX = "/govbank/dashboard"


class AirflowGate:
    """Airflow's own login in front of the govbank pages, through the public auth manager
    interface only: ``get_auth_manager()``, its ``get_user_from_token`` (the UI's
    ``_token`` cookie, or a bearer token) and ``is_authorized_view``.

    Who may look: whoever may see Airflow's website read-only (the Viewer role and up);
    a user the auth manager knows without that right gets 403, not the login page.
    """

    def __init__(self, auth_manager: Any = None) -> None:
        self._auth_manager = auth_manager  # a seam for tests; Airflow's own otherwise

    def auth_manager(self) -> Any:
        from airflow.api_fastapi.app import get_auth_manager

        return self._auth_manager or get_auth_manager()

    async def user(self, request: Any) -> str | None:
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from fastapi import HTTPException
        from jwt import InvalidTokenError

        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()  # an explicit credential wins, as in Airflow's API
        else:
            token = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
        if not token:
            return None
        manager = self.auth_manager()
        try:
            user = await manager.get_user_from_token(token)
        except InvalidTokenError:  # expired, revoked, forged
            return None
        if not manager.is_authorized_view(access_view=AccessView.WEBSITE, user=user):
            raise HTTPException(status_code=403, detail="no access to the govbank pages")
        return user.get_name()

    def login_url(self, request: Any) -> str:
        return self.auth_manager().get_url_login(next_url=str(request.url))

    def form_token(self, request: Any) -> str | None:
        """No forms: Airflow's own UI logs out."""
        return None

    def install(self, app: Any) -> None:
        """Airflow has the login form; nothing to add."""


def _connection_url(conn_id: str) -> str | None:
    """The API server's view of a connection (it is no task: the SDK's lookup is not here)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    from govbank.warehouse.db import connection_url

    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    return connection_url(conn)


def _warehouse_engine():  # type: ignore[no-untyped-def]
    """The warehouse for the file list: read-only on SQLite, the warehouse login otherwise."""
    from pathlib import Path

    from govbank.config.settings import Settings
    from govbank.dashboard.data import make_dashboard_engine, readonly_sqlite_url
    from govbank.warehouse.db import make_engine

    url = Settings.from_env(connection_url=_connection_url).warehouse_url
    if url.startswith("sqlite:///"):
        return make_dashboard_engine(readonly_sqlite_url(Path(url.removeprefix("sqlite:///"))))
    return make_engine(url)


def _dashboard_engine():  # type: ignore[no-untyped-def]
    """The dashboard role: GOVBANK_DASHBOARD_URL, the govbank_dashboard connection, or
    the embedded SQLite warehouse read-only."""
    from govbank.dashboard.data import dashboard_url, make_dashboard_engine

    return make_dashboard_engine(dashboard_url(connection_url=_connection_url))


def _data_docs_dir():  # type: ignore[no-untyped-def]
    from govbank.config.settings import Settings

    return Settings.from_env().data_docs_dir


def _task_scope_sync(dag_id: str, run_id: str, task_id: str, map_index: int):  # type: ignore[no-untyped-def]
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from govbank.dashboard.datadocs import TaskScope

    if not task_id.endswith("ingest_bank"):
        return None
    with create_session() as session:
        ti = session.execute(
            select(TaskInstance.rendered_map_index, TaskInstance.start_date, TaskInstance.end_date).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        ).first()
    if ti is None or not ti.rendered_map_index:
        return None
    return TaskScope(
        bank_code=ti.rendered_map_index,
        start=ti.start_date,
        end=ti.end_date,
        label=f"Files of bank {ti.rendered_map_index} handled by {task_id} in run {run_id}.",
    )


async def _task_scope(dag_id: str, run_id: str, task_id: str, map_index: int):  # type: ignore[no-untyped-def]
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_task_scope_sync, dag_id, run_id, task_id, map_index)


def _apps() -> list[dict[str, Any]]:
    from govbank.dashboard import create_dashboard_app, create_data_docs_app

    gate = AirflowGate()
    return [
        {
            "app": create_data_docs_app(
                _data_docs_dir, _warehouse_engine, gate, _task_scope, embedded=True
            ),
            "url_prefix": DATA_DOCS_PREFIX,
            "name": "govbank Data Docs",
        },
        {
            "app": create_dashboard_app(_dashboard_engine, gate, logout=False, embedded=True),
            "url_prefix": DASHBOARD_PREFIX,
            "name": "govbank dashboard",
        },
    ]


class GovbankPlugin(AirflowPlugin):
    name = "govbank"
    fastapi_apps = _apps()
    external_views = [
        {
            "name": "政银合作看板",
            "href": f"{DASHBOARD_PREFIX}/",
            "url_route": "govbank-dashboard",
            "destination": "nav",
        },
        {
            "name": "Data Docs",
            "href": f"{DATA_DOCS_PREFIX}/files",
            "url_route": "govbank-data-docs",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Bank files",
            "href": f"{DATA_DOCS_PREFIX}/files",
            "url_route": "govbank-dag-files",
            "destination": "dag",
        },
        {
            "name": "Data Docs",
            "href": (
                f"{DATA_DOCS_PREFIX}/files?dag_id={{DAG_ID}}&run_id={{RUN_ID}}"
                "&task_id={TASK_ID}&map_index={MAP_INDEX}"
            ),
            "url_route": "govbank-task-data-docs",
            "destination": "task_instance",
        },
    ]
