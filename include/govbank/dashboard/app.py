"""The district's dashboard: one page, rendered on the server, charts in inline SVG.

:func:`create_dashboard_app` builds the FastAPI app; the Airflow plugin mounts it behind
Airflow's login, ``python -m govbank.dashboard`` serves it behind its own. Either way
it reads through :func:`govbank.dashboard.data.load` with the dashboard role's engine.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from govbank.dashboard import charts, fmt
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
) -> str:
    """The whole page as HTML (also used by tests without a server); ``csrf`` goes
    with the logout form."""
    names = {code: data.banks.get(code, code) for code in {*data.banks, *data.monthly_records}}
    late = [f for f in data.freshness if f.is_late]
    recon_total = [sum(v[i] for v in data.reconciliation.values()) for i in range(3)]
    return TEMPLATES.get_template("dashboard.html").render(
        data=data,
        prefix=prefix,
        user=user,
        logout_url=logout_url if csrf else None,
        csrf=csrf,
        headline=[_tile(*spec, data) for spec in HEADLINE],
        secondary=[_tile(*spec, data) for spec in SECONDARY],
        map_svg=charts.town_map(data.towns),
        town_svg=charts.town_bars(data.towns),
        trend_svg=charts.trend_lines(data.monthly_records, data.months, names, width=1280, height=320),
        recon_svg=charts.reconciliation_bars(data.reconciliation, names),
        recon_total=recon_total,
        names=names,
        late=late,
        towns_served=sum(1 for t in data.towns if t.total),
        dataset_labels=DATASET_LABELS,
        status_labels=STATUS_LABELS,
        fmt=fmt,
    )


def create_dashboard_app(
    engine_factory: Callable[[], Engine], gate: Gate, *, logout: bool = True, embedded: bool = False
) -> FastAPI:
    """The dashboard as an ASGI app; ``engine_factory`` is called once, on first use.
    ``embedded``: shown in Airflow's iframe, so its own origin may frame it."""
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
        try:
            day = dt.date.fromisoformat(as_of) if as_of else None
        except ValueError:
            day = None
        data = await run_in_threadpool(load, engine(), day)
        prefix = request.scope.get("root_path", "").rstrip("/")
        csrf = gate.form_token(request) if logout else None
        return HTMLResponse(render_page(data, user, f"{prefix}/logout", prefix, csrf))

    return app
