"""Data Docs for the data engineer: the files received and their validation pages.

``/files`` lists ``etl_file`` (bank, dataset, status, rows in/loaded/rejected, the top
reject reasons) with a link to each file's Data Docs page (``etl_file.data_docs``);
``/site/...`` serves the Great Expectations site itself, made to work offline
(:mod:`govbank.dashboard.offline`). The Airflow plugin mounts this app behind
Airflow's login and links it from the task instance view, passing a resolver that
turns the task instance into its bank and time window, so one click from a task shows
that task's files and, from there, which expectation failed on which rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine, func, select
from starlette.concurrency import run_in_threadpool

from govbank.dashboard.app import HERE, TEMPLATES
from govbank.dashboard.auth import Gate
from govbank.dashboard.data import DATASET_LABELS, STATUS_LABELS
from govbank.dashboard.headers import SecurityHeaders
from govbank.dashboard.offline import asset_path, data_docs_csp, offline_html
from govbank.domain.reasons import ROW_REASONS
from govbank.warehouse.schema import etl_file, etl_reject

LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # the pipeline's clock; SQLite keeps it without zone
MAX_FILES = 300


@dataclass(frozen=True)
class TaskScope:
    """The files one task instance handled: its bank, and when it ran."""

    bank_code: str | None
    start: dt.datetime | None
    end: dt.datetime | None
    label: str


# (dag_id, run_id, task_id, map_index) -> scope, or None when the task handles no files
TaskResolver = Callable[[str, str, str, int], Awaitable[TaskScope | None]]


@dataclass(frozen=True)
class FileRow:
    file_id: int
    file_name: str
    bank_code: str
    dataset: str | None
    business_date: dt.date | None
    status: str
    rows_total: int
    rows_loaded: int
    rows_rejected: int
    processed_at: dt.datetime | None
    data_docs: str | None
    error: str | None
    reasons: list[tuple[str, int]]


def _aware(value: object) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.fromisoformat(str(value))
    return value if value.tzinfo else value.replace(tzinfo=LOCAL_TZ)


def list_files(
    engine: Engine, bank: str | None = None, scope: TaskScope | None = None, limit: int = MAX_FILES
) -> list[FileRow]:
    """Files newest first, with each file's three most frequent reject reasons."""
    e = etl_file.c
    q = select(etl_file).order_by(e.file_id.desc()).limit(limit)
    bank = scope.bank_code if scope and scope.bank_code else bank
    if bank:
        q = q.where(e.bank_code == bank)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        ids = [r.file_id for r in rows]
        reasons: dict[int, list[tuple[str, int]]] = {}
        if ids:
            # rows per reason (a row may break two rules of one reason, e.g. both coordinates)
            counted = conn.execute(
                select(
                    etl_reject.c.file_id,
                    etl_reject.c.reason_code,
                    func.max(func.count(func.distinct(etl_reject.c.line)), 1),
                )
                .where(etl_reject.c.file_id.in_(ids))
                .group_by(etl_reject.c.file_id, etl_reject.c.reason_code)
            ).all()
            for file_id, code, n in sorted(counted, key=lambda r: -r[2]):
                reasons.setdefault(file_id, []).append((code, int(n)))
    files = []
    for r in rows:
        processed = _aware(r.processed_at)
        if scope and scope.start and processed:
            # a minute of slack either side: the clocks are the same machine's, the
            # stamps are taken a moment before and after the task's own
            slack = dt.timedelta(minutes=1)
            if processed < scope.start - slack or (scope.end and processed > scope.end + slack):
                continue
        files.append(
            FileRow(
                r.file_id, r.file_name, r.bank_code, r.dataset,
                r.business_date if not isinstance(r.business_date, str) else dt.date.fromisoformat(r.business_date),
                r.status, r.rows_total, r.rows_loaded, r.rows_rejected, processed, r.data_docs,
                r.error, reasons.get(r.file_id, [])[:3],
            )
        )
    return files


def create_data_docs_app(
    docs_dir: Callable[[], Path],
    engine_factory: Callable[[], Engine],
    gate: Gate,
    resolve_task: TaskResolver | None = None,
    *,
    embedded: bool = False,
) -> FastAPI:
    """Serve the file list and the Data Docs site under ``docs_dir()``; ``embedded``:
    shown in Airflow's iframe, so its own origin may frame it."""
    app = FastAPI(title="govbank Data Docs", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders, embedded=embedded)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    gate.install(app)
    engines: list[Engine] = []

    def engine() -> Engine:
        if not engines:
            engines.append(engine_factory())
        return engines[0]

    async def login_needed(request: Request) -> Response | None:
        if await gate.user(request) is None:
            return RedirectResponse(gate.login_url(request), status_code=303)
        return None

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> Response:
        prefix = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(f"{prefix}/files", status_code=303)

    @app.get("/files", response_class=HTMLResponse)
    async def files(
        request: Request,
        bank: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        map_index: int = -1,
    ) -> Response:
        if (redirect := await login_needed(request)) is not None:
            return redirect
        scope = None
        if resolve_task and dag_id and run_id and task_id:
            scope = await resolve_task(dag_id, run_id, task_id, map_index)
        rows = await run_in_threadpool(list_files, engine(), bank, scope)
        prefix = request.scope.get("root_path", "").rstrip("/")
        html = TEMPLATES.get_template("files.html").render(
            files=rows,
            prefix=prefix,
            bank=bank,
            scope=scope,
            task_context=bool(dag_id and task_id),
            dataset_labels=DATASET_LABELS,
            status_labels=STATUS_LABELS,
            reasons=ROW_REASONS,
        )
        return HTMLResponse(html)

    @app.get("/_assets/{name}", include_in_schema=False)
    async def assets(request: Request, name: str) -> Response:
        if (redirect := await login_needed(request)) is not None:
            return redirect
        path = asset_path(name)
        if path is None or not path.is_file():
            return Response(status_code=404)
        return FileResponse(path, headers={"Cache-Control": "max-age=86400"})

    @app.get("/site/{page:path}", include_in_schema=False)
    async def site(request: Request, page: str) -> Response:
        if (redirect := await login_needed(request)) is not None:
            return redirect
        root = docs_dir().resolve()
        page = page or "index.html"
        target = (root / page).resolve()
        # nothing outside the site, and not GX's stored results (raw, unrendered)
        if not target.is_relative_to(root) or ".gx" in target.relative_to(root).parts:
            return Response(status_code=404)
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return HTMLResponse("<p>这个 Data Docs 页面不存在（还没有校验过文件？）</p>", status_code=404)
        if target.suffix != ".html":
            return FileResponse(target)
        rel = target.relative_to(root).as_posix()
        assets_url = "../" * (rel.count("/") + 1) + "_assets"
        html = offline_html(target.read_text(encoding="utf-8"), rel, assets_url)
        return HTMLResponse(html, headers={"Content-Security-Policy": data_docs_csp(html)})

    return app
