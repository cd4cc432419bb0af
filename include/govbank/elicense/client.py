"""Client of the government e-licence usage API (elicense-api.md v1).

What it promises, row by row of the spec's error table:

- 429 waits for ``Retry-After`` (seconds or an HTTP date), then retries;
- 500/502/503/504, a reset connection, a broken body and a timeout are retried
  with exponential backoff and jitter, at most ``max_retries`` times, then raise
  :class:`ApiUnavailableError` (a ``TransientError``: let Airflow retry the task later);
- 401 fetches a new token once and retries; a second 401 raises :class:`ApiAuthError`;
- 400, 403, 404 (and any other 4xx) raise :class:`ApiRequestError` with the server's
  message: retrying would get the same answer;
- a 200 whose body is not the spec's schema raises :class:`MalformedPageError`; the raw
  page stays on disk.

Every call carries explicit (connect, read) timeouts. The secret and the tokens are never
logged, never put in an exception message and never written to disk.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import requests
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from govbank.domain.errors import ConfigError, GovbankError, TransientError
from govbank.util.private import private_dir, write_private

log = logging.getLogger(__name__)

TOKEN_PATH = "/api/v1/token"
USAGES_PATH = "/api/v1/elicense/usages"
USER_AGENT = "govbank-elicense/1"


# --------------------------------------------------------------------------- errors


class ElicenseError(GovbankError):
    """Root of the e-licence API errors."""


class ApiRequestError(ElicenseError, ConfigError):
    """400/403/404 (or another 4xx): the request or our permissions are wrong; do not retry."""

    def __init__(self, status: int, message: str, what: str = "") -> None:
        super().__init__(f"{what or 'e-licence API'} answered {status}: {message}")
        self.status = status
        self.server_message = message


class ApiAuthError(ApiRequestError):
    """The platform refused our credentials, or refused a freshly issued token."""


class MalformedPageError(ElicenseError):
    """A 200 answer that does not follow the spec: broken upstream, fail and keep the page."""

    def __init__(self, message: str, page_path: Path | None = None) -> None:
        super().__init__(message + (f" (raw page kept at {page_path})" if page_path else ""))
        self.page_path = page_path


class ApiUnavailableError(ElicenseError, TransientError):
    """Still failing after the bounded retries: worth another try later."""


# --------------------------------------------------------------------------- schema

Scene = Literal["一照开户", "一照贷款"]
Status = Literal["有效", "撤销"]
USCC_PATTERN = r"^[0-9A-HJ-NPQRTUWXY]{18}$"
BANK_PATTERN = r"^[A-Z0-9]{2,16}$"


class UsageRecord(BaseModel):
    """One usage record as the spec defines it; unknown extra fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    usage_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    uscc: Annotated[str, StringConstraints(pattern=USCC_PATTERN)]
    enterprise_name: str | None = None
    scene: Scene
    bank_code: Annotated[str, StringConstraints(pattern=BANK_PATTERN)]
    outlet_code: Annotated[str, StringConstraints(max_length=32)] | None = None
    authorized_at: AwareDatetime
    updated_at: AwareDatetime
    status: Status


class _PageModel(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    items: list[UsageRecord]
    next_cursor: Annotated[str, StringConstraints(min_length=1)] | None


USAGE_FIELDS = tuple(UsageRecord.model_fields)


@dataclass(frozen=True)
class Page:
    number: int
    items: list[UsageRecord]
    next_cursor: str | None
    path: Path | None = None


def parse_page(raw: bytes, number: int = 0, path: Path | None = None) -> Page:
    """Check one raw page against the spec; raise :class:`MalformedPageError` naming what is wrong."""
    where = f"page {number}" if number else "page"
    try:
        model = _PageModel.model_validate_json(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False)[:5]:
            loc = ".".join(str(p) for p in err["loc"]) or "body"
            problems.append(f"{loc}: {err['msg']}")
        more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
        raise MalformedPageError(
            f"e-licence API {where} is not the schema of elicense-api.md: "
            + "; ".join(problems)
            + more,
            path,
        ) from None
    return Page(number=number, items=model.items, next_cursor=model.next_cursor, path=path)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs; built from an Airflow connection by :func:`config_from_connection`."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    page_limit: int = 500
    max_retries: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 300.0
    verify: bool | str = True

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"e-licence base_url must start with http:// or https://: {self.base_url!r}"
            )
        if not self.client_id or not self.client_secret:
            raise ConfigError(
                "e-licence connection needs a login (client_id) and a password (client_secret)"
            )
        if not 1 <= self.page_limit <= 1000:
            raise ConfigError(f"page_limit must be 1..1000, got {self.page_limit}")
        if self.max_retries < 0 or self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError("max_retries must be >= 0 and timeouts > 0")

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


