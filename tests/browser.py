"""Chromium for the browser tests, and the helpers they share.

Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser) driven by
Playwright: one browser for the whole session (``browser``, a fixture that
``tests/conftest.py`` provides); each test opens a context of its own, so no cookie or
storage passes from one test to the next. Also here: the dashboard served on loopback
as district staff run it, and the two login forms (Airflow's, the dashboard's).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), "Debian's chromium is needed: scripts/system-deps.sh installs it"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Offline:
    """Lets the browser reach only this machine; remembers anything else it tried."""

    def __init__(self, context, allowed: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
        self.blocked: list[str] = []
        self.allowed = allowed
        context.route("**/*", self._route)

    def _route(self, route) -> None:  # type: ignore[no-untyped-def]
        url = route.request.url
        if url.startswith(self.allowed) or url.startswith("data:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


def wait_until_up(
    url: str, what: str, timeout: float = 60, interval: float = 0.2,
    alive: Callable[[], str | None] | None = None, up: Callable[[requests.Response], bool] = lambda r: r.ok,
) -> None:
    """Poll ``url`` until ``up(response)``; fail naming ``what`` after ``timeout`` s, or as
    soon as ``alive()`` returns a reason (the server process exited)."""
    deadline = time.monotonic() + timeout
    while True:
        dead = alive() if alive else None
        assert dead is None, dead
        try:
            if up(requests.get(url, timeout=min(5.0, timeout))):
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(interval)


def watch(page, kinds: tuple[str, ...] = ("error", "warning")) -> list[str]:  # type: ignore[no-untyped-def]
    """Console messages of these kinds and uncaught errors that Chromium reports for the
    page (CSP violations among them)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if m.type in kinds else None)
    page.on("pageerror", lambda e: seen.append(str(e)))
    return seen


def airflow_login(page, base: str, user: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Log in through Airflow's own login page (the simple auth manager's)."""
    page.goto(f"{base}/")
    page.wait_for_url("**/auth/login**")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def submit_dashboard_login(page, user: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Fill in and send the dashboard's login form (the page must show it)."""
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.get_by_role("button", name="登录").click()


def dashboard_login(page, base: str, user: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Open the dashboard (or the Data Docs app): it sends the browser to its login; log in."""
    page.goto(f"{base}/")
    page.wait_for_url("**/login**")
    submit_dashboard_login(page, user, password)
    page.wait_for_url(lambda url: "/login" not in url)


@contextmanager
def serve_dashboard(env: dict[str, str], interval: float = 0.2) -> Iterator[str]:
    """``python -m govbank.dashboard`` on a free loopback port with this environment;
    yields its base URL once /healthz answers, terminates it afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "govbank.dashboard", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"

    def alive() -> str | None:
        if proc.poll() is None:
            return None
        return proc.stdout.read() if proc.stdout else "the dashboard exited"

    try:
        wait_until_up(f"{base}/healthz", "the dashboard", interval=interval, alive=alive)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
