"""Reference server of the e-licence usage API (elicense-api.md v1), with fault injection.

The real platform cannot be reached from here; this server implements the spec honestly
so the demo, the tests and the compose stack have something to pull from, and so the
client is tested over real HTTP. Run it as::

    python -m govbank_dev.elicense_server --port 8001 --records usages.json
    python -m govbank_dev.elicense_server --port 8001 --demo-seed 7 --warehouse sqlite:///.local/warehouse.db
    python -m govbank_dev.elicense_server --port 8001 --demo-seed 7 --bank-records elic.json

Options:
    --host HOST            interface to bind (default 127.0.0.1; only widen it in a container)
    --port N               port (default 8001)
    --records FILE         usage records to serve: a JSON list (or {"items": [...]}) of records
                           as the spec shows them; several versions of one usage_id may be given,
                           the one with the newest updated_at is current
    --demo-seed N          generate the records with govbank_dev.elicense_data from the banks'
                           ELIC records, read from --warehouse URL (fact_elicense_biz) or from
                           --bank-records FILE (JSON list); --expected-out FILE writes the
                           reconciliation counts the generator intends; --now TIME caps the
                           generated times (an ISO time, or a date meaning its end)
    --client-id ID         the one client accepted (default govbank)
                           its secret comes from the environment variable
                           GOVBANK_ELICENSE_CLIENT_SECRET or from --client-secret-file FILE
    --token-ttl SECONDS    lifetime of an access token (default 3600)
    --control              enable the /_control endpoints below (tests and demos only)

Control endpoints (only with --control; never expose them):
    POST /_control/faults   {"kind": ..., "count": 1, "after": 0, "path": "usages"|"token"|"any", ...}
        kind "status":    answer ``status`` (e.g. 429 with "retry_after": "1", 500, 502, 503,
                          504, 400, 401, 403, 404) and {"error", "message"} as body
        kind "slow":      sleep ``delay`` seconds, then answer normally (a client timeout)
        kind "reset":     reset the TCP connection without answering
        kind "malformed": a 200 that breaks the schema; ``variant`` is one of not_json,
                          truncated, no_items, bad_record, bad_cursor
        ``after`` lets that many matching calls through first; ``count`` is how many calls
        then get the fault.
    POST /_control/expire-tokens   every token issued so far becomes expired (401)
    POST /_control/clock    {"now": ISO time or null}: serve only versions updated by then
    POST /_control/reset    clear faults, clock, tokens and the request log
    GET  /_control/log      the calls received: method, path, query, status, fault, auth
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import os
import secrets
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOKEN_PATH = "/api/v1/token"
USAGES_PATH = "/api/v1/elicense/usages"
CONTROL_PREFIX = "/_control"
DEFAULT_LIMIT = 100
SECRET_ENV = "GOVBANK_ELICENSE_CLIENT_SECRET"


def _error(
    status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status, headers=headers)


def _parse_time(value: str) -> dt.datetime:
    """ISO-8601; a time without an offset is taken as Asia/Shanghai, the district's zone."""
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=SHANGHAI)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(SHANGHAI).isoformat()


# --------------------------------------------------------------------------- records


