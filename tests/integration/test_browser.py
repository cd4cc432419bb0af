"""What people see, in a real browser: the Airflow UI, Data Docs and the dashboard.

Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser) driven by
Playwright. ``scripts/airflow-standalone.sh`` starts Airflow on loopback with the
project's settings in a fresh folder holding the demo drop; the test logs in through
the UI, sees the DAGs and their docs, runs the ingest and marts DAGs (triggered through
the REST API, as of 2023-06-15 like the demo), opens a failed validation's Data Docs
from the task instance's tab, then reads the dashboard's tiles, inside Airflow and
served on its own behind its own login: they must be ``mart_kpi``'s figures, which are
the seed report's. Every request the browser makes must stay on this machine: the pages
work offline. ``scripts/airflow-stop.sh`` must then leave no process behind.

Screenshots go to ``test-artifacts/screenshots/``; with ``GOVBANK_UPDATE_SCREENSHOTS=1``
(or when they are missing) the DAG grid and the dashboard are copied to ``docs/images/``
for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from govbank.dashboard import fmt
from govbank.dashboard.auth import SessionStore
from govbank.dashboard.data import HEADLINE, SECONDARY, make_dashboard_engine, readonly_sqlite_url
from govbank.dashboard.offline import CDN_FILES, asset_path, offline_html
from govbank.warehouse.schema import etl_reject, mart_kpi
from govbank_dev.demo import EXPECTED_KPI, build_demo, write_drop
from tests.browser import Offline, airflow_login, free_port, serve_dashboard, submit_dashboard_login
from tests.conftest import ROOT

SHOTS = ROOT / "test-artifacts" / "screenshots"
README_IMAGES = ROOT / "docs" / "images"
AS_OF = "2023-06-15"
LOGICAL_DATE = f"{AS_OF}T08:00:00+08:00"  # the daily schedule's slot, in the district's zone
RUN_TIMEOUT = 600  # seconds for one DAG run on a busy 2-core machine


def _group_alive(pgid: int) -> bool:
    """A process of the group still runs (zombies waiting to be reaped do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            return True
    return False


# ---------------------------------------------------------------- fast checks, no services


def test_numbers_are_written_the_chinese_way() -> None:
    assert fmt.count_zh(837) == "837"
    assert fmt.count_zh(12_345) == "1.23万"
    assert fmt.count_zh(250_000_000) == "2.5亿"
    assert fmt.yi(Decimal("1187000000.00")) == "11.87"
    assert fmt.amount_zh(4_800_000) == "480万元"
    assert fmt.amount_zh(Decimal("1040000000")) == "10.40亿元"
    assert fmt.percent(Decimal("0.8372")) == "83.7%"


def test_data_docs_pages_are_rewritten_to_load_nothing_remote() -> None:
    page = (
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
        '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>'
        '<script src="https://example.org/unknown.js"></script>'
        "<style>.a{background:url('https://great-expectations-web-assets.s3.amazonaws.com/x.png')}</style>"
        '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1"/>'
        '<a href="https://greatexpectations.io">a link, not a load</a>'
    )
    out = offline_html(page, "validations/elic/f_1/t/page.html", "../../../../../_assets")
    assert 'href="../../../../../_assets/bootstrap.min.css"' in out
    assert 'src="../../../../../_assets/jquery.min.js"' in out
    assert "vega" not in out and "example.org" not in out and "url(" not in out
    assert 'src="../../../../static/images/logo-long.png"' in out
    assert 'href="https://greatexpectations.io"' in out
    for name in {v for v in CDN_FILES.values() if v}:
        path = asset_path(name)
        assert path is not None and path.is_file() and path.stat().st_size > 0, name
    assert asset_path("../settings.py") is None


def test_dashboard_sessions_expire_and_end() -> None:
    now = [1000.0]
    sessions = SessionStore(60, clock=lambda: now[0])
    value = sessions.create("district")
    now[0] = 1030.0
    assert sessions.get(value).user == "district"
    assert sessions.get(value[:-2] + "xx") is None  # tampered
    assert SessionStore(60, clock=lambda: now[0]).get(value) is None  # another server's
    now[0] = 1061.0
    assert sessions.get(value) is None  # expired
    other = sessions.create("district")
    assert sessions.end(other) and sessions.get(other) is None  # logout ends it for good


# ---------------------------------------------------------------- Airflow and Chromium


@dataclass
class Airflow:
    base: str
    env: dict[str, str]
    local: Path
    home: Path
    user: str
    password: str
    pgid: int
    passwords: dict[str, str]

    def token(self, user: str | None = None) -> dict[str, str]:
        user = user or self.user
        r = requests.post(
            f"{self.base}/auth/token",
            json={"username": user, "password": self.passwords[user]},
            timeout=30,
        )
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def run_dag(self, dag_id: str, run_id: str) -> dict:
        """Trigger a run as of the demo's date through the REST API; wait until it ends."""
        auth = self.token()
        r = requests.post(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": LOGICAL_DATE},
            headers=auth,
            timeout=30,
        )
        assert r.status_code in (200, 201), r.text
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline:
            try:
                run = requests.get(
                    f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=auth, timeout=60
                ).json()
            except requests.RequestException:  # a busy SQLite can hold the API server a while
                continue
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(3)
        pytest.fail(f"{dag_id} run {run_id} did not finish in {RUN_TIMEOUT} s")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """Airflow standalone through the project's own scripts, on the demo drop."""
    root = tmp_path_factory.mktemp("browser")
    local, home = root / "local", root / "airflow"
    write_drop(build_demo(), local / "landing")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_", "AIRFLOW__", "GOVBANK_"))
    }
    env.update(
        GOVBANK_LOCAL_DIR=str(local),
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        GOVBANK_PSEUDONYM_KEY="browser-test-key-0123456789abcdef",
        # no time-based runs: the test runs the DAGs as of the demo's date itself
        GOVBANK_SCHEDULES="off",
        AIRFLOW_PORT=str(port),
        AIRFLOW_START_TIMEOUT="420",
        # the task logs at INFO: the ingest tasks' "great_expectations preloaded" line
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        # the admin runs the DAGs; district staff are viewers; "nobody" has no role
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,district:viewer,nobody:",
    )
    start = subprocess.run(
        ["bash", str(ROOT / "scripts" / "airflow-standalone.sh")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    pidfile = home / "standalone.pid"
    pgid = int(pidfile.read_text()) if pidfile.is_file() and pidfile.read_text().strip() else 0
    try:
        assert start.returncode == 0, start.stdout[-3000:] + start.stderr[-3000:]
        assert "simple_auth_manager_passwords.json.generated" in start.stdout
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        yield Airflow(f"http://127.0.0.1:{port}", env, local, home, "admin", passwords["admin"], pgid, passwords)
    finally:
        stop = subprocess.run(
            ["bash", str(ROOT / "scripts" / "airflow-stop.sh")],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        left = pgid and _group_alive(pgid)
        if left:  # never leave Airflow running, whatever the test says
            os.killpg(pgid, signal.SIGKILL)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not left, f"processes of group {pgid} survived scripts/airflow-stop.sh"


def _shot(page, name: str, full_page: bool = False) -> Path:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def _publish(shot: Path, name: str) -> None:
    target = README_IMAGES / name
    if os.environ.get("GOVBANK_UPDATE_SCREENSHOTS") == "1" or not target.exists():
        README_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)


def _expected_tiles(warehouse: Path) -> dict[str, str]:
    """mart_kpi as of the demo's date, as the tiles must show it (read read-only)."""
    engine = make_dashboard_engine(readonly_sqlite_url(warehouse))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(mart_kpi.c.metric, mart_kpi.c.value).where(mart_kpi.c.as_of == AS_OF)
            ).all()
    finally:
        engine.dispose()
    values = {metric: Decimal(str(value)) for metric, value in rows}
    assert values == EXPECTED_KPI  # the marts tell the seed report's story
    tiles = {}
    for metric, _label, _unit, kind in (*HEADLINE, *SECONDARY):
        v = values[metric]
        # written independently of the dashboard's formatter: 亿元 with 2 decimals, counts plain
        tiles[metric] = f"{(v / Decimal(10**8)):.2f}" if kind == "yi" else str(int(v))
    return tiles


def _reject_line(warehouse: Path, file_name: str) -> int:
    engine = make_dashboard_engine(readonly_sqlite_url(warehouse))
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(etl_reject.c.line).where(etl_reject.c.file_name == file_name)
            ).scalar_one()
    finally:
        engine.dispose()


