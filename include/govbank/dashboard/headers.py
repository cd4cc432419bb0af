"""Security headers on every response of the dashboard and Data Docs apps.

The pages load nothing but their own files: no inline script or style, so the default
policy allows scripts and styles from 'self' only. A route that serves a page it does
not write itself (Great Expectations' Data Docs) sets its own Content-Security-Policy;
the middleware then only adds the framing rule. Framing: the standalone dashboard is
never framed (clickjacking on the login form); inside Airflow the plugin's pages are
shown in Airflow's own iframe, so 'self' may frame them and no one else.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'"
)


class SecurityHeaders:
    """ASGI middleware (not BaseHTTPMiddleware: file responses keep streaming)."""

    def __init__(self, app: ASGIApp, *, embedded: bool = False) -> None:
        self.app = app
        self.frame_ancestors = "'self'" if embedded else "'none'"
        self.frame_options = "SAMEORIGIN" if embedded else "DENY"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                csp = headers.get("content-security-policy") or DEFAULT_CSP
                if "frame-ancestors" not in csp:
                    csp = f"{csp}; frame-ancestors {self.frame_ancestors}"
                headers["Content-Security-Policy"] = csp
                headers["X-Frame-Options"] = self.frame_options
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["Cross-Origin-Resource-Policy"] = "same-origin"
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Cache-Control", "no-store")  # pages carry figures
            await send(message)

        await self.app(scope, receive, send_with_headers)
