"""Issue 20, item 3: a dashboard that answers questions, on the demo's warehouse.

The demo's daily job run in this process (every bank's drop through the ingest, the
e-licence usages pulled from the reference API server on loopback, the marts as of
2023-06-15), then ``python -m govbank.dashboard`` serves it on loopback and Chromium
clicks: a town filters the other charts and the freshness table (read from the DOM
and from the ECharts option each chart publishes), a month range narrows the trend
and the reconciliation, and the csv/xlsx exports hold what the page shows. The page
must pass its Content-Security-Policy with ECharts drawing.

``GOVBANK_UPDATE_SCREENSHOTS=1`` (or a missing file) copies the page's screenshot to
``docs/images/dashboard.png`` for the README: it is the demo's warehouse, so it shows
the demo's figures (717 matched records).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from govbank.config.settings import Settings
from govbank.dashboard import tables
from govbank.dashboard.data import load, make_dashboard_engine, readonly_sqlite_url
from govbank.elicense import ElicenseClient, pull_usages
from govbank.orchestration.runtime import build_context, build_marts
from govbank_dev import elicense_data
from tests.apiserver import RefServer
from tests.browser import dashboard_login, serve_dashboard, watch
from tests.conftest import PSEUDONYM_KEY, ROOT, copy_demo_ingested

AS_OF = dt.date(2023, 6, 15)
USER, PASSWORD = "ouhai", "district-password-for-the-test"
DEMO_MATCHED = 717  # what `make demo` prints: matched=717


@dataclass
class Demo:
    local: Path
    warehouse: Path
    users_file: Path


def build_demo_warehouse(local: Path, validator) -> Path:  # type: ignore[no-untyped-def]
    """The demo's daily job without Airflow, on a copy of the demo drop already ingested
    (tests/conftest.py's demo_ingested, every bank through process_bank): the e-licence
    pull, then the marts."""
    url = f"sqlite:///{local / 'warehouse.db'}"
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(local), "GOVBANK_WAREHOUSE_URL": url})
    ctx = build_context(settings, PSEUDONYM_KEY)
    try:
        generated = elicense_data.usages_from_bank_records(
            elicense_data.bank_records_from_warehouse(url), 20230615, elicense_data.parse_now(AS_OF.isoformat())
        )
        with RefServer(generated.usages) as api:
            with ElicenseClient(api.client_config(page_limit=200)) as client:
                pull_usages(ctx.engine, client, local / "runs", "demo", validator)
    finally:
        ctx.engine.dispose()
    build_marts(settings, AS_OF)
    return local / "warehouse.db"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, validator, demo_ingested: Path) -> Demo:  # type: ignore[no-untyped-def]
    local = copy_demo_ingested(demo_ingested, tmp_path_factory.mktemp("dash_charts") / "local")
    warehouse = build_demo_warehouse(local, validator)
    users_file = local / "users"
    add = subprocess.run(
        [sys.executable, "-m", "govbank.dashboard", "add-user", USER],
        input=PASSWORD + "\n",
        env={**os.environ, "GOVBANK_DASHBOARD_USERS_FILE": str(users_file), "PYTHONPATH": str(ROOT / "include")},
        capture_output=True, text=True, timeout=60,
    )
    assert add.returncode == 0, add.stderr
    return Demo(local, warehouse, users_file)


@pytest.fixture(scope="module")
def data(demo: Demo):  # type: ignore[no-untyped-def]
    engine = make_dashboard_engine(readonly_sqlite_url(demo.warehouse))
    try:
        yield load(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def dashboard(demo: Demo) -> Iterator[str]:
    """``python -m govbank.dashboard`` on loopback over the demo's warehouse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBANK_")}
    env.update(GOVBANK_LOCAL_DIR=str(demo.local), GOVBANK_DASHBOARD_USERS_FILE=str(demo.users_file),
               PYTHONPATH=str(ROOT / "include"))
    with serve_dashboard(env) as base:
        yield base


# ---------------------------------------------------------------- the filter rule, no browser


def test_filters_narrow_the_tables_by_town_bank_and_months(data) -> None:  # type: ignore[no-untyped-def]
    assert sum(r.matched for r in data.recon) == DEMO_MATCHED
    everything = tables.Filters()
    towns = tables.table(data, "towns", everything)
    assert len(towns.rows) == 13
    # a town with outlets of some banks but not all
    by_town: dict[str, set[str]] = {}
    for o in data.outlets:
        by_town.setdefault(o.town_code, set()).add(o.bank_code)
    town = next(t for t, banks in sorted(by_town.items()) if 0 < len(banks) < len(data.banks))
    f = tables.Filters(town=town)
    assert f.banks_in_scope(data) == by_town[town]
    assert len(tables.table(data, "towns", f).rows) == 1
    names = {data.banks[b] for b in by_town[town]}
    assert {r[0] for r in tables.table(data, "freshness", f).rows} == names
    assert {r[0] for r in tables.table(data, "monthly", f).rows} <= names
    # months: only those in the range, both ends included
    ranged = tables.Filters(start="2023-03", end="2023-04")
    assert {r[1] for r in tables.table(data, "monthly", ranged).rows} == {"2023-03", "2023-04"}
    # a bookmark with junk in it still opens the page
    junk = tables.Filters.from_query({"from": "2023-13", "to": "x", "town": "nowhere", "bank": "<b>"}, data)
    assert junk == tables.Filters()
    swapped = tables.Filters.from_query({"from": "2023-05", "to": "2023-02"}, data)
    assert (swapped.start, swapped.end) == ("2023-02", "2023-05")


# ---------------------------------------------------------------- Chromium


def _option(page, chart: str) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(page.locator(f"#{chart}").get_attribute("data-option"))


def _trend_banks(page) -> set[str]:  # type: ignore[no-untyped-def]
    return {s["id"] for s in _option(page, "chart-trend")["series"]}


def _visible_freshness_banks(page) -> set[str]:  # type: ignore[no-untyped-def]
    return set(page.locator("#freshness tbody tr:not([hidden])").evaluate_all("rs => rs.map(r => r.dataset.bank)"))


@pytest.mark.integration
def test_clicking_a_town_filters_the_other_charts_and_exports_follow(dashboard: str, data, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN", accept_downloads=True)
    blocked: list[str] = []

    def route(r) -> None:  # type: ignore[no-untyped-def]
        if r.request.url.startswith(dashboard + "/"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors = watch(page)
    dashboard_login(page, dashboard, USER, PASSWORD)
    page.locator("#dashboard[data-ready='1']").wait_for()

    # the demo's figures, drawn: 13 towns on the map, every bank's line, 717 matched
    all_banks = set(data.banks)
    assert len(_option(page, "chart-map")["series"][0]["data"]) == 13
    assert _trend_banks(page) == {m.bank_code for m in data.monthly}
    assert page.locator("#reconciliation strong[data-part=matched]").inner_text() == str(DEMO_MATCHED)
    assert _visible_freshness_banks(page) == {f.bank_code for f in data.freshness}
    # tooltips are on, drawn in the canvas (HTML tooltips carry inline styles)
    assert _option(page, "chart-map")["tooltip"]["renderMode"] == "richText"
    shot_dir = ROOT / "test-artifacts" / "screenshots"
    shot_dir.mkdir(parents=True, exist_ok=True)
    shot = shot_dir / "dashboard-demo.png"
    page.screenshot(path=str(shot), full_page=True)
    target = ROOT / "docs" / "images" / "dashboard.png"
    if os.environ.get("GOVBANK_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        shutil.copyfile(shot, target)

    # click a town on the map's canvas, where ECharts put it
    by_town: dict[str, set[str]] = {}
    for o in data.outlets:
        by_town.setdefault(o.town_code, set()).add(o.bank_code)
    candidates = [t for t, banks in sorted(by_town.items()) if 0 < len(banks) < len(all_banks)]
    points = page.evaluate(
        """() => {
            const c = echarts.getInstanceByDom(document.getElementById('chart-map'));
            return c.getOption().series[0].data.map(d => [d.code, ...c.convertToPixel({seriesIndex: 0}, [d.value[0], d.value[1]])]);
        }"""
    )
    where = {code: (px, py) for code, px, py in points}

    def room(code: str) -> float:  # the distance to the nearest other town's centre
        return min(((where[code][0] - px) ** 2 + (where[code][1] - py) ** 2) ** 0.5
                   for other, (px, py) in where.items() if other != code)

    town = max(candidates, key=room)
    town_name = next(t.name for t in data.towns if t.code == town)
    x, y = where[town]
    box = page.locator("#chart-map").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("() => JSON.parse(document.body.dataset.filter).town !== null")
    assert json.loads(page.evaluate("document.body.dataset.filter"))["town"] == town
    assert page.locator(f"#map button.town[data-town='{town}']").get_attribute("aria-pressed") == "true"
    assert town_name in page.locator("#filter-state").inner_text()
    # the other charts now show only the banks with an outlet in that town
    assert _trend_banks(page) == by_town[town] & {m.bank_code for m in data.monthly}
    recon_names = set(_option(page, "chart-recon")["yAxis"]["data"])
    assert recon_names == {data.banks[b] for b in by_town[town] if any(r.bank_code == b for r in data.recon)}
    assert _visible_freshness_banks(page) == by_town[town]
    matched = sum(r.matched for r in data.recon if r.bank_code in by_town[town])
    assert page.locator("#reconciliation strong[data-part=matched]").inner_text() == str(matched)
    # the bars keep every town, the others faded
    bars = _option(page, "chart-towns")
    faded = {d["code"] for d in bars["series"][0]["data"] if d["itemStyle"]["opacity"] < 1}
    assert len(faded) == 12 and town not in faded

    # a month range: the trend's axis and the reconciliation follow
    page.fill("#from", "2023-03")
    page.fill("#to", "2023-04")
    page.locator("#range button[type=submit]").click()
    page.wait_for_function("() => JSON.parse(document.body.dataset.filter).to === '2023-04'")
    assert _option(page, "chart-trend")["xAxis"]["data"] == ["2023年3月", "4月"]
    in_range = sum(r.matched for r in data.recon if r.bank_code in by_town[town] and "2023-03" <= r.month <= "2023-04")
    assert page.locator("#reconciliation strong[data-part=matched]").inner_text() == str(in_range)
    assert "from=2023-03" in page.url and f"town={town}" in page.url

    # the exports hold what the page shows, named with the range
    with page.expect_download() as info:
        page.locator("a.export[data-table=monthly][data-ext=csv]").click()
    download = info.value
    assert download.suggested_filename == f"govbank_monthly_2023-03_2023-04_{town}.csv"
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert rows[0][:2] == ["银行", "月份"]
    assert {r[1] for r in rows[1:]} == {"2023-03", "2023-04"}
    assert {r[0] for r in rows[1:]} == {data.banks[b] for b in by_town[town] if any(
        m.bank_code == b and "2023-03" <= m.month <= "2023-04" for m in data.monthly)}
    page_records = sum(sum(s["data"]) for s in _option(page, "chart-trend")["series"])
    assert sum(int(r[2]) + int(r[3]) for r in rows[1:]) == page_records

    with page.expect_download() as info:
        page.locator("a.export[data-table=reconciliation][data-ext=xlsx]").click()
    download = info.value
    assert download.suggested_filename == f"govbank_reconciliation_2023-03_2023-04_{town}.xlsx"
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(Path(download.path()).read_bytes())).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][0] == "业务核对" and town_name in values[1][0] and "mart_reconciliation" in values[2][0]
    assert sum(r[3] for r in values[4:]) == in_range

    # a bank clicked in the reconciliation chart: the other charts narrow to it
    recon = _option(page, "chart-recon")
    bank_row = max(range(len(recon["yAxis"]["data"])), key=lambda i: recon["series"][0]["data"][i]["value"])
    bank = recon["series"][0]["data"][bank_row]["code"]
    x, y = page.evaluate(
        """([row, v]) => echarts.getInstanceByDom(document.getElementById('chart-recon'))
            .convertToPixel({seriesIndex: 0}, [v, row])""",
        [bank_row, recon["series"][0]["data"][bank_row]["value"] / 2],
    )
    box = page.locator("#chart-recon").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("() => JSON.parse(document.body.dataset.filter).bank !== null")
    assert json.loads(page.evaluate("document.body.dataset.filter"))["bank"] == bank
    assert _trend_banks(page) == {bank}
    assert _visible_freshness_banks(page) == {bank}
    # clearing the town and the bank restores every bank
    page.locator("#filter-state button[data-clear=town]").click()
    page.locator("#filter-state button[data-clear=bank]").click()
    page.wait_for_function("() => JSON.parse(document.body.dataset.filter).bank === null")
    assert _trend_banks(page) == {m.bank_code for m in data.monthly}

    assert blocked == []
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors
    context.close()


def test_exports_need_the_login(dashboard: str) -> None:
    for path in ("/export/monthly.csv", "/export/towns.xlsx", "/report.xlsx"):
        r = requests.get(dashboard + path, allow_redirects=False, timeout=30)
        assert r.status_code == 303 and "/login" in r.headers["location"], path
