"""Tools for the fault tests: fresh sites, table dumps, and workers that can be killed.

A *site* is what one deployment of the pipeline sees: a landing folder with one bank's
demo files, an archive, and a warehouse (a SQLite file, or the ``govbank`` schema of the
PostgreSQL database named by ``$GOVBANK_TEST_POSTGRES_URL``, dropped and migrated anew).

A *worker* is ``process_bank`` in a forked child process, the way Airflow's executors
fork task runners: it inherits the session's warm Great Expectations validator (seconds
saved per worker) and can be parked at a named point of the load, inspected from the
parent, and killed with SIGKILL there.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from sqlalchemy import Engine, func, select

from govbank.config.settings import Settings
from govbank.ingest.run import Context
from govbank.orchestration.runtime import build_context
from govbank.transport import Landing
from govbank.warehouse.db import make_engine, upgrade
from govbank.warehouse.schema import PG_SCHEMA, etl_file, metadata, stg_elicense_biz, stg_outlet
from govbank_dev.demo import DemoDrop

PG_ENV = "GOVBANK_TEST_POSTGRES_URL"
APP_NAME = "govbank_fault_test"  # how the loader's backend is found in pg_stat_activity
# where and when differ between runs; what was loaded must not
VOLATILE = {
    "loaded_at", "received_at", "processed_at", "answered_at", "last_received_at",
    "data_docs", "file_id", "reject_id", "outlet_key", "duplicate_of", "attempts",
}
RECEIPT_VOLATILE = {"received_at", "processed_at"}
FINAL = {"accepted", "partially_accepted", "rejected"}


def postgres_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"set {PG_ENV} to run against PostgreSQL")
    return url


def with_app_name(url: str, name: str = APP_NAME) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["application_name"] = name
    return urlunsplit(parts._replace(query=urlencode(query)))


def libpq_url(url: str, app_name: str = "govbank_fault_inspect") -> str:
    """The URL as psycopg takes it (no SQLAlchemy driver suffix), for a session of the
    test's own, which the loader's ``application_name`` does not match."""
    return "postgresql://" + with_app_name(url, app_name).split("://", 1)[1]


@dataclass
class Site:
    root: Path
    url: str
    bank: str

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith("postgresql")

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def inbox(self) -> Path:
        return self.landing / self.bank / "inbox"

    @property
    def outbox(self) -> Path:
        return self.landing / self.bank / "outbox"

    def settings(self) -> Settings:
        return Settings.from_env(
            {"GOVBANK_LOCAL_DIR": str(self.root), "GOVBANK_WAREHOUSE_URL": self.url}
        )

    def context(self, validator: object, key: bytes, landing: Landing | None = None) -> Context:
        ctx = build_context(self.settings(), key, landing)
        ctx.validator_factory = lambda: validator
        return ctx

    def engine(self) -> Engine:
        return make_engine(self.url)


def fresh_site(kind: str, root: Path, drop: DemoDrop, bank: str, first: int | None = None) -> Site:
    """One bank's demo files (the ``first`` few in processing order, else all) in a new
    landing, and an empty migrated warehouse."""
    root.mkdir(parents=True, exist_ok=True)
    if kind == "postgresql":
        url = with_app_name(postgres_url())
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
        engine.dispose()
    else:
        url = f"sqlite:///{(root / 'warehouse.db').as_posix()}"
    upgrade(url)
    site = Site(root, url, bank)
    site.inbox.mkdir(parents=True)
    site.outbox.mkdir(parents=True)
    for f in drop.banks[bank].files[:first]:  # data first, then its .ok, as a bank uploads
        (site.inbox / f.name).write_bytes(f.data)
        (site.inbox / f"{f.name}.ok").write_bytes(f.ok)
    return site


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    return str(value)


def dump(engine: Engine) -> dict[str, list[tuple]]:
    """Every table, without surrogate ids and timestamps, rows sorted."""
    out = {}
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            cols = [c for c in table.columns if c.name not in VOLATILE]
            out[name] = sorted(tuple(_cell(v) for v in r) for r in conn.execute(select(*cols)))
    return out


def originals(d: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The dump with ``etl_file``'s duplicate rows left out."""
    status = [c.name for c in etl_file.columns if c.name not in VOLATILE].index("status")
    return {**d, "etl_file": [r for r in d["etl_file"] if r[status] != "duplicate"]}