class ConnectionLike(Protocol):
    host: str | None
    schema: str | None
    port: int | None
    login: str | None
    password: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


_EXTRA_FLOATS = (
    "connect_timeout",
    "read_timeout",
    "backoff_base",
    "backoff_max",
    "max_retry_after",
)
_EXTRA_INTS = ("page_limit", "max_retries")


def config_from_connection(conn: ConnectionLike) -> ClientConfig:
    """Build the config from an Airflow ``http`` connection (or anything shaped like one).

    The base URL follows Airflow's HttpHook: ``host`` may be a full URL
    (``https://gw.example.gov.cn/prefix``); otherwise ``schema`` is the scheme (default
    ``http``) and ``port`` is appended. ``login``/``password`` are the client id and
    secret. ``extra`` may set connect_timeout, read_timeout, page_limit, max_retries,
    backoff_base, backoff_max, max_retry_after and verify (bool or a CA bundle path).
    """
    host = (conn.host or "").strip()
    if not host:
        raise ConfigError("e-licence connection has no host")
    if "://" in host:
        base_url = host
    else:
        base_url = f"{(conn.schema or 'http').strip()}://{host}"
        if conn.port:
            base_url += f":{conn.port}"
    extra = dict(conn.extra_dejson or {})
    kwargs: dict[str, Any] = {}
    try:
        for name in _EXTRA_FLOATS:
            if name in extra:
                kwargs[name] = float(extra[name])
        for name in _EXTRA_INTS:
            if name in extra:
                kwargs[name] = int(extra[name])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"e-licence connection extra has a bad number: {exc}") from None
    if "verify" in extra:
        verify = extra["verify"]
        if isinstance(verify, str) and verify.lower() in ("true", "false"):
            verify = verify.lower() == "true"
        kwargs["verify"] = verify
    return ClientConfig(
        base_url=base_url.rstrip("/"),
        client_id=conn.login or "",
        client_secret=conn.password or "",
        **kwargs,
    )


# --------------------------------------------------------------------------- client