def _read_tiles(frame) -> dict[str, str]:  # type: ignore[no-untyped-def]
    tiles = frame.locator(".tile")
    return {
        tiles.nth(i).get_attribute("data-metric"): tiles.nth(i).locator(".tile-value").inner_text().strip()
        for i in range(tiles.count())
    }


def _plugin_frame(page, path_part: str):  # type: ignore[no-untyped-def]
    """The iframe Airflow shows a plugin page in, once it has loaded that page."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for frame in page.frames:
            # not the main frame: Airflow mirrors the iframe's path into its own URL
            if frame is not page.main_frame and path_part in frame.url:
                frame.wait_for_load_state()
                return frame
        page.wait_for_timeout(500)  # not time.sleep: Playwright handles its events meanwhile
    pytest.fail(f"no frame showing {path_part}; frames: {[f.url for f in page.frames]}")


@pytest.mark.integration
def test_airflow_ui_data_docs_and_dashboard_in_chromium(airflow: Airflow, browser) -> None:  # type: ignore[no-untyped-def]
    # Airflow's UI in English (the labels below are its English ones)
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, locale="en-US", timezone_id="Asia/Shanghai"
    )
    offline = Offline(context, (airflow.base + "/",))
    page = context.new_page()
    page.set_default_timeout(60_000)
    console: list[str] = []  # the plugin's frames report here too
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)

    # log in through the UI
    airflow_login(page, airflow.base, airflow.user, airflow.password)

    # every DAG, with its docs
    page.goto(f"{airflow.base}/dags")
    for dag_id in ("govbank_ingest", "govbank_marts", "govbank_elicense"):
        page.get_by_text(dag_id, exact=True).first.wait_for()
    _shot(page, "01-dags.png")
    for dag_id, phrase in (
        ("govbank_ingest", "bank files → warehouse"),
        ("govbank_marts", "rebuild the marts dashboards read"),
    ):
        page.goto(f"{airflow.base}/dags/{dag_id}")
        page.get_by_role("button", name="Dag Docs").click()
        page.get_by_text(phrase).first.wait_for()
        _shot(page, f"02-{dag_id}-docs.png")
        page.keyboard.press("Escape")

    # the daily job, as of the demo's date: ingest, then the marts
    ingest = airflow.run_dag("govbank_ingest", "browser_test_ingest")
    assert ingest["state"] == "success", ingest
    marts = airflow.run_dag("govbank_marts", "browser_test_marts")
    assert marts["state"] == "success", marts

    page.goto(f"{airflow.base}/dags/govbank_ingest/runs/browser_test_ingest")
    page.get_by_label("Toggle group").first.click()  # open the per-bank task group in the grid
    page.get_by_text("ingest_bank [").first.wait_for()
    page.get_by_text("bank.ingest_bank").first.wait_for()
    grid = _shot(page, "03-ingest-grid.png")
    _publish(grid, "airflow-dag-grid.png")

    # one click from the task instance of the bank whose file failed a rule: its Data Docs tab
    auth = airflow.token()
    tis = requests.get(
        f"{airflow.base}/api/v2/dags/govbank_ingest/dagRuns/browser_test_ingest/taskInstances",
        params={"task_id": "bank.ingest_bank", "limit": 100}, headers=auth, timeout=30,
    ).json()["task_instances"]
    ohrcb = next(ti for ti in tis if ti["rendered_map_index"] == "OHRCB")
    page.goto(
        f"{airflow.base}/dags/govbank_ingest/runs/browser_test_ingest/tasks/bank.ingest_bank"
        f"/mapped/{ohrcb['map_index']}"
    )
    page.get_by_role("link", name="Data Docs", exact=True).click()
    files = _plugin_frame(page, "/govbank/data-docs/files")
    row = files.locator("tr[data-file='ELIC_OHRCB_20230228.xlsx']")
    row.wait_for()
    assert row.get_attribute("data-status") == "partially_accepted"
    assert "DRAWN_EXCEEDS_CREDIT" in row.inner_text()
    # only that task's bank is listed
    banks = files.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.bank)")
    assert set(banks) == {"OHRCB"}
    _shot(page, "04-task-data-docs-tab.png")
    row.locator("a.docs").click()
    docs = _plugin_frame(page, "/govbank/data-docs/site/validations/")
    docs.get_by_text("Expectation Validation Result").first.wait_for()
    # the failed expectation, and the row that broke it (source_line 21 of the bank's file)
    failed = docs.locator("tr", has=docs.locator(".fa-times")).filter(has_text="drawn_amount").first
    failed.wait_for()
    text = failed.inner_text()
    assert "must always be greater than or equal to" in text and "source_line" in text
    # the row named is the one the bank's rejects file names
    assert str(_reject_line(airflow.local / "warehouse.db", "ELIC_OHRCB_20230228.xlsx")) in text
    # Bootstrap from our vendored copy styled the page (a navbar is fixed height, not inline text)
    assert docs.locator("nav.navbar").first.evaluate("e => getComputedStyle(e).display") == "flex"
    _shot(page, "05-data-docs-failed-validation.png", full_page=True)

    # the dashboard inside Airflow: the tiles are mart_kpi's figures
    expected = _expected_tiles(airflow.local / "warehouse.db")
    page.goto(f"{airflow.base}/dags")
    page.get_by_role("link", name="政银合作看板").first.click()
    dash = _plugin_frame(page, "/govbank/dashboard/")
    dash.locator(".tile").first.wait_for()
    assert dash.locator("#as-of").inner_text() == AS_OF
    assert _read_tiles(dash) == expected
    _shot(page, "06-dashboard-in-airflow.png")

    # nothing was fetched from outside this machine: the pages work offline
    assert offline.blocked == []
    # and the plugin's pages, framed by Airflow, passed their Content-Security-Policy
    assert not [m for m in console if "Content Security Policy" in m], console
    context.close()


@pytest.mark.integration
def test_ingest_tasks_found_great_expectations_preloaded(airflow: Airflow) -> None:
    """The LocalExecutor's workers were forked from a warm scheduler
    (govbank.orchestration.workers.WarmLocalExecutor): every ingest task of the run
    above reused the validator instead of importing GX."""
    assert "govbank warm-up: great_expectations" in (airflow.home / "standalone.log").read_text(errors="replace")
    run_dir = airflow.home / "logs" / "dag_id=govbank_ingest" / "run_id=browser_test_ingest"
    logs = sorted(run_dir.glob("task_id=bank.ingest_bank/map_index=*/attempt=*.log"))
    assert len(logs) >= len(build_demo().banks), logs
    for path in logs:
        assert "great_expectations preloaded: yes (validator reused)" in path.read_text(errors="replace"), path


@pytest.mark.integration
def test_dashboard_on_its_own_behind_its_own_login(airflow: Airflow, browser) -> None:  # type: ignore[no-untyped-def]
    """``python -m govbank.dashboard``: district staff log in with the dashboard's account."""
    expected = _expected_tiles(airflow.local / "warehouse.db")  # after the run of the test above
    env = {
        **airflow.env,
        "GOVBANK_DASHBOARD_USERS_FILE": str(airflow.local / "dashboard-users"),
        "PYTHONPATH": str(ROOT / "include"),
    }
    add = subprocess.run(
        [sys.executable, "-m", "govbank.dashboard", "add-user", "ouhai"],
        input="district-password-for-the-test\n", env=env, capture_output=True, text=True, timeout=60,
    )
    assert add.returncode == 0, add.stderr
    with serve_dashboard(env, interval=0.3) as base:
        assert requests.get(f"{base}/", allow_redirects=False, timeout=10).status_code == 303

        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        offline = Offline(context, (base + "/",))
        page = context.new_page()
        page.goto(f"{base}/")
        page.wait_for_url("**/login**")
        submit_dashboard_login(page, "ouhai", "wrong")
        page.get_by_text("用户名或密码不正确").wait_for()
        submit_dashboard_login(page, "ouhai", "district-password-for-the-test")
        page.locator(".tile").first.wait_for()
        assert _read_tiles(page) == expected
        # the other panels are there and speak Chinese
        for section in ("服务点分布", "各街道（镇）服务点", "电子营业执照业务月度趋势", "业务核对", "报送及时性"):
            page.get_by_role("heading", name=section).wait_for()
        assert page.locator("#map .town").count() == 13
        page.locator("#dashboard[data-ready='1']").wait_for()  # ECharts drew from the page's JSON
        trend = json.loads(page.locator("#chart-trend").get_attribute("data-option"))
        assert len(trend["series"]) == 5
        assert page.locator("#freshness tbody tr").count() == 10
        # docs/images/dashboard.png comes from tests/integration/test_dashboard_charts.py: the demo's
        # warehouse with its e-licence pull (this run has none: 已匹配 0 笔)
        _shot(page, "07-dashboard.png", full_page=True)
        page.get_by_role("button", name="退出").click()  # a POST with the session's token
        page.wait_for_url("**/login")
        page.goto(f"{base}/")
        page.wait_for_url("**/login**")
        assert offline.blocked == []
        context.close()


