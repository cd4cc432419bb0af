"""Faults: whatever breaks mid-run, the rerun leaves the tables a fault-free run leaves.

One bank of the demo drop (CCBOH: two outlet snapshots, accepted, partially accepted
and rejected ELIC files, a corrected resubmission) goes through ``process_bank`` on
SQLite and on PostgreSQL ($GOVBANK_TEST_POSTGRES_URL, schema ``govbank`` dropped and
migrated anew). Each fault run is compared with a clean run of the same backend: every
table without surrogate ids and timestamps, every receipt and rejects file, an empty
inbox, staging empty, one ``etl_file`` original per sha256, each answered.

- A worker SIGKILLed at four points (inside the file's transaction after the merge;
  after the commit, before the receipt; after the receipt, before the inbox is cleared;
  inside the second snapshot's transaction after COPY, before its type-2 merge), each
  followed by a rerun. Workers are forked from the test process, as Airflow's executors
  fork task runners: they start with the session's warm validator, park at the point
  (the parent checks the state there: row still ``processing``, backend ``idle in
  transaction``...) and get SIGKILL, so no handler, ``finally`` or rollback of ours runs.
- The PostgreSQL server terminating the loader's backend while it waits inside COPY,
  inside the ELIC merge, and inside the type-2 outlet merge (a SHARE lock held by the
  test makes it wait exactly there; found by ``application_name``): each run raises
  TransientError, the file's transaction is rolled back, the retry completes.
- Two runs of the same bank at once on the same landing and warehouse (a backfill
  beside the daily run): no double load, no receipt overwritten.
- The races of two runs on one file, each forced at its narrowest point, and the SFTP
  server going away mid-run (then Airflow's retry); the transfer itself being cut
  mid-download is tests/integration/test_sftp_transport.py's.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from govbank.domain.errors import TransientError
from govbank.ingest.run import FileOutcome, process_bank
from govbank.transport import Landing
from govbank.util.concurrency import BackgroundWriter
from govbank.warehouse.schema import dim_outlet, etl_file, fact_elicense_biz
from govbank_dev.demo import DemoDrop, build_demo
from tests.conftest import PSEUDONYM_KEY
from tests.faultkit import (
    APP_NAME,
    FINAL,
    HookedLanding,
    Site,
    Worker,
    dump,
    file_rows,
    fresh_site,
    libpq_url,
    originals,
    outbox,
    park,
    staged_rows,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

BANK = "CCBOH"
BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Run:
    tables: dict[str, list[tuple]]
    receipts: dict[str, object]
    outcomes: list[FileOutcome]


@pytest.fixture(autouse=True)
def _no_worker_left() -> Iterator[None]:
    yield
    Worker.kill_all()


@pytest.fixture(scope="module")
def drop() -> DemoDrop:
    return build_demo()


@pytest.fixture(scope="module")
def clean(drop: DemoDrop, validator, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Run]:  # type: ignore[no-untyped-def]
    """The fault-free run of each backend, made once per module on first use."""
    runs: dict[str, Run] = {}

    def get(kind: str) -> Run:
        if kind not in runs:
            site = fresh_site(kind, tmp_path_factory.mktemp(f"clean-{kind}"), drop, BANK)
            ctx = site.context(validator, PSEUDONYM_KEY)
            outcomes = process_bank(ctx, BANK)
            runs[kind] = Run(dump(ctx.engine), outbox(site.outbox), outcomes)
            ctx.engine.dispose()
            plan = drop.expected()
            assert [(o.file_name, o.status) for o in outcomes] == [
                (f.name, f.expected.status) for f in drop.banks[BANK].files
            ]
            assert {o.status for o in outcomes} == FINAL, "the bank should exercise every outcome"
            assert all(o.rows_loaded == plan[o.file_name].rows_loaded for o in outcomes)
            assert runs[kind].tables["fact_elicense_biz"] and runs[kind].tables["dim_outlet"]
        return runs[kind]

    return get


def assert_like_clean(
    site: Site, clean: Run, *, duplicates_allowed: bool = False, inbox: Path | None = None, outbox_dir: Path | None = None
) -> None:
    """The fault run ended where the clean run did, and every file was answered once."""
    engine = site.engine()
    try:
        tables = dump(engine)
        files = file_rows(engine)
        staged = staged_rows(engine)
    finally:
        engine.dispose()
    if duplicates_allowed:
        assert originals(tables) == clean.tables
    else:
        assert tables == clean.tables
    assert outbox(outbox_dir or site.outbox) == clean.receipts
    assert list((inbox or site.inbox).iterdir()) == [], "every file answered and cleared"
    assert staged == 0, "staging holds nothing after a run"
    per_sha = Counter(f.sha256 for f in files if f.status != "duplicate")
    assert set(per_sha.values()) == {1}, "one original per sha256: no file counted twice"
    assert all(f.status in FINAL and f.answered_at is not None for f in files if f.status != "duplicate")
    archive = site.settings().archive_dir
    for f in files:
        assert hashlib.sha256((archive / f.archive_path).read_bytes()).hexdigest() == f.sha256


def _status(site: Site, name: str) -> str | None:
    engine = site.engine()
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(etl_file.c.status).where(etl_file.c.file_name == name, etl_file.c.status != "duplicate")
            ).scalar()
    finally:
        engine.dispose()


def _idle_in_transaction(site: Site) -> int:
    """Backends of the loader that hold an open transaction, seen from another session."""
    import psycopg

    with psycopg.connect(libpq_url(site.url), autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND state = 'idle in transaction' AND datname = current_database()",
            (APP_NAME,),
        ).fetchone()[0]


def _loaded_from(site: Site, name: str) -> int:
    """Fact rows or outlet versions that came from ``name``."""
    engine = site.engine()
    try:
        with engine.connect() as conn:
            return sum(
                conn.execute(select(func.count()).select_from(t).where(t.c.source_file == name)).scalar_one()
                for t in (fact_elicense_biz, dim_outlet)
            )
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- SIGKILL


def _parking_worker(
    site: Site, validator: object, point: str, target: str, landing: Callable[[], Landing] | None = None
) -> Worker:
    """process_bank in a child that parks at ``point`` of file ``target`` (once).

    listed     the inbox listed, nothing fetched (``target`` unused)
    fetched    the file fetched and archived, not yet registered
    registered registered (or taken over), before its envelope is checked
    staged     inside the file's transaction, its rows COPYed into staging, not merged
    merged     inside the file's transaction, merged, not committed
    committed  the load committed, no receipt written yet
    answered   the receipt written, the inbox not yet cleared
    """

    def run() -> list[tuple[str, str]]:
        parked: list[str] = []

        def here(p: str, name: str) -> bool:
            return p == point and (name == target or point == "listed") and not parked

        def stop() -> None:
            parked.append(point)
            park(f"{point}:{target}")

        def load_hook(p: str, name: str, _rows: int) -> None:  # the context's hook: in the load
            if here(p, name):
                stop()

        def hook(event: str, _bank: str, name: str) -> None:  # the landing's: around transfers
            # the receipt (or rejects file) is the first thing written after the commit
            done = name.split(".receipt.json")[0].split(".rejects.csv")[0]
            if (event, point) in (("listed", "listed"), ("fetched", "fetched"), ("remove_inbox", "answered")) \
                    and here(point, name.removesuffix(".ok")):  # clearing removes the .ok first
                stop()
            if (event, point) == ("write_outbox", "committed") and here(point, done):
                stop()

        ctx = site.context(validator, PSEUDONYM_KEY, landing() if landing else None)
        ctx.landing = HookedLanding(ctx.landing, hook)  # type: ignore[assignment]
        ctx.hook = load_hook
        try:
            return [(o.file_name, o.status) for o in process_bank(ctx, BANK)]
        finally:
            ctx.landing.close()
            ctx.engine.dispose()

    return Worker(run)


KILLS = [  # (point, file) in processing order; each kill is followed by a rerun
    ("merged", "ELIC_CCBOH_20230228.csv"),
    ("committed", "ELIC_CCBOH_20230331.csv"),
    ("answered", "ELIC_CCBOH_20230531.csv"),  # the rejected file
    ("staged", "OUTLET_CCBOH_20230601.csv"),  # the second snapshot, before its type-2 merge
]


@pytest.mark.parametrize("kind", BACKENDS)
def test_sigkill_mid_load_then_rerun_equals_clean_run(
    kind: str, drop: DemoDrop, clean, validator, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    expected = clean(kind)
    site = fresh_site(kind, tmp_path, drop, BANK)
    for point, name in KILLS:
        worker = _parking_worker(site, validator, point, name)
        assert worker.expect("parked") == f"{point}:{name}"
        # what the world looks like at the moment of the kill
        status = _status(site, name)
        receipt = site.outbox / f"{name}.receipt.json"
        if point in ("staged", "merged"):
            assert status == "processing" and _loaded_from(site, name) == 0
            if site.is_postgres:
                assert _idle_in_transaction(site) == 1, "the kill must land inside the file's transaction"
        elif point == "committed":
            assert status == "partially_accepted" and not receipt.exists()
        else:
            assert status == "rejected" and receipt.exists()
        assert (site.inbox / name).exists()
        worker.kill()
        assert worker.process.exitcode == -9
    rerun = site.context(validator, PSEUDONYM_KEY)
    outcomes = process_bank(rerun, BANK)
    rerun.engine.dispose()
    assert {o.file_name for o in outcomes} == {"OUTLET_CCBOH_20230601.csv", "ELIC_CCBOH_20230615.csv"}
    assert_like_clean(site, expected)


# --------------------------------------------------------------------------- connection cut


def _chain(exc: BaseException | None) -> str:
    seen = []
    while exc is not None and len(seen) < 10:
        seen.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return "\n <- ".join(seen)


class Cutter(threading.Thread):
    """Holds ``lock_sql`` so the loader blocks on ``statement``, then terminates its backend.

    A SHARE lock blocks writes (INSERT, UPDATE) but not reads, so the loader runs
    normally until exactly that statement, where it waits: the cut lands there. Staging
    is a temporary table nobody else can lock: for the COPY, ``lock_sql`` is None and
    the loader is caught while the server waits for its data (``wait="Client"``).
    """

    def __init__(
        self, site: Site, lock_sql: str | None, statement: str, how: str = "pg_terminate_backend",
        wait: str = "Lock",
    ) -> None:
        super().__init__(daemon=True)
        self.site, self.lock_sql, self.statement, self.how = site, lock_sql, statement, how
        self.wait = wait
        self.locked = threading.Event()
        self.cut: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        import psycopg

        url = libpq_url(self.site.url)
        try:
            with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as admin:
                if self.lock_sql:
                    holder.execute(self.lock_sql)
                self.locked.set()
                try:
                    for _ in range(1200):
                        row = admin.execute(
                            "SELECT pid, query, wait_event_type FROM pg_stat_activity "
                            "WHERE application_name = %s AND wait_event_type = %s "
                            "AND query ILIKE %s",
                            (APP_NAME, self.wait, self.statement),
                        ).fetchone()
                        if row:
                            admin.execute(f"SELECT {self.how}(%s)", (row[0],))
                            self.cut = {"pid": row[0], "query": row[1]}
                            return
                        time.sleep(0.05)
                finally:
                    holder.rollback()
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc
        finally:
            self.locked.set()


def _slow_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow link: each block of a COPY reaches the server 0.3 s late, so a COPY is
    still running, the server waiting for data, when the cutter looks."""
    import psycopg

    write = psycopg.Copy.write

    def slow(self, buffer):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return write(self, buffer)

    monkeypatch.setattr(psycopg.Copy, "write", slow)


