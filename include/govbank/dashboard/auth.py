"""Who may see the pages: a gate in front of every route but the health check.

Two gates, one interface. Inside Airflow the plugin passes a gate that asks Airflow's
own auth manager, so data engineers log in once. Run on its own
(``python -m govbank.dashboard``), :class:`PasswordGate` checks the accounts of a users
file (:mod:`govbank.dashboard.users`): district staff need no Airflow account.

The password gate keeps sessions on the server (the cookie is a random handle, so
logout ends a session for good), throttles wrong passwords per account and per client
address (:class:`Throttle`), and takes a CSRF token with every form that changes
state (login, logout).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Protocol
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

Clock = Callable[[], float]


class Gate(Protocol):
    async def user(self, request: Request) -> str | None:
        """The logged-in user's name, or None (may raise HTTPException 403: known, no access)."""

    def login_url(self, request: Request) -> str:
        """Where to send a visitor who is not logged in (back to this page afterwards)."""

    def form_token(self, request: Request) -> str | None:
        """The CSRF token the page's state-changing forms carry (None: no such form)."""

    def install(self, app: FastAPI) -> None:
        """Add the gate's own routes (login form, logout), if it has any."""


def _prefix(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _safe_next(target: str | None, prefix: str) -> str:
    """Only paths inside this app: never another site (open redirect)."""
    if target and target.startswith(prefix + "/") and not target.startswith("//"):
        return target
    return prefix + "/"


def client_address(request: Request) -> str:
    """The peer's address as the server sees it (uvicorn trusts X-Forwarded-For only from
    the addresses in ``--forwarded-allow-ips``, loopback by default)."""
    return request.client.host if request.client else "unknown"


# --------------------------------------------------------------------------- throttling


@dataclass
class _Failures:
    count: int
    last: float
    locked_until: float


class Throttle:
    """Failed logins per key: ``free`` tries, then a lock that doubles with each further
    failure (``base`` seconds, at most ``cap``). A key is forgotten ``window`` seconds
    after its last failure once unlocked; at most ``max_keys`` are kept (the oldest go
    first), so a flood of made-up names cannot fill the memory."""

    def __init__(
        self,
        *,
        free: int,
        base: float = 1.0,
        cap: float = 900.0,
        window: float = 900.0,
        max_keys: int = 10_000,
        clock: Clock = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap, self.window = free, base, cap, window
        self.max_keys = max_keys
        self.clock = clock
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def _get(self, key: str, now: float) -> _Failures | None:
        entry = self._keys.get(key)
        if entry and entry.locked_until <= now and now - entry.last > self.window:
            del self._keys[key]
            return None
        return entry

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        now = self.clock()
        entry = self._get(key, now)
        return max(0.0, entry.locked_until - now) if entry else 0.0

    def fail(self, key: str) -> None:
        now = self.clock()
        entry = self._get(key, now) or _Failures(0, now, 0.0)
        entry.count += 1
        entry.last = now
        if entry.count > self.free:
            entry.locked_until = now + min(self.cap, self.base * 2 ** (entry.count - self.free - 1))
        self._keys[key] = entry
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Session:
    user: str
    expires: float
    csrf: str


class SessionStore:
    """Sessions held by the server, keyed by a hash of the cookie's random handle: logout
    deletes the entry and the handle is worthless from then on. In memory, so a restart
    logs everyone out; bounded like the throttle."""

    def __init__(self, max_age: float, *, max_sessions: int = 10_000, clock: Clock = time.time) -> None:
        self.max_age = max_age
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @staticmethod
    def _key(handle: str) -> str:
        return hashlib.sha256(handle.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: str) -> str:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]
        handle = secrets.token_urlsafe(32)
        self._sessions[self._key(handle)] = Session(user, now + self.max_age, secrets.token_urlsafe(32))
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return handle

    def get(self, handle: str | None) -> Session | None:
        if not handle:
            return None
        key = self._key(handle)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires <= self.clock():
            del self._sessions[key]
            return None
        return session

    def end(self, handle: str | None) -> bool:
        return bool(handle) and self._sessions.pop(self._key(handle or ""), None) is not None


# --------------------------------------------------------------------------- the gate


LOGIN_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>登录 · 瓯海区政银合作看板</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{prefix}/static/dashboard.css"></head>
<body class="login"><form method="post" action="{prefix}/login" class="login-card">
<h1>瓯海区政银合作看板</h1><p class="muted">请使用分配给您的账号登录</p>
{error}<label>用户名<input name="username" autocomplete="username" required autofocus></label>
<label>密码<input name="password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}"><input type="hidden" name="csrf" value="{csrf}">
<button type="submit">登录</button></form></body></html>"""

PasswordCheck = Callable[[str, str], bool]


class PasswordGate:
    """Accounts checked by ``check_password`` (a :class:`~govbank.dashboard.users.UserFile`'s
    ``verify``); sessions on the server behind an HttpOnly cookie."""

    cookie = "govbank_dashboard_session"
    csrf_cookie = "govbank_dashboard_csrf"

    def __init__(
        self,
        check_password: PasswordCheck,
        *,
        max_age: int = 8 * 3600,
        per_account: Throttle | None = None,
        per_address: Throttle | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.check_password = check_password
        self.max_age = max_age
        self.sessions = SessionStore(max_age, clock=clock)
        # an office behind one address gets more tries than one account does
        self.per_account = per_account or Throttle(free=5)
        self.per_address = per_address or Throttle(free=20)
        self._secret = secrets.token_bytes(32)  # signs login-form tokens; per process

    # ---- what the app asks

    async def user(self, request: Request) -> str | None:
        session = self.sessions.get(request.cookies.get(self.cookie))
        return session.user if session else None

    def login_url(self, request: Request) -> str:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return f"{_prefix(request)}/login?next={quote(here)}"

    def form_token(self, request: Request) -> str | None:
        session = self.sessions.get(request.cookies.get(self.cookie))
        return session.csrf if session else None

    # ---- login form tokens: an HMAC of a random nonce kept in a cookie, so a cross-site
    # form cannot know the token and a planted cookie is useless without the secret

    def _login_token(self, nonce: str) -> str:
        return hmac.new(self._secret, b"login|" + nonce.encode(), hashlib.sha256).hexdigest()

    def _login_form(self, request: Request, next_url: str | None, error: str = "", status: int = 200,
                    headers: dict[str, str] | None = None) -> HTMLResponse:
        prefix = _prefix(request)
        nonce = request.cookies.get(self.csrf_cookie) or secrets.token_urlsafe(32)
        page = LOGIN_PAGE.format(
            prefix=prefix, error=error, next=escape(_safe_next(next_url, prefix)),
            csrf=self._login_token(nonce),
        )
        response = HTMLResponse(page, status_code=status, headers=headers)
        response.set_cookie(
            self.csrf_cookie, nonce, httponly=True, samesite="strict",
            secure=request.url.scheme == "https", path=prefix + "/",
        )
        return response

    def _login_token_ok(self, request: Request, token: str) -> bool:
        nonce = request.cookies.get(self.csrf_cookie)
        return bool(nonce and token) and hmac.compare_digest(token, self._login_token(nonce or ""))

    def install(self, app: FastAPI) -> None:
        @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
        async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
            return self._login_form(request, next)

        @app.post("/login", include_in_schema=False)
        async def login(
            request: Request,
            username: str = Form(""),
            password: str = Form(""),
            next: str = Form(""),
            csrf: str = Form(""),
        ) -> Response:
            if not self._login_token_ok(request, csrf):
                return HTMLResponse("<p>表单已失效，请刷新登录页面后重试。</p>", status_code=403)
            keys = (f"user:{username.strip().lower()}", f"addr:{client_address(request)}")
            wait = max(self.per_account.wait(keys[0]), self.per_address.wait(keys[1]))
            if wait > 0:
                # checked before the password: during a lock even the right one is refused
                seconds = math.ceil(wait)
                error = f'<p class="error" role="alert">登录失败次数过多，请 {seconds} 秒后再试</p>'
                return self._login_form(request, next, error, 429, {"Retry-After": str(seconds)})
            if not await run_in_threadpool(self.check_password, username, password):
                self.per_account.fail(keys[0])
                self.per_address.fail(keys[1])
                error = '<p class="error" role="alert">用户名或密码不正确</p>'
                return self._login_form(request, next, error, 401)
            self.per_account.clear(keys[0])
            self.sessions.end(request.cookies.get(self.cookie))  # no fixation of an old handle
            prefix = _prefix(request)
            response = RedirectResponse(_safe_next(next, prefix), status_code=303)
            response.set_cookie(
                self.cookie,
                self.sessions.create(username),
                max_age=self.max_age,
                httponly=True,
                samesite="lax",
                secure=request.url.scheme == "https",
                path=prefix + "/",
            )
            return response

        @app.post("/logout", include_in_schema=False)
        async def logout(request: Request, csrf: str = Form("")) -> Response:
            prefix = _prefix(request)
            handle = request.cookies.get(self.cookie)
            session = self.sessions.get(handle)
            if session is not None:
                if not (csrf and hmac.compare_digest(csrf, session.csrf)):
                    return HTMLResponse("<p>表单已失效，请刷新页面后重试。</p>", status_code=403)
                self.sessions.end(handle)
            response = RedirectResponse(prefix + "/login", status_code=303)
            response.delete_cookie(self.cookie, path=prefix + "/")
            return response
