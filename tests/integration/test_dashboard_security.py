"""Issue 19, the web side: who may see the dashboard and the Data Docs pages.

The standalone dashboard runs as district staff run it (``python -m govbank.dashboard``
on loopback, users added with its ``add-user`` command); the Data Docs app is served
by uvicorn in this process behind the same kind of login. Over real HTTP: wrong
passwords are throttled per account and per client address (429 with Retry-After),
logout (a POST) ends the session for good, a form without its CSRF token is refused,
and every response carries the security headers. In Chromium: the pages pass their own
Content-Security-Policy (no violation reported), including Great Expectations' pages.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
import uvicorn

from govbank.config.settings import Settings
from govbank.dashboard import PasswordGate, create_data_docs_app
from govbank.dashboard.auth import SessionStore, Throttle
from govbank.dashboard.data import make_dashboard_engine, readonly_sqlite_url
from govbank.dashboard.users import UserFile, add_user, read_users
from govbank.domain.datasets import Dataset
from govbank.domain.errors import ConfigError
from govbank.ingest.run import process_bank
from govbank.orchestration.runtime import build_context, build_marts
from govbank.warehouse.db import upgrade
from tests.browser import dashboard_login, free_port, serve_dashboard, wait_until_up, watch
from tests.conftest import PSEUDONYM_KEY, ROOT, drop_file
from tests.corpus import elic_row, outlet_row, render

USER, PASSWORD = "ouhai", "district-password-for-the-test"
HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy")


def _wait_up(base: str) -> None:
    """Until the Data Docs app (uvicorn in a thread of this process) answers."""
    wait_until_up(f"{base}/files", base, up=lambda r: r.status_code < 500)


@dataclass
class Site:
    local: Path
    users_file: Path
    docs_dir: Path
    warehouse: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, validator) -> Site:  # type: ignore[no-untyped-def]
    """A warehouse with one bank's files (one row refused, so a failing Data Docs page)
    and its marts; a users file with one account, made by the CLI."""
    local = tmp_path_factory.mktemp("dash_security")
    url = f"sqlite:///{local / 'warehouse.db'}"
    upgrade(url)
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(local), "GOVBANK_WAREHOUSE_URL": url})
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    inbox = settings.landing_dir / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", render("WZB", Dataset.OUTLET, [outlet_row("WZB", n) for n in (1, 2)]))
    rows = [elic_row("csp", i, "WZB-O01") for i in range(40)]
    rows[3]["legal_rep_id"] = "12345"
    drop_file(inbox, "ELIC_WZB_20230602.txt", render("WZB", Dataset.ELIC, rows))
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted", "partially_accepted"]
    build_marts(settings, dt.date(2023, 6, 15))
    ctx.engine.dispose()

    users_file = local / "users"
    add = subprocess.run(
        [sys.executable, "-m", "govbank.dashboard", "add-user", USER],
        input=PASSWORD + "\n", env={**os.environ, "GOVBANK_DASHBOARD_USERS_FILE": str(users_file),
                                   "PYTHONPATH": str(ROOT / "include")},
        capture_output=True, text=True, timeout=60,
    )
    assert add.returncode == 0, add.stderr
    return Site(local, users_file, Path(validator.data_docs_dir), local / "warehouse.db")


@pytest.fixture(scope="module")
def dashboard(site: Site) -> Iterator[str]:
    """``python -m govbank.dashboard`` on loopback, as district staff run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVBANK_")}
    env.update(
        GOVBANK_LOCAL_DIR=str(site.local),
        GOVBANK_DASHBOARD_USERS_FILE=str(site.users_file),
        PYTHONPATH=str(ROOT / "include"),
    )
    with serve_dashboard(env) as base:
        yield base


@pytest.fixture(scope="module")
def data_docs(site: Site) -> Iterator[str]:
    """The Data Docs app behind a password gate, served by uvicorn in a thread."""
    gate = PasswordGate(UserFile(site.users_file).verify)
    engine = make_dashboard_engine(readonly_sqlite_url(site.warehouse))
    app = create_data_docs_app(lambda: site.docs_dir, lambda: engine, gate)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.dispose()


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def _login(base: str, user: str = USER, password: str = PASSWORD) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    form = s.get(f"{base}/login", timeout=10)
    r = s.post(
        f"{base}/login",
        data={"username": user, "password": password, "csrf": _csrf(form.text), "next": ""},
        allow_redirects=False, timeout=30,
    )
    return s, r