def _cut_while_loading(  # type: ignore[no-untyped-def]
    site: Site, ctx, lock_sql: str | None, statement: str, wait: str, name: str
) -> None:
    """One run whose backend is terminated in ``statement``: it says "retry me", and the
    file's transaction rolled back (registered, nothing of it loaded, not answered)."""
    cutter = Cutter(site, lock_sql, statement, wait=wait)
    cutter.start()
    cutter.locked.wait(60)
    with pytest.raises(TransientError) as raised:
        process_bank(ctx, BANK)
    cutter.join(60)
    assert cutter.error is None, cutter.error
    assert cutter.cut is not None, f"the loader never waited on {statement}"
    assert "terminating connection" in _chain(raised.value), _chain(raised.value)
    assert _status(site, name) == "processing"
    assert (site.inbox / name).exists()
    assert not (site.outbox / f"{name}.receipt.json").exists()
    assert _loaded_from(site, name) == 0


def test_connection_cut_in_copy_and_merge_then_retry_equals_clean_run(
    drop: DemoDrop, clean, validator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    expected = clean("postgresql")
    _slow_copy(monkeypatch)
    site = fresh_site("postgresql", tmp_path, drop, BANK)
    ctx = site.context(validator, PSEUDONYM_KEY)
    first_elic, snapshot = "ELIC_CCBOH_20230228.csv", "OUTLET_CCBOH_20230601.csv"
    last_elic = "ELIC_CCBOH_20230615.csv"
    cuts = [  # (lock that makes the loader wait, the statement it waits in, the file, on what)
        (None, "COPY %tmp_stg_elicense_biz%", first_elic, "Client"),
        # the first write to the fact table: a batch inserted early, under its savepoint
        ("LOCK TABLE govbank.fact_elicense_biz IN SHARE MODE", "INSERT INTO %fact_elicense_biz%", first_elic, "Lock"),
        # the retry gets past the ELIC files; the second snapshot's type-2 merge is cut
        ("LOCK TABLE govbank.dim_outlet IN SHARE MODE", "UPDATE %dim_outlet%", snapshot, "Lock"),
        # then the snapshot loads; the last file re-sends a loaded record: its batch
        # cannot go in early (the key is there), and the merge's UPDATE is cut
        ("SELECT 1 FROM govbank.fact_elicense_biz WHERE biz_id = 'CCB202304040002' FOR UPDATE",
         "UPDATE %fact_elicense_biz%", last_elic, "Lock"),
    ]
    for lock_sql, statement, name, wait in cuts:
        _cut_while_loading(site, ctx, lock_sql, statement, wait, name)
    # the retry (Airflow's; the same worker's engine and pool) completes
    outcomes = process_bank(ctx, BANK)
    ctx.engine.dispose()
    assert [o.file_name for o in outcomes] == [last_elic]
    assert_like_clean(site, expected)


def test_connection_cut_with_two_copies_in_flight_then_retry_equals_clean_run(
    drop: DemoDrop, clean, validator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """Chunks of 5 rows in GX batches of 15: the writer thread holds two chunks (one in
    COPY, one queued) when the connection dies. Nothing of the file stays, no thread is
    left waiting, and the retry equals a clean run."""
    expected = clean("postgresql")
    _slow_copy(monkeypatch)
    in_flight: list[tuple[int, int]] = []  # (writer, chunks it holds after a submit)

    class CountingWriter(BackgroundWriter):
        def submit(self, fn, *args) -> None:  # type: ignore[no-untyped-def]
            super().submit(fn, *args)
            in_flight.append((id(self), self.in_flight))

    site = fresh_site("postgresql", tmp_path, drop, BANK)
    ctx = site.context(validator, PSEUDONYM_KEY)
    ctx.chunk_rows, ctx.gx_rows = 5, 15
    # the exact reader really cuts 5-row chunks (Arrow reads a small file as one block)
    ctx.fast_reader, ctx.writer_factory = False, CountingWriter
    name = "ELIC_CCBOH_20230228.csv"
    _cut_while_loading(site, ctx, None, "COPY %tmp_stg_elicense_biz%", "Client", name)
    cut_writer = in_flight[-1][0]  # the ELIC file's, the last one made
    assert max(n for w, n in in_flight if w == cut_writer) == 2, in_flight
    assert not [t.name for t in threading.enumerate() if t.name.startswith("govbank-")]
    outcomes = process_bank(ctx, BANK)
    ctx.engine.dispose()
    assert name in {o.file_name for o in outcomes}
    assert_like_clean(site, expected)


def test_statement_cancelled_in_copy_is_a_transient_error(  # type: ignore[no-untyped-def]
    drop: DemoDrop, validator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """statement_timeout, lock_timeout, a deadlock or an operator's pg_cancel_backend end
    the COPY with the connection alive: the run must still say "retry me"."""
    site = fresh_site("postgresql", tmp_path, drop, BANK)
    ctx = site.context(validator, PSEUDONYM_KEY)
    _slow_copy(monkeypatch)
    cutter = Cutter(site, None, "COPY %tmp_stg_elicense_biz%", "pg_cancel_backend", wait="Client")
    cutter.start()
    cutter.locked.wait(60)
    try:
        with pytest.raises(TransientError) as raised:
            process_bank(ctx, BANK)
    finally:
        cutter.join(60)
        ctx.engine.dispose()
    assert cutter.cut is not None
    assert "canceling statement" in _chain(raised.value)
    assert _status(site, "ELIC_CCBOH_20230228.csv") == "processing"


# --------------------------------------------------------------------------- two runs at once


@pytest.mark.parametrize("kind", BACKENDS)
def test_two_runs_at_once_load_every_file_once(
    kind: str, drop: DemoDrop, clean, validator, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    expected = clean(kind)
    site = fresh_site(kind, tmp_path, drop, BANK)

    def backfill() -> list[tuple[str, str]]:
        ctx = site.context(validator, PSEUDONYM_KEY)
        park("ready")
        return [(o.file_name, o.status) for o in process_bank(ctx, BANK)]

    other = Worker(backfill)
    other.expect("parked")
    ctx = site.context(validator, PSEUDONYM_KEY)
    other.resume()  # both runs list the same inbox and start on the same file
    try:
        mine = [(o.file_name, o.status) for o in process_bank(ctx, BANK)]
    except Exception as exc:  # the other run's result says more about a race
        theirs = other.message()
        raise AssertionError(f"this run failed: {exc!r}; the other run: {theirs}") from exc
    finally:
        ctx.engine.dispose()
    theirs = other.expect("done")
    other.join()

    assert_like_clean(site, expected, duplicates_allowed=True)
    planned = {f.name: f.expected.status for f in drop.banks[BANK].files}
    reported = Counter(name for name, status in mine + theirs if status in FINAL)
    assert set(reported) == set(planned), (mine, theirs)
    assert not [s for _, s in mine + theirs if s == "duplicate"], "a duplicate receipt was written"
    # a file the other run answered (and cleared from the inbox) after this run listed it
    # is left alone as changed: the other run's answer is the one
    race = ("taken_by_another_run", "changed_left_for_next_run")
    assert all(status in (planned[name], *race) for name, status in mine + theirs), (mine, theirs)


# --------------------------------------------------------------------------- races, one at a time
# Each race of two runs on one file, forced at its narrowest point: the runs above
# only meet them by chance.

RACE = "OUTLET_CCBOH_20230201.csv"  # the bank's first file


def test_file_answered_by_another_run_while_fetched_adds_no_duplicate_row(
    drop: DemoDrop, validator, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    site = fresh_site("sqlite", tmp_path, drop, BANK, first=1)
    late = _parking_worker(site, validator, "fetched", RACE)
    late.expect("parked")
    ctx = site.context(validator, PSEUDONYM_KEY)
    assert [(o.file_name, o.status) for o in process_bank(ctx, BANK)] == [(RACE, "accepted")]
    ctx.engine.dispose()
    late.resume()
    assert late.expect("done") == [(RACE, "taken_by_another_run")]
    late.join()
    # the bank sent the file once: the audit log says so
    assert [f.status for f in file_rows(site.engine())] == ["accepted"]


def test_file_answered_by_another_run_after_takeover_is_left_to_it(
    drop: DemoDrop, validator, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    site = fresh_site("sqlite", tmp_path, drop, BANK, first=1)
    daily = _parking_worker(site, validator, "registered", RACE)
    daily.expect("parked")  # registered the file, about to load it
    backfill = _parking_worker(site, validator, "registered", RACE)
    backfill.expect("parked")  # found it registered and unanswered: took it over
    daily.resume()
    assert daily.expect("done") == [(RACE, "accepted")]
    daily.join()
    backfill.resume()
    assert backfill.expect("done") == [(RACE, "taken_by_another_run")]
    backfill.join()
    assert [f.status for f in file_rows(site.engine())] == ["accepted"]


# --------------------------------------------------------------------------- SFTP

SFTP_CONN = "govbank_fault_sftp"


@pytest.fixture(scope="module")
def sftp():  # type: ignore[no-untyped-def]
    import airflow.providers.sftp.hooks.sftp  # noqa: F401  (once, before any fork)

    from tests.sshd import SshdServer

    server = SshdServer.start(banks=[BANK])
    try:
        yield server
    finally:
        server.close()


def _sftp_landing() -> Landing:
    from govbank.transport.sftp import SftpLanding

    return SftpLanding(SFTP_CONN, attempts=2, backoff=0.1)


def _upload(server, drop: DemoDrop, first: int | None = None) -> None:  # type: ignore[no-untyped-def]
    for box in (server.inbox_path(BANK), server.outbox_path(BANK)):
        for p in box.iterdir():
            p.unlink()
    for f in drop.banks[BANK].files[:first]:
        server.put_inbox_file(BANK, f.name, f.data)
        server.put_inbox_file(BANK, f"{f.name}.ok", f.ok)


def test_sftp_server_down_mid_run_then_retry_equals_clean_run(
    sftp, drop: DemoDrop, clean, validator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """The server goes away while the run answers a file (receipt written, inbox not yet
    cleared): the run fails with TransientError; once the server is back, Airflow's
    retry finishes the work and the result is the fault-free run's."""
    expected = clean("sqlite")
    monkeypatch.setenv(f"AIRFLOW_CONN_{SFTP_CONN.upper()}", sftp.conn_json(sftp.pipeline))
    site = fresh_site("sqlite", tmp_path, drop, BANK, first=0)
    _upload(sftp, drop)
    victim = "ELIC_CCBOH_20230228.csv"

    def hook(event: str, _bank: str, name: str) -> None:
        if event == "remove_inbox" and name in (victim, f"{victim}.ok") and sftp.running:  # the .ok goes first
            sftp.stop()

    ctx = site.context(validator, PSEUDONYM_KEY, HookedLanding(_sftp_landing(), hook))  # type: ignore[arg-type]
    try:
        with pytest.raises(TransientError):
            process_bank(ctx, BANK)
    finally:
        ctx.landing.close()
        sftp.restart()
    assert (sftp.outbox_path(BANK) / f"{victim}.receipt.json").exists()
    assert (sftp.inbox_path(BANK) / victim).exists()
    retry = site.context(validator, PSEUDONYM_KEY, _sftp_landing())
    try:
        outcomes = process_bank(retry, BANK)
    finally:
        retry.landing.close()
        retry.engine.dispose()
    assert outcomes[0].file_name == victim and outcomes[0].status == "accepted"  # answered again
    assert_like_clean(site, expected, inbox=sftp.inbox_path(BANK), outbox_dir=sftp.outbox_path(BANK))


def test_sftp_file_answered_by_another_run_after_listing_is_left_to_it(
    sftp, drop: DemoDrop, validator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{SFTP_CONN.upper()}", sftp.conn_json(sftp.pipeline))
    site = fresh_site("sqlite", tmp_path, drop, BANK, first=0)
    _upload(sftp, drop, first=1)
    late = _parking_worker(site, validator, "listed", "", landing=_sftp_landing)
    late.expect("parked")  # listed the inbox, fetched nothing yet
    ctx = site.context(validator, PSEUDONYM_KEY, _sftp_landing())
    try:
        assert [(o.file_name, o.status) for o in process_bank(ctx, BANK)] == [(RACE, "accepted")]
    finally:
        ctx.landing.close()
        ctx.engine.dispose()
    late.resume()
    assert late.expect("done") == [(RACE, "taken_by_another_run")]
    late.join()
