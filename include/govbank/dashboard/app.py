"""The district's dashboard: one page; tiles and tables from the server, charts drawn by
the vendored ECharts from the page's JSON (no inline script); csv/xlsx exports.

:func:`create_dashboard_app` builds the FastAPI app; the Airflow plugin mounts it behind
Airflow's login, ``python -m govbank.dashboard`` serves it behind its own. Either way
it reads through :func:`govbank.dashboard.data.load` with the dashboard role's engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from govbank.dashboard import charts, fmt, tables
from govbank.dashboard.auth import Gate
from govbank.dashboard.data import (
    DATASET_LABELS,
    HEADLINE,
    SECONDARY,
    STATUS_LABELS,
    DashboardData,
    load,
)
from govbank.dashboard.headers import SecurityHeaders
from govbank.dashboard.report_link import ReportMaker, default_report_maker, month_bounds

HERE = Path(__file__).resolve().parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _tile(metric: str, label: str, unit: str, kind: str, data: DashboardData) -> dict:
    value = data.kpi.get(metric)
    text = "—" if value is None else (fmt.yi(value) if kind == "yi" else fmt.count_zh(value))
    return {"metric": metric, "label": label, "unit": unit, "text": text, "raw": value}


def render_page(
    data: DashboardData,
    user: str | None,
    logout_url: str | None,
    prefix: str = "",
    csrf: str | None = None,
    filters: tables.Filters | None = None,
    report_url: str | None = None,
) -> str:
    """The whole page as HTML (also used by tests without a server); ``csrf`` goes
    with the logout form; ``filters`` is the state the page opens in (the query)."""
    filters = filters or tables.Filters()
    names = {code: data.banks.get(code, code) for code in {*data.banks, *data.monthly_records}}
    late = [f for f in data.freshness if f.is_late]
    recon_total = [sum(v[i] for v in data.reconciliation.values()) for i in range(3)]
    start, end = filters.range_label(data)
    return TEMPLATES.get_template("dashboard.html").render(
        data=data,
        prefix=prefix,
        user=user,
        logout_url=logout_url if csrf else None,
        csrf=csrf,
        headline=[_tile(*spec, data) for spec in HEADLINE],
        secondary=[_tile(*spec, data) for spec in SECONDARY],
        payload=charts.payload(data, filters, prefix, report_url),
        start=start,
        end=end,
        tables=tables.TABLES,
        recon_total=recon_total,
        names=names,
        late=late,
        towns_served=sum(1 for t in data.towns if t.total),
        dataset_labels=DATASET_LABELS,
        status_labels=STATUS_LABELS,
        fmt=fmt,
    )


def _as_of(value: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


def create_dashboard_app(
    engine_factory: Callable[[], Engine],
    gate: Gate,
    *,
    logout: bool = True,
    embedded: bool = False,
    report: ReportMaker | None | bool = True,
) -> FastAPI:
    """The dashboard as an ASGI app; ``engine_factory`` is called once, on first use.
    ``embedded``: shown in Airflow's iframe, so its own origin may frame it.
    ``report``: what writes the report the page offers (True: ``govbank.report`` if
    installed, see :mod:`govbank.dashboard.report_link`; None or False: no report)."""
    make_report: ReportMaker | None = default_report_maker() if report is True else (report or None)
    app = FastAPI(title="瓯海区政银合作看板", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders, embedded=embedded)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    gate.install(app)
    engines: list[Engine] = []

    def engine() -> Engine:
        if not engines:
            engines.append(engine_factory())
        return engines[0]

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/", response_class=HTMLResponse)
    async def page(request: Request, as_of: str | None = None) -> Response:
        user = await gate.user(request)
        if user is None:
            return RedirectResponse(gate.login_url(request), status_code=303)
        data = await run_in_threadpool(load, engine(), _as_of(as_of))
        prefix = request.scope.get("root_path", "").rstrip("/")
        csrf = gate.form_token(request) if logout else None
        filters = tables.Filters.from_query(request.query_params, data)
        report_url = f"{prefix}/report.xlsx" if make_report else None
        return HTMLResponse(
            render_page(data, user, f"{prefix}/logout", prefix, csrf, filters, report_url)
        )

    @app.get("/export/{name}.{ext}")
    async def export(request: Request, name: str, ext: str, as_of: str | None = None) -> Response:
        """One table under the page's filters, as csv or xlsx, behind the same login."""
        user = await gate.user(request)
        if user is None:
            return RedirectResponse(gate.login_url(request), status_code=303)
        if name not in tables.TABLES or ext not in ("csv", "xlsx"):
            raise HTTPException(404)
        data = await run_in_threadpool(load, engine(), _as_of(as_of))
        filters = tables.Filters.from_query(request.query_params, data)
        t = tables.table(data, name, filters)
        if ext == "csv":
            body, media = tables.to_csv(t), "text/csv; charset=utf-8"
        else:
            note = f"数据截至 {data.as_of}；{tables.describe(data, filters)}"
            body = await run_in_threadpool(tables.to_xlsx, t, note)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return _download(body, media, tables.filename(data, t, filters, ext))

    @app.get("/report.xlsx")
    async def report_file(request: Request, as_of: str | None = None) -> Response:
        """The half-year report for the page's month range (see report_link)."""
        user = await gate.user(request)
        if user is None:
            return RedirectResponse(gate.login_url(request), status_code=303)
        if make_report is None:
            raise HTTPException(404, "报告功能尚未安装")
        data = await run_in_threadpool(load, engine(), _as_of(as_of))
        filters = tables.Filters.from_query(request.query_params, data)
        start, end = filters.range_label(data)
        if not start:
            raise HTTPException(404, "暂无业务数据")
        first, last = month_bounds(start, end)
        body = await run_in_threadpool(make_report, first, last, data.as_of)
        return _download(
            body,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            f"govbank_report_{first}_{last}.xlsx",
        )

    return app


def _download(body: bytes, media: str, name: str) -> Response:
    return Response(
        body,
        media_type=media,
        headers={
            "Content-Disposition": f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "no-store",  # the figures are not for shared caches
        },
    )
