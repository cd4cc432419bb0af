"""Who may see the pages: a gate in front of every route but the health check.

Two gates, one interface. Inside Airflow the plugin passes a gate that asks Airflow's
own auth manager (the ``_token`` cookie of the Airflow UI), so data engineers log in
once. Run on its own (``python -m govbank.dashboard``), :class:`PasswordGate` checks a
user name and password from the environment and keeps the session in a signed cookie:
district staff need no Airflow account.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Protocol
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from govbank.domain.errors import ConfigError


class Gate(Protocol):
    async def user(self, request: Request) -> str | None:
        """The logged-in user's name, or None."""

    def login_url(self, request: Request) -> str:
        """Where to send a visitor who is not logged in (back to this page afterwards)."""

    def install(self, app: FastAPI) -> None:
        """Add the gate's own routes (login form, logout), if it has any."""


def _prefix(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _safe_next(target: str | None, prefix: str) -> str:
    """Only paths inside this app: never another site (open redirect)."""
    if target and target.startswith(prefix + "/") and not target.startswith("//"):
        return target
    return prefix + "/"


LOGIN_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>登录 · 瓯海区政银合作看板</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{prefix}/static/dashboard.css"></head>
<body class="login"><form method="post" action="{prefix}/login" class="login-card">
<h1>瓯海区政银合作看板</h1><p class="muted">请使用分配给您的账号登录</p>
{error}<label>用户名<input name="username" autocomplete="username" required autofocus></label>
<label>密码<input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}"><button type="submit">登录</button></form></body></html>"""


class PasswordGate:
    """One account from the environment; sessions in an HMAC-signed, HttpOnly cookie."""

    cookie = "govbank_dashboard_session"

    def __init__(
        self, username: str, password: str, secret: bytes | None = None, max_age: int = 8 * 3600
    ) -> None:
        if not username or not password:
            raise ConfigError("the dashboard needs GOVBANK_DASHBOARD_USER and GOVBANK_DASHBOARD_PASSWORD")
        self.username = username
        self._password = password.encode()
        # a secret per process unless given: a restart logs everyone out, which is fine
        self._secret = secret or secrets.token_bytes(32)
        self.max_age = max_age

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def session_value(self, username: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + self.max_age)
        payload = f"{username}|{expires}"
        return base64.urlsafe_b64encode(payload.encode()).decode() + "." + self._sign(payload)

    def check(self, value: str | None, now: float | None = None) -> str | None:
        if not value or "." not in value:
            return None
        encoded, mac = value.rsplit(".", 1)
        try:
            payload = base64.urlsafe_b64decode(encoded.encode()).decode()
            username, expires = payload.rsplit("|", 1)
            expired = int(expires) < (now or time.time())
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(mac, self._sign(payload)) or expired:
            return None
        return username

    async def user(self, request: Request) -> str | None:
        return self.check(request.cookies.get(self.cookie))

    def login_url(self, request: Request) -> str:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return f"{_prefix(request)}/login?next={quote(here)}"

    def _valid(self, username: str, password: str) -> bool:
        same_user = hmac.compare_digest(username.encode(), self.username.encode())
        same_password = hmac.compare_digest(password.encode(), self._password)
        return same_user and same_password

    def install(self, app: FastAPI) -> None:
        from html import escape

        @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
        async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
            prefix = _prefix(request)
            return HTMLResponse(
                LOGIN_PAGE.format(prefix=prefix, error="", next=escape(_safe_next(next, prefix)))
            )

        @app.post("/login", include_in_schema=False)
        async def login(
            request: Request,
            username: str = Form(...),
            password: str = Form(...),
            next: str = Form(""),
        ) -> Response:
            prefix = _prefix(request)
            if not self._valid(username, password):
                error = '<p class="error" role="alert">用户名或密码不正确</p>'
                page = LOGIN_PAGE.format(prefix=prefix, error=error, next=escape(_safe_next(next, prefix)))
                return HTMLResponse(page, status_code=401)
            response = RedirectResponse(_safe_next(next, prefix), status_code=303)
            response.set_cookie(
                self.cookie,
                self.session_value(username),
                max_age=self.max_age,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
                path=prefix + "/",
            )
            return response

        @app.get("/logout", include_in_schema=False)
        async def logout(request: Request) -> Response:
            prefix = _prefix(request)
            response = RedirectResponse(prefix + "/login", status_code=303)
            response.delete_cookie(self.cookie, path=prefix + "/")
            return response