@pytest.mark.integration
def test_plugin_pages_respect_airflow_roles_and_carry_the_headers(airflow: Airflow) -> None:
    """Inside Airflow: a viewer (district staff) sees the dashboard and Data Docs but
    cannot trigger or clear anything; a user without a role sees neither; Airflow's own
    origin may frame the pages, no other."""
    pages = ("/govbank/dashboard/", "/govbank/data-docs/files")
    for path in pages:
        anonymous = requests.get(airflow.base + path, allow_redirects=False, timeout=30)
        assert anonymous.status_code == 303 and "/auth/login" in anonymous.headers["location"]
    viewer = airflow.token("district")
    for path in pages:
        for how in ({"headers": viewer}, {"cookies": {"_token": viewer["Authorization"][7:]}}):
            r = requests.get(airflow.base + path, allow_redirects=False, timeout=60, **how)
            assert r.status_code == 200, (path, r.status_code)
            csp = r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'self'" in csp and "script-src 'self'" in csp
            assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"]
    assert "瓯海区政银合作看板" in requests.get(airflow.base + pages[0], headers=viewer, timeout=60).text
    # the viewer cannot trigger a run, clear a task or unpause a DAG
    trigger = requests.post(
        f"{airflow.base}/api/v2/dags/govbank_marts/dagRuns",
        json={"dag_run_id": "viewer_try", "logical_date": LOGICAL_DATE}, headers=viewer, timeout=30,
    )
    assert trigger.status_code == 403, trigger.text
    clear = requests.post(
        f"{airflow.base}/api/v2/dags/govbank_ingest/clearTaskInstances",
        json={"dry_run": False}, headers=viewer, timeout=30,
    )
    assert clear.status_code == 403, clear.text
    pause = requests.patch(
        f"{airflow.base}/api/v2/dags/govbank_marts", json={"is_paused": True}, headers=viewer, timeout=30
    )
    assert pause.status_code == 403, pause.text
    # a user Airflow knows but who has no role: refused, not sent round the login again
    nobody = airflow.token("nobody")
    for path in pages:
        r = requests.get(airflow.base + path, headers=nobody, allow_redirects=False, timeout=30)
        assert r.status_code == 403, (path, r.status_code)
        assert "frame-ancestors 'self'" in r.headers["Content-Security-Policy"]
    # a forged token is nobody at all
    forged = {"Authorization": "Bearer " + viewer["Authorization"][7:-4] + "AAAA"}
    r = requests.get(airflow.base + pages[0], headers=forged, allow_redirects=False, timeout=30)
    assert r.status_code == 303