class _Retryable(Exception):
    """Internal: this attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _server_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("message", "detail", "error_description", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    text = resp.text.strip()
    return text[:500] if text else (resp.reason or "no message")


class ElicenseClient:
    """A ``requests.Session`` that speaks elicense-api.md v1 and survives its error table."""

    def __init__(
        self,
        config: ClientConfig,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.session.headers["Accept"] = "application/json"
        self._sleep = sleep
        self._token: str | None = None
        self._token_deadline = 0.0

    # -- plumbing

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ElicenseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path: str) -> str:
        return self.config.base_url.rstrip("/") + path

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after
        backoff = self.config.backoff_base * 2 ** (state.attempt_number - 1)
        return min(self.config.backoff_max, backoff) * random.uniform(0.5, 1.0)

    def _stop(self, state: RetryCallState) -> bool:
        if stop_after_attempt(self.config.max_retries + 1)(state):
            return True
        exc = state.outcome.exception() if state.outcome else None
        # a wait longer than we are willing to block for: give up now, Airflow retries later
        return isinstance(exc, _Retryable) and (exc.retry_after or 0) > self.config.max_retry_after

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "e-licence API: %s; retry %d/%d in %.2fs",
            getattr(exc, "reason", exc),
            state.attempt_number,
            self.config.max_retries,
            wait,
        )

    def _with_retries(
        self, what: str, attempt: Callable[[], requests.Response]
    ) -> requests.Response:
        retrying = Retrying(
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(_Retryable),
            before_sleep=self._before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retryable as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            raise ApiUnavailableError(
                f"{what} still failing after {tries} attempt(s): {exc.reason}"
            ) from None

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        bearer: bool = True,
    ) -> requests.Response:
        """One HTTP exchange; transient failures become :class:`_Retryable`."""
        headers = {}
        if bearer:
            headers["Authorization"] = f"Bearer {self._ensure_token()}"
        try:
            resp = self.session.request(
                method,
                self._url(path),
                params=params,
                json=body,
                headers=headers,
                timeout=self.config.timeout,
                verify=self.config.verify,
                allow_redirects=False,
            )
        except requests.Timeout as exc:
            raise _Retryable(f"{method} {path}: timeout ({type(exc).__name__})") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"{method} {path}: connection failed ({type(exc).__name__})") from None
        if resp.status_code == 429:
            wait = _retry_after_seconds(resp.headers.get("Retry-After"))
            shown = f" (Retry-After {wait:.0f}s)" if wait is not None else ""
            raise _Retryable(f"{method} {path}: 429 rate limited{shown}", retry_after=wait)
        if resp.status_code >= 500:
            raise _Retryable(f"{method} {path}: {resp.status_code} {resp.reason}")
        return resp

    # -- authentication

    def _ensure_token(self) -> str:
        if self._token is None or time.monotonic() >= self._token_deadline:
            self._fetch_token()
        assert self._token is not None
        return self._token

    def _fetch_token(self) -> None:
        self._token = None
        body = {"client_id": self.config.client_id, "client_secret": self.config.client_secret}
        resp = self._with_retries(
            "POST " + TOKEN_PATH, lambda: self._send("POST", TOKEN_PATH, body=body, bearer=False)
        )
        if resp.status_code != 200:
            raise ApiAuthError(resp.status_code, _server_message(resp), "token endpoint")
        try:
            data = resp.json()
            token = data["access_token"]
            expires_in = float(data.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise MalformedPageError(
                "token endpoint answered 200 without access_token/expires_in"
            ) from None
        if not isinstance(token, str) or not token:
            raise MalformedPageError("token endpoint answered an empty access_token")
        self._token = token
        # renew a little early so a token never expires between our check and the server's
        self._token_deadline = time.monotonic() + max(0.0, expires_in - min(30.0, expires_in / 10))
        log.info("e-licence API: new access token, valid %.0fs", expires_in)

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None
    ) -> requests.Response:
        """An authenticated call with the retries and the once-only token renewal of the spec."""
        what = f"{method} {path}"
        renewed = False
        while True:
            resp = self._with_retries(what, lambda: self._send(method, path, params=params))
            if resp.status_code == 401:
                if renewed:
                    raise ApiAuthError(401, _server_message(resp), what + " (after a new token)")
                log.info("e-licence API: %s answered 401, fetching a new token once", what)
                self._token = None
                renewed = True
                continue
            if resp.status_code >= 400 or resp.status_code in (301, 302, 303, 307, 308):
                raise ApiRequestError(resp.status_code, _server_message(resp), what)
            return resp

    # -- usage records

    def get_usages_raw(
        self, updated_since: dt.datetime, cursor: str | None = None, limit: int | None = None
    ) -> bytes:
        """One page of usage records, as the raw bytes the server sent."""
        if updated_since.tzinfo is None:
            raise ValueError("updated_since must carry a time zone")
        params: dict[str, Any] = {
            "updated_since": updated_since.isoformat(),
            "limit": limit or self.config.page_limit,
        }
        if cursor is not None:
            params["cursor"] = cursor
        return self.request("GET", USAGES_PATH, params=params).content

    def iter_pages(self, updated_since: dt.datetime, run_dir: Path) -> Iterator[Page]:
        """Follow ``next_cursor`` to the end; write every raw page to ``run_dir/page-NNNN.json``
        before checking it, so a broken page can be inspected."""
        private_dir(run_dir, run_dir.parent)  # raw pages: 0600 files in 0700 folders
        cursor: str | None = None
        seen: set[str] = set()
        number = 0
        while True:
            number += 1
            raw = self.get_usages_raw(updated_since, cursor)
            path = run_dir / f"page-{number:04d}.json"
            write_private(path, raw)
            page = parse_page(raw, number, path)
            log.info("e-licence API: page %d, %d record(s)", number, len(page.items))
            yield page
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise MalformedPageError(
                    f"e-licence API page {number} repeats an earlier next_cursor", path
                )
            seen.add(page.next_cursor)
            cursor = page.next_cursor
