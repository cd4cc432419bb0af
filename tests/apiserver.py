"""Run the reference e-licence API server on a free loopback port for a test.

The server runs in a thread of the test process (uvicorn on its own event loop) with
its control endpoints on, so a test can inject the spec's faults over HTTP::

    with RefServer(records) as api:
        api.inject("status", status=503, count=2)
        config = api.client_config(read_timeout=0.5)
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from sqlalchemy import Engine, insert, select

from govbank.domain.identifiers import USCC_CHARSET, uscc_check_char
from govbank.elicense.client import ClientConfig
from govbank.warehouse.db import make_engine, upgrade
from govbank.warehouse.schema import (
    PG_SCHEMA,
    fact_elicense_biz,
    fact_elicense_usage,
    mart_reconciliation,
)
from govbank_dev.elicense_server import ServerState, UsageStore, build_asgi


class RefServer:
    def __init__(
        self,
        records: list[dict[str, Any]],
        client_id: str = "govbank-test",
        client_secret: str | None = None,
        token_ttl: int = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.state = ServerState(UsageStore(records), client_id, self.client_secret, token_ttl)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            build_asgi(self.state, control=True),
            log_level="warning",
            proxy_headers=False,
            timeout_graceful_shutdown=1,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> RefServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("reference e-licence server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> RefServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control

    def _control(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        resp = requests.request(method, f"{self.url}/_control/{path}", json=body, timeout=5)
        resp.raise_for_status()
        return resp.json()

    def inject(self, kind: str, **options: Any) -> None:
        """Queue a fault (see govbank_dev.elicense_server for the kinds and options)."""
        self._control("POST", "faults", {"kind": kind, **options})

    def expire_tokens(self) -> None:
        self._control("POST", "expire-tokens")

    def set_clock(self, now: dt.datetime | None) -> None:
        self._control("POST", "clock", {"now": now.isoformat() if now else None})

    def reset(self) -> None:
        self._control("POST", "reset")

    def calls(self) -> list[dict[str, Any]]:
        return self._control("GET", "log")["calls"]

    def issued_tokens(self) -> list[str]:
        return list(self.state.tokens)

    def client_config(self, **overrides: Any) -> ClientConfig:
        """A config for this server with test-sized timeouts and backoff."""
        options: dict[str, Any] = {
            "base_url": self.url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "connect_timeout": 2.0,
            "read_timeout": 2.0,
            "page_limit": 10,
            "max_retries": 4,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "max_retry_after": 5.0,
        }
        options.update(overrides)
        return ClientConfig(**options)


# --------------------------------------------------------------------------- test data


def make_uscc(rng: random.Random) -> str:
    body = "91330304" + "".join(rng.choice(USCC_CHARSET) for _ in range(9))
    return body + uscc_check_char(body)


def bank_records(n: int = 60, seed: int = 1) -> list[dict[str, Any]]:
    """Bank ELIC records over three banks and two months, as the generator takes them.

    About one in eight repeats the previous record's enterprise, bank and scene a few days
    later (the case the one-to-one rule has to untangle) and one in ten is withdrawn.
    """
    rng = random.Random(seed)
    banks = ("WZB", "OHRCB", "CCBOH")
    out: list[dict[str, Any]] = []
    for i in range(n):
        if out and rng.random() < 0.125:
            prev = out[-1]
            rec = dict(prev, biz_id=f"{prev['bank_code']}-{i:05d}")
            rec["biz_date"] = prev["biz_date"] + dt.timedelta(days=rng.randint(0, 5))
        else:
            bank = banks[i % len(banks)]
            rec = {
                "bank_code": bank,
                "biz_id": f"{bank}-{i:05d}",
                "uscc": make_uscc(rng),
                "enterprise_name": f"温州测试{i:03d}有限公司",
                "biz_type": rng.choice(("一照开户", "一照贷款")),
                "biz_date": dt.date(2024, 5, 20) + dt.timedelta(days=rng.randint(0, 40)),
                "outlet_code": f"{bank}-OH-{rng.randint(1, 3):03d}",
            }
        rec["status"] = "撤销" if rng.random() < 0.1 else "有效"
        out.append(rec)
    return out


def insert_bank_records(engine: Engine, records: list[dict[str, Any]]) -> None:
    """Put bank records into fact_elicense_biz as the bank-file load would."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "bank_code": r["bank_code"],
            "biz_id": r["biz_id"],
            "biz_type": r["biz_type"],
            "uscc": r["uscc"],
            "enterprise_name": r["enterprise_name"],
            "outlet_code": r["outlet_code"],
            "biz_date": r["biz_date"],
            "status": r["status"],
            "source_file": f"ELIC_{r['bank_code']}_test.csv",
            "source_line": i + 2,
            "loaded_at": now,
        }
        for i, r in enumerate(records)
    ]
    with engine.begin() as conn:
        conn.execute(insert(fact_elicense_biz), rows)


def usage_rows(engine: Engine) -> list[tuple[Any, ...]]:
    """fact_elicense_usage without the load bookkeeping, times as aware UTC, for comparing runs."""
    t = fact_elicense_usage
    names = ("usage_id", "uscc", "enterprise_name", "scene", "bank_code", "outlet_code",
             "authorized_at", "updated_at", "status")  # fmt: skip

    def utc(value: Any) -> Any:
        if not isinstance(value, dt.datetime):
            return value
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)

    with engine.connect() as conn:
        rows = conn.execute(select(*(t.c[n] for n in names)).order_by(t.c.usage_id))
        return [tuple(utc(v) for v in r) for r in rows]


def reconciliation_rows(engine: Engine) -> list[dict[str, Any]]:
    t = mart_reconciliation
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(t).order_by(t.c.bank_code, t.c.month, t.c.scene)).mappings()]
    for r in rows:  # the month as a date (first of the month) must say what the text says
        start = r.pop("month_start")
        assert str(start)[:10] == f"{r['month']}-01", r
    return rows


PG_ENV = "GOVBANK_TEST_POSTGRES_URL"


def fresh_warehouse(kind: str, tmp_path: Path) -> Engine:
    """An empty, migrated warehouse: a SQLite file under tmp_path, or the PostgreSQL
    database named by $GOVBANK_TEST_POSTGRES_URL (its schema govbank dropped first)."""
    if kind == "postgresql":
        url = os.environ.get(PG_ENV)
        if not url:
            pytest.skip(f"set {PG_ENV} to run against PostgreSQL")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
        engine.dispose()
    else:
        url = f"sqlite:///{(tmp_path / 'warehouse.db').as_posix()}"
    upgrade(url)
    return make_engine(url)