def outbox(folder: Path) -> dict[str, object]:
    """Receipts (without their timestamps) and rejects files; anything else is flagged."""
    out: dict[str, object] = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".receipt.json"):
            doc = json.loads(p.read_text(encoding="utf-8"))
            out[p.name] = {k: v for k, v in doc.items() if k not in RECEIPT_VOLATILE}
        elif p.name.endswith(".rejects.csv"):
            out[p.name] = p.read_bytes()
        else:
            out[p.name] = "unexpected file"
    return out


def file_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(etl_file).order_by(etl_file.c.file_id)).all()


def staged_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (stg_outlet, stg_elicense_biz)
        )


# --------------------------------------------------------------------------- workers


_WORKER_PIPE: Connection | None = None  # set in a worker: its end of the pipe


def park(label: str) -> None:
    """In a worker: tell the parent where we are, then wait for its word (or SIGKILL)."""
    conn = _WORKER_PIPE
    assert conn is not None, "park() outside a worker"
    conn.send(("parked", label))
    conn.recv()


def _child(pipe: Connection, target: Callable[[], object]) -> None:
    global _WORKER_PIPE
    _WORKER_PIPE = pipe
    try:
        result = target()
    except BaseException as exc:  # noqa: BLE001  (everything goes back to the parent)
        pipe.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    else:
        pipe.send(("done", result))


class Worker:
    """``target`` in a forked process; messages are ("parked", label), ("done", result)
    or ("error", traceback)."""

    live: set[Worker] = set()  # a failed test must not leave a parked worker holding locks

    @classmethod
    def kill_all(cls) -> None:
        for w in list(cls.live):
            w.kill()

    def __init__(self, target: Callable[[], object]) -> None:
        ctx = multiprocessing.get_context("fork")
        # garbage holding a database connection must not be finalised in the child
        # (closing a PostgreSQL socket there would end the parent's session)
        gc.collect()
        self._pipe, child_end = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child_end, target), daemon=True)
        self.process.start()
        child_end.close()
        Worker.live.add(self)

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def message(self, timeout: float = 180) -> tuple[str, Any]:
        if not self._pipe.poll(timeout):
            self.kill()
            raise AssertionError(f"worker {self.pid} said nothing for {timeout}s")
        try:
            return self._pipe.recv()
        except EOFError:
            self.process.join(10)
            raise AssertionError(f"worker {self.pid} died (exit code {self.process.exitcode})") from None

    def expect(self, kind: str, timeout: float = 180) -> Any:
        got, value = self.message(timeout)
        if got != kind:
            self.kill()
            raise AssertionError(f"worker {self.pid}: expected {kind}, got {got}: {value}")
        return value

    def resume(self) -> None:
        self._pipe.send("go")

    def kill(self) -> None:
        """SIGKILL: no handler, no finally, no rollback from our side."""
        if self.process.is_alive():
            os.kill(self.pid, signal.SIGKILL)
        self.process.join(30)
        self._pipe.close()
        Worker.live.discard(self)

    def join(self) -> int | None:
        self.process.join(60)
        self._pipe.close()
        Worker.live.discard(self)
        return self.process.exitcode


class HookedLanding:
    """A landing that calls ``hook(event, bank, name)`` at the moments a test stops in:
    before ``write_outbox`` and ``remove_inbox``, after ``fetch`` and ``list_inbox``."""

    def __init__(self, inner: Landing, hook: Callable[[str, str, str], None]) -> None:
        self._inner, self._hook = inner, hook

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def list_inbox(self, bank_code: str) -> list:
        listing = self._inner.list_inbox(bank_code)
        self._hook("listed", bank_code, "")
        return listing

    def fetch(self, bank_code: str, name: str, dest: Path, expected_size: int) -> None:
        self._inner.fetch(bank_code, name, dest, expected_size)
        self._hook("fetched", bank_code, name)

    def write_outbox(self, bank_code: str, name: str, data: bytes) -> None:
        self._hook("write_outbox", bank_code, name)
        self._inner.write_outbox(bank_code, name, data)

    def remove_inbox(self, bank_code: str, names: list[str]) -> None:
        self._hook("remove_inbox", bank_code, names[0])
        self._inner.remove_inbox(bank_code, names)