def _post_from(source: str, base: str, path: str, fields: dict[str, str], cookie: str) -> http.client.HTTPResponse:
    """A POST from another loopback address (127.0.0.0/8 is all this machine's)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(source, 0))
    conn.request("POST", path, body=urlencode(fields), headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _assert_headers(r: requests.Response | http.client.HTTPResponse, framing: str = "'none'") -> None:
    for name in HEADERS:
        assert r.headers.get(name), (name, getattr(r, "url", ""), dict(r.headers))
    csp = r.headers["Content-Security-Policy"]
    assert f"frame-ancestors {framing}" in csp
    assert "unsafe-eval" not in csp and "*" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == ("DENY" if framing == "'none'" else "SAMEORIGIN")


# ---------------------------------------------------------------- users file and CLI


def test_users_file_holds_salted_bcrypt_hashes_owner_only(site: Site, tmp_path: Path) -> None:
    text = site.users_file.read_text()
    assert PASSWORD not in text
    users = read_users(site.users_file)
    assert set(users) == {USER} and users[USER].startswith("$2b$12$")
    assert site.users_file.stat().st_mode & 0o077 == 0  # nobody else reads even the hashes
    # the same password twice: two different hashes (salted), both accepted
    other = tmp_path / "users"
    add_user(other, "a", PASSWORD, rounds=4)
    add_user(other, "b", PASSWORD, rounds=4)
    hashes = read_users(other)
    assert hashes["a"] != hashes["b"]
    check = UserFile(other)
    assert check.verify("a", PASSWORD) and check.verify("b", PASSWORD)
    assert not check.verify("a", PASSWORD + "x") and not check.verify("c", PASSWORD)
    add_user(other, "c", "another-long-password", rounds=4)  # picked up without a restart
    assert check.verify("c", "another-long-password")
    for bad_name, bad_password in (("a b", PASSWORD), ("x:y", PASSWORD), ("ok", "short"), ("ok", "x" * 80)):
        with pytest.raises(ConfigError):
            add_user(other, bad_name, bad_password, rounds=4)


def test_the_dashboard_no_longer_reads_a_password_from_the_environment(site: Site) -> None:
    env = {**os.environ, "GOVBANK_LOCAL_DIR": str(site.local), "PYTHONPATH": str(ROOT / "include"),
           "GOVBANK_DASHBOARD_USER": "ouhai", "GOVBANK_DASHBOARD_PASSWORD": PASSWORD}
    env.pop("GOVBANK_DASHBOARD_USERS_FILE", None)
    run = subprocess.run([sys.executable, "-m", "govbank.dashboard", "--port", str(free_port())],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "add-user" in run.stderr


# ---------------------------------------------------------------- sessions, CSRF, logout


def test_logout_is_a_post_with_a_token_and_the_old_cookie_is_refused_after(dashboard: str) -> None:
    s, r = _login(dashboard)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = s.cookies.get("govbank_dashboard_session")
    page = s.get(f"{dashboard}/", allow_redirects=False, timeout=30)
    assert page.status_code == 200 and "数据截至" in page.text
    token = _csrf(page.text)

    # a GET does not log out any more (a link or an <img> on another site cannot)
    assert s.get(f"{dashboard}/logout", allow_redirects=False, timeout=10).status_code == 405
    assert s.get(f"{dashboard}/", allow_redirects=False, timeout=10).status_code == 200
    # a POST without the session's token, or with another one, is refused
    assert s.post(f"{dashboard}/logout", allow_redirects=False, timeout=10).status_code == 403
    assert s.post(f"{dashboard}/logout", data={"csrf": "x" * 43}, allow_redirects=False, timeout=10).status_code == 403
    assert s.get(f"{dashboard}/", allow_redirects=False, timeout=10).status_code == 200

    out = s.post(f"{dashboard}/logout", data={"csrf": token}, allow_redirects=False, timeout=10)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    # the old cookie, replayed as an attacker who copied it would: refused
    replay = requests.get(f"{dashboard}/", cookies={"govbank_dashboard_session": cookie},
                          allow_redirects=False, timeout=10)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/login")
    # a made-up handle neither
    fake = requests.get(f"{dashboard}/", cookies={"govbank_dashboard_session": "A" * 43},
                        allow_redirects=False, timeout=10)
    assert fake.status_code == 303


def test_login_without_its_csrf_token_is_refused(dashboard: str) -> None:
    fields = {"username": USER, "password": PASSWORD, "next": "/"}
    # a cross-site form: no token, no cookie
    r = requests.post(f"{dashboard}/login", data=fields, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "govbank_dashboard_session" not in r.cookies
    # a token from another visitor's form (another nonce cookie) does not fit this one
    other = requests.get(f"{dashboard}/login", timeout=10)
    s = requests.Session()
    s.get(f"{dashboard}/login", timeout=10)
    r = s.post(f"{dashboard}/login", data={**fields, "csrf": _csrf(other.text)}, allow_redirects=False, timeout=10)
    assert r.status_code == 403 and "govbank_dashboard_session" not in s.cookies
    # an attacker who plants a nonce cookie cannot make the token for it (it is keyed)
    planted = requests.post(f"{dashboard}/login", data={**fields, "csrf": "n" * 64},
                            cookies={"govbank_dashboard_csrf": "n"}, allow_redirects=False, timeout=10)
    assert planted.status_code == 403


# ---------------------------------------------------------------- throttling


def test_wrong_passwords_are_throttled_per_account_with_429(dashboard: str, site: Site) -> None:
    add_user(site.users_file, "victim", "victim-password-123", rounds=4)
    s = requests.Session()
    token = _csrf(s.get(f"{dashboard}/login", timeout=10).text)

    def attempt(password: str) -> requests.Response:
        return s.post(f"{dashboard}/login", data={"username": "victim", "password": password, "csrf": token},
                      allow_redirects=False, timeout=30)

    codes = [attempt(f"guess-{i}").status_code for i in range(6)]
    assert codes == [401] * 6  # five free tries, the sixth failure locks the account
    locked = attempt("guess-7")
    assert locked.status_code == 429 and 1 <= int(locked.headers["Retry-After"]) <= 2
    assert "秒后再试" in locked.text
    _assert_headers(locked)
    # during the lock even the right password is refused (a guess cannot be confirmed)...
    assert attempt("victim-password-123").status_code == 429
    # ...and the lock is the account's: another address is refused as well
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
    other = _post_from("127.0.0.2", dashboard, "/login",
                       {"username": "victim", "password": "guess-8", "csrf": token}, cookie)
    assert other.status == 429 and other.getheader("Retry-After")
    # the lock grows: after it ends, one more wrong password locks for longer
    time.sleep(int(locked.headers["Retry-After"]) + 0.2)
    assert attempt("guess-9").status_code == 401
    longer = attempt("guess-10")
    assert longer.status_code == 429 and int(longer.headers["Retry-After"]) >= 2
    time.sleep(int(longer.headers["Retry-After"]) + 0.2)
    assert attempt("victim-password-123").status_code == 303  # and then the right one works


def test_wrong_passwords_are_throttled_per_client_address(dashboard: str) -> None:
    """Many names from one address (password spraying) lock that address, not others."""
    s = requests.Session()
    token = _csrf(s.get(f"{dashboard}/login", timeout=10).text)
    cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
    source = "127.0.0.3"
    codes = [
        _post_from(source, dashboard, "/login", {"username": f"name{i}", "password": "123456", "csrf": token}, cookie).status
        for i in range(21)
    ]
    assert codes == [401] * 21  # twenty free failures for one address, the 21st locks it
    fresh = _post_from(source, dashboard, "/login", {"username": USER, "password": PASSWORD, "csrf": token}, cookie)
    assert fresh.status == 429 and int(fresh.getheader("Retry-After")) >= 1
    # the account itself is not locked: from another address it logs in
    elsewhere = _post_from("127.0.0.4", dashboard, "/login", {"username": USER, "password": PASSWORD, "csrf": token}, cookie)
    assert elsewhere.status == 303


def test_throttle_and_sessions_keep_bounded_memory() -> None:
    now = [0.0]
    throttle = Throttle(free=2, base=1, cap=8, window=60, max_keys=100, clock=lambda: now[0])
    for i in range(5000):  # a flood of made-up names
        throttle.fail(f"user:{i}")
    assert len(throttle) == 100
    for _ in range(3):
        throttle.fail("user:x")
    assert throttle.wait("user:x") == 1
    for _ in range(10):
        throttle.fail("user:x")
    assert throttle.wait("user:x") == 8  # capped
    now[0] += 8 + 61
    assert throttle.wait("user:x") == 0 and len(throttle) == 99  # forgotten
    sessions = SessionStore(60, max_sessions=50, clock=lambda: now[0])
    handles = [sessions.create("u") for _ in range(500)]
    assert len(sessions) == 50
    assert sessions.get(handles[-1]) is not None and sessions.get(handles[0]) is None
    now[0] += 61
    assert sessions.get(handles[-1]) is None  # expired


# ---------------------------------------------------------------- headers


def test_every_response_carries_the_security_headers(dashboard: str, data_docs: str, site: Site) -> None:
    s, _ = _login(dashboard)
    for url in ("/login", "/", "/static/dashboard.css", "/static/dashboard.js", "/healthz", "/nothing-here"):
        r = s.get(dashboard + url, allow_redirects=False, timeout=30)
        _assert_headers(r)
    anonymous = requests.get(f"{dashboard}/", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 303
    _assert_headers(anonymous)
    page = s.get(f"{dashboard}/", timeout=30)
    assert "script-src 'self';" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in page.text and " onchange=" not in page.text and " style=" not in page.text

    d, _ = _login(data_docs)
    files = d.get(f"{data_docs}/files", timeout=30)
    assert files.status_code == 200 and "ELIC_WZB_20230602.txt" in files.text
    _assert_headers(files)
    assert "unsafe-inline" not in files.headers["Content-Security-Policy"]
    link = re.search(r'class="docs" href="([^"]+)"', files.text)
    assert link
    docs = d.get(data_docs + link.group(1), timeout=30)
    assert docs.status_code == 200 and "Expectation Validation Result" in docs.text
    _assert_headers(docs)
    csp = docs.headers["Content-Security-Policy"]
    # GX's inline scripts and onclick handlers run by hash; nothing else inline does
    assert re.search(r"script-src 'self' ('unsafe-hashes' )?'sha256-", csp), csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    for asset in ("/_assets/bootstrap.min.css", "/site/index.html"):
        _assert_headers(d.get(data_docs + asset, timeout=30))


# ---------------------------------------------------------------- Chromium


@pytest.mark.integration
def test_pages_pass_their_content_security_policy_in_chromium(dashboard: str, data_docs: str, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors = watch(page)
    dashboard_login(page, dashboard, USER, PASSWORD)
    page.locator(".tile").first.wait_for()
    assert page.locator("#map .town").count() == 13  # the SVG charts drew
    # the 统计日期 list still submits itself on change (now from dashboard.js, not inline)
    select = page.locator("select[name=as_of]")
    if select.count():
        other = select.locator("option").nth(1).get_attribute("value")
        select.select_option(other)
        page.wait_for_url(f"**as_of={other}")
    # the logout button (a form with the session's token) logs out; back is the login
    page.get_by_role("button", name="退出").click()
    page.wait_for_url("**/login")
    page.goto(f"{dashboard}/")
    page.wait_for_url("**/login**")
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors

    # Data Docs: our file list and GX's own pages, inline scripts allowed by hash
    docs_errors = watch(page)
    dashboard_login(page, data_docs, USER, PASSWORD)
    page.goto(f"{data_docs}/files")
    page.locator("a.docs").first.click()
    page.get_by_text("Expectation Validation Result").first.wait_for()
    assert page.locator("nav.navbar").first.evaluate("e => getComputedStyle(e).display") == "flex"
    page.goto(f"{data_docs}/site/index.html")
    # the index's table is drawn by bootstrap-table from an inline script: it ran
    page.locator("table tbody tr td a").first.wait_for()
    csp = [e for e in docs_errors if "Content Security Policy" in e or "Refused" in e]
    assert not csp, csp
    # a page that tries to frame the dashboard is refused by the browser
    outsider = context.new_page()  # about:blank, no policy of its own
    frame_errors = watch(outsider)
    outsider.set_content(f'<iframe src="{dashboard}/login"></iframe>')
    outsider.wait_for_timeout(1500)
    assert any("frame-ancestors 'none'" in e for e in frame_errors), frame_errors
    assert not outsider.frames[-1].locator("input[name=password]").count()
    context.close()