class UsageStore:
    """Every version of every usage record; a query sees the newest version of each."""

    def __init__(self, versions: list[dict[str, Any]]) -> None:
        self.versions: list[dict[str, Any]] = []
        for raw in versions:
            rec = dict(raw)
            rec["authorized_at"] = _parse_time(str(rec["authorized_at"]))
            rec["updated_at"] = _parse_time(str(rec["updated_at"]))
            self.versions.append(rec)
        self.versions.sort(key=lambda r: (r["updated_at"], r["usage_id"]))

    def current(self, now: dt.datetime | None) -> list[dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for rec in self.versions:  # sorted by updated_at: later versions overwrite
            if now is not None and rec["updated_at"] > now:
                break
            latest[rec["usage_id"]] = rec
        return sorted(latest.values(), key=lambda r: (r["updated_at"], r["usage_id"]))

    def page(
        self,
        since: dt.datetime | None,
        after: tuple[dt.datetime, str] | None,
        limit: int,
        now: dt.datetime | None,
    ) -> tuple[list[dict[str, Any]], bool]:
        rows = [
            r
            for r in self.current(now)
            if (since is None or r["updated_at"] >= since)
            and (after is None or (r["updated_at"], r["usage_id"]) > after)
        ]
        return rows[:limit], len(rows) > limit


def _public(rec: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if not k.startswith("_")}
    out["authorized_at"] = _iso(rec["authorized_at"])
    out["updated_at"] = _iso(rec["updated_at"])
    return out


def _encode_cursor(last: dict[str, Any], since: dt.datetime | None) -> str:
    payload = {
        "u": last["updated_at"].isoformat(),
        "id": last["usage_id"],
        "s": since.isoformat() if since else None,
    }
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[tuple[dt.datetime, str], dt.datetime | None]:
    padded = cursor + "=" * (-len(cursor) % 4)
    payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
    since = dt.datetime.fromisoformat(payload["s"]) if payload["s"] else None
    return (dt.datetime.fromisoformat(payload["u"]), str(payload["id"])), since


# --------------------------------------------------------------------------- faults


@dataclass
class Fault:
    kind: str  # status | slow | reset | malformed
    path: str = "usages"  # usages | token | any
    count: int = 1
    after: int = 0
    status: int = 503
    retry_after: str | None = None
    delay: float = 5.0
    variant: str = "not_json"
    message: str | None = None

    def matches(self, path: str) -> bool:
        if self.path == "any":
            return True
        return path == (TOKEN_PATH if self.path == "token" else USAGES_PATH)


FAULT_KINDS = ("status", "slow", "reset", "malformed")
MALFORMED_VARIANTS = ("not_json", "truncated", "no_items", "bad_record", "bad_cursor")


@dataclass
class ServerState:
    store: UsageStore
    client_id: str
    client_secret: str
    token_ttl: int = 3600
    tokens: dict[str, float] = field(default_factory=dict)  # token -> monotonic deadline
    faults: list[Fault] = field(default_factory=list)
    clock: dt.datetime | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    def next_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if not fault.matches(path):
                continue
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            return fault
        return None

    def token_status(self, header: str | None) -> str:
        if not header or not header.startswith("Bearer "):
            return "none"
        deadline = self.tokens.get(header.removeprefix("Bearer ").strip())
        if deadline is None:
            return "unknown"
        return "valid" if time.monotonic() < deadline else "expired"


# --------------------------------------------------------------------------- the API


def create_app(state: ServerState, control: bool = False) -> FastAPI:
    """The spec's two endpoints (and, with ``control``, the fault-injection endpoints)."""
    api = FastAPI(
        title="e-licence usage API (reference)", docs_url=None, redoc_url=None, openapi_url=None
    )
    api.state.elicense = state

    @api.post(TOKEN_PATH)
    async def token(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(
                400, "invalid_request", "body must be JSON with client_id and client_secret"
            )
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "body must be a JSON object")
        cid, secret = body.get("client_id"), body.get("client_secret")
        if not isinstance(cid, str) or not isinstance(secret, str):
            return _error(
                400, "invalid_request", "client_id and client_secret are required strings"
            )
        ok = hmac.compare_digest(cid.encode(), state.client_id.encode()) & hmac.compare_digest(
            secret.encode(), state.client_secret.encode()
        )
        if not ok:
            return _error(401, "invalid_client", "unknown client or wrong secret")
        issued = secrets.token_urlsafe(32)
        state.tokens[issued] = time.monotonic() + state.token_ttl
        return JSONResponse(
            {"access_token": issued, "token_type": "Bearer", "expires_in": state.token_ttl}
        )

    @api.get(USAGES_PATH)
    async def usages(request: Request) -> JSONResponse:
        auth = state.token_status(request.headers.get("authorization"))
        if auth != "valid":
            message = {"none": "missing bearer token", "unknown": "unknown token"}.get(
                auth, "token expired"
            )
            return _error(
                401, "invalid_token", message, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        q = request.query_params
        try:
            limit = int(q.get("limit", DEFAULT_LIMIT))
        except ValueError:
            return _error(400, "bad_request", "limit must be an integer between 1 and 1000")
        if not 1 <= limit <= 1000:
            return _error(400, "bad_request", "limit must be between 1 and 1000")
        since: dt.datetime | None = None
        if q.get("updated_since"):
            try:
                since = _parse_time(q["updated_since"])
            except ValueError:
                return _error(
                    400,
                    "bad_request",
                    "updated_since must be an ISO-8601 time (URL-encode the + of an offset)",
                )
        after = None
        if q.get("cursor"):
            try:
                after, cursor_since = _decode_cursor(q["cursor"])
            except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
                return _error(400, "bad_request", "invalid cursor")
            if cursor_since != since:
                return _error(400, "bad_request", "cursor belongs to another updated_since")
        rows, more = state.store.page(since, after, limit, state.clock)
        next_cursor = _encode_cursor(rows[-1], since) if more and rows else None
        return JSONResponse({"items": [_public(r) for r in rows], "next_cursor": next_cursor})

    if control:
        _add_control(api, state)
    return api


def _add_control(api: FastAPI, state: ServerState) -> None:
    @api.post(CONTROL_PREFIX + "/faults")
    async def add_fault(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            fault = Fault(**body)
        except TypeError as exc:
            return _error(400, "bad_request", str(exc))
        if fault.kind not in FAULT_KINDS or (
            fault.kind == "malformed" and fault.variant not in MALFORMED_VARIANTS
        ):
            return _error(400, "bad_request", f"unknown fault {body}")
        state.faults.append(fault)
        return JSONResponse({"faults": len(state.faults)})

    @api.post(CONTROL_PREFIX + "/expire-tokens")
    async def expire_tokens() -> JSONResponse:
        for tok in state.tokens:
            state.tokens[tok] = 0.0
        return JSONResponse({"expired": len(state.tokens)})

    @api.post(CONTROL_PREFIX + "/clock")
    async def set_clock(request: Request) -> JSONResponse:
        body = await request.json()
        state.clock = _parse_time(body["now"]) if body.get("now") else None
        return JSONResponse({"now": state.clock.isoformat() if state.clock else None})

    @api.post(CONTROL_PREFIX + "/reset")
    async def reset() -> JSONResponse:
        state.faults.clear()
        state.tokens.clear()
        state.calls.clear()
        state.clock = None
        return JSONResponse({"ok": True})

    @api.get(CONTROL_PREFIX + "/log")
    async def call_log() -> JSONResponse:
        return JSONResponse({"calls": state.calls, "tokens_issued": len(state.tokens)})


class FaultMiddleware:
    """Outermost ASGI layer: logs every call and applies the next matching fault.

    It sits outside FastAPI so that it can reset the TCP connection itself (uvicorn's
    ``send`` is a bound method of the request cycle that owns the transport).
    """

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        call: dict[str, Any] = {
            "t": time.monotonic(),
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "auth": self.state.token_status(headers.get("authorization")),
            "status": None,
            "fault": None,
        }
        self.state.calls.append(call)
        fault = self.state.next_fault(scope["path"])

        async def logging_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                call["status"] = message["status"]
            await send(message)

        if fault is None:
            await self.app(scope, receive, logging_send)
            return
        call["fault"] = fault.kind if fault.kind != "status" else f"status {fault.status}"
        if fault.kind == "status":
            headers_out = {"Retry-After": fault.retry_after} if fault.retry_after else None
            msg = fault.message or f"injected {fault.status}"
            await _error(fault.status, "injected", msg, headers_out)(scope, receive, logging_send)
        elif fault.kind == "slow":
            try:
                await asyncio.sleep(fault.delay)
            except asyncio.CancelledError:  # the server is shutting down: end quietly
                return
            await self.app(scope, receive, logging_send)
        elif fault.kind == "reset":
            call["status"] = "reset"
            await _reset(send)
        else:
            await self._malformed(fault.variant, scope, receive, logging_send)

    async def _malformed(self, variant: str, scope: Any, receive: Any, send: Any) -> None:
        if variant == "not_json":
            body = b"<html><body><h1>Gateway busy</h1></body></html>"
            ctype = b"text/html; charset=utf-8"
        else:
            captured: list[dict[str, Any]] = []

            async def capture(message: dict[str, Any]) -> None:
                captured.append(message)

            await self.app(scope, receive, capture)
            real = b"".join(
                m.get("body", b"") for m in captured if m["type"] == "http.response.body"
            )
            ctype = b"application/json"
            if variant == "truncated":
                body = real[: max(1, len(real) // 2)]
            else:
                data = json.loads(real)
                if variant == "no_items":
                    data = {"data": data.get("items"), "next": data.get("next_cursor")}
                elif variant == "bad_cursor":
                    data["next_cursor"] = 12345
                else:  # bad_record
                    if data["items"]:
                        data["items"][0].pop("uscc", None)
                        data["items"][0]["status"] = "作废"
                    else:
                        data["items"] = [{"usage_id": None}]
                body = json.dumps(data, ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _reset(send: Any) -> None:
    """Abort the connection with a TCP RST, no response at all."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
        return
    # not under uvicorn: the closest we can do is promise a body and break off
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]}
    )
    raise ConnectionResetError("injected reset")


def build_asgi(state: ServerState, control: bool = False) -> Any:
    return FaultMiddleware(create_app(state, control), state) if control else create_app(state)


# --------------------------------------------------------------------------- command line


def load_records(path: Path) -> list[dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    items = data["items"] if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SystemExit(f"{path}: expected a JSON list of usage records")
    return items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m govbank_dev.elicense_server",
        description="Reference e-licence usage API server (elicense-api.md v1).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", type=Path)
    source.add_argument("--demo-seed", type=int)
    parser.add_argument(
        "--warehouse", help="warehouse URL to read fact_elicense_biz from (with --demo-seed)"
    )
    parser.add_argument(
        "--bank-records", type=Path, help="JSON list of bank ELIC records (with --demo-seed)"
    )
    parser.add_argument("--expected-out", type=Path)
    parser.add_argument("--now", help="with --demo-seed: cap generated times (ISO time or date)")
    parser.add_argument("--client-id", default="govbank")
    parser.add_argument("--client-secret-file", type=Path)
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--control", action="store_true")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    if args.client_secret_file:
        secret = args.client_secret_file.read_text(encoding="utf-8").strip()
    else:
        secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        parser.error(f"set {SECRET_ENV} or pass --client-secret-file")

    if args.records:
        records = load_records(args.records)
    else:
        from govbank_dev import elicense_data

        if args.warehouse:
            bank = elicense_data.bank_records_from_warehouse(args.warehouse)
        elif args.bank_records:
            bank = elicense_data.load_bank_records(args.bank_records)
        else:
            parser.error("--demo-seed needs --warehouse URL or --bank-records FILE")
        generated = elicense_data.usages_from_bank_records(
            bank, args.demo_seed, elicense_data.parse_now(args.now)
        )
        records = generated.usages
        if args.expected_out:
            generated.write_expected(args.expected_out)
        print(
            f"generated {len(records)} usage record version(s) from {len(bank)} bank record(s)",
            file=sys.stderr,
        )

    import uvicorn

    state = ServerState(UsageStore(records), args.client_id, secret, args.token_ttl)
    uvicorn.run(
        build_asgi(state, args.control),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=2,
    )


if __name__ == "__main__":
    main()
