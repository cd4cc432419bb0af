"""One bank's inbox through every stage: discover, register, archive, read, map,
normalise, validate, pseudonymise, load, answer.

``process_bank`` is what the ingest DAG's mapped task calls, once per bank. What a bank
sent wrong ends in a receipt (no retry); what broke on our side raises
``TransientError`` so Airflow retries, and a retry is safe: files already answered
are duplicates, a file whose load did not commit is loaded again from scratch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import queue
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from govbank.config.contracts import BankContract
from govbank.domain.datasets import PERSONAL_FIELDS, Dataset
from govbank.domain.errors import BankInputError, TransientError
from govbank.domain.issues import RowIssue
from govbank.domain.pseudonym import mask, pseudonymise_column
from govbank.domain.reasons import message
from govbank.domain.statuses import FINAL, LOADED
from govbank.ingest.discover import (
    FileName,
    complete_files,
    parse_file_name,
    parse_ok,
    processing_order,
)
from govbank.ingest.load import (
    EarlyInsert,
    create_key_table,
    create_staging,
    drop_duplicated,
    drop_staging,
    duplicate_keys,
    duplicate_keys_of,
    known_outlets,
    lock_merge,
    merge_elicense_biz,
    merge_outlets,
    stage,
    sync_banks,
)
from govbank.ingest.normalise import (
    NormalisedChunk,
    normalise_cells,
    resolve_columns,
    unknown_headers,
)
from govbank.ingest.read import (
    FastPathAborted,
    ParsedFile,
    RawChunk,
    cells_from_raw,
    read_delimited,
    read_delimited_fast,
    read_xlsx,
)
from govbank.ingest.receipts import Receipt, ReceiptError, rejects_csv
from govbank.transport import Landing, RemoteFile
from govbank.util.clock import iso, now
from govbank.warehouse.schema import (
    etl_file,
    etl_reject,
    fact_elicense_biz,
    stg_elicense_biz,
    stg_outlet,
)

if TYPE_CHECKING:
    from concurrent.futures import Future

    from govbank.ingest.read import CellChunk

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class FileOutcome:
    file_name: str
    bank_code: str
    dataset: str | None
    status: str
    rows_total: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    top_reasons: list[tuple[str, int]] = field(default_factory=list)
    data_docs: str | None = None

    def log_line(self) -> str:
        reasons = "；".join(f"{c}（{message(c)}）×{n}" for c, n in self.top_reasons) or "无"
        return (
            f"bank={self.bank_code} dataset={self.dataset or '-'} file={self.file_name} "
            f"status={self.status} rows_in={self.rows_total} loaded={self.rows_loaded} "
            f"rejected={self.rows_rejected} top_reasons: {reasons}"
        )


@dataclass
class Context:
    """What a run needs, passed explicitly (no globals, no secrets in logs)."""

    engine: Engine
    landing: Landing
    contracts: dict[str, BankContract]
    archive_dir: Path
    pseudonym_key: bytes
    validator_factory: Callable[[], object]
    chunk_rows: int = 40_000
    gx_rows: int = 120_000  # rows per Great Expectations batch (several chunks)
    max_decompressed: int | None = None  # None: govbank.ingest.read's default
    _validator: object | None = None
    _warming: threading.Thread | None = None
    _warm_error: BaseException | None = None

    @property
    def validator(self):  # type: ignore[no-untyped-def]
        if self._warming is not None:
            self._warming.join()
            self._warming = None
            if self._warm_error is not None:
                err, self._warm_error = self._warm_error, None
                raise err
        if self._validator is None:
            self._validator = self.validator_factory()
        return self._validator

    def warm_validator(self) -> None:
        """Build the validator in a second thread while the file is fetched and read.

        ``import great_expectations`` and its context cost seconds of a task that is
        otherwise waiting on the file, the socket or Arrow's threads. An error is
        raised where the validator is first used, as if it were built there.
        """
        if self._validator is not None or self._warming is not None:
            return

        def build() -> None:
            try:
                self._validator = self.validator_factory()
            except BaseException as exc:  # handed to the thread that uses it
                self._warm_error = exc

        self._warming = threading.Thread(target=build, name="govbank-validator", daemon=True)
        self._warming.start()



def process_bank(ctx: Context, bank_code: str) -> list[FileOutcome]:
    """Every complete file in one bank's inbox, in business-date order."""
    try:
        listing = ctx.landing.list_inbox(bank_code)
    except OSError as exc:
        raise TransientError(f"cannot list {bank_code}/inbox: {exc}") from exc
    pairs = sorted(complete_files(listing), key=lambda p: processing_order(p[0].name))
    with ctx.engine.begin() as conn:
        sync_banks(conn, ctx.contracts.values())
    outcomes = []
    for data, ok in pairs:
        outcome = process_file(ctx, bank_code, data, ok)
        log.info("%s", outcome.log_line())
        outcomes.append(outcome)
    if not pairs:
        log.info("bank=%s: no complete files in the inbox", bank_code)
    return outcomes


@dataclass
class _Registered:
    file_id: int
    sha256: str
    size: int
    archive_path: Path
    received_at: dt.datetime
    status: str  # processing | duplicate | <final, not yet answered>


def process_file(ctx: Context, bank_code: str, data: RemoteFile, ok: RemoteFile) -> FileOutcome:
    reg = _receive(ctx, bank_code, data)
    name = data.name
    if reg is None:
        return FileOutcome(name, bank_code, None, "taken_by_another_run")
    if reg.status == "duplicate":
        return _answer_duplicate(ctx, bank_code, name, reg, ok)
    if reg.status in FINAL:  # loaded earlier, the answer never reached the outbox
        return _answer(ctx, bank_code, name, reg.file_id, ok)
    ctx.warm_validator()
    try:
        fname, expected_rows = _check_envelope(ctx, bank_code, name, ok, reg)
        _load_file(ctx, bank_code, fname, reg, expected_rows)
    except BankInputError as err:
        try:
            _record_rejection(ctx, bank_code, name, reg, err)
        except _ClaimedElsewhere:
            return FileOutcome(name, bank_code, None, "taken_by_another_run")
    except _ClaimedElsewhere:
        # a concurrent run loaded it first; that run answers the bank
        return FileOutcome(name, bank_code, None, "taken_by_another_run")
    except OperationalError as exc:  # locked, connection cut: the transaction rolled back
        raise TransientError(f"loading {bank_code}/{name} failed, will retry: {exc}") from exc
    return _answer(ctx, bank_code, name, reg.file_id, ok)


class _ClaimedElsewhere(Exception):
    """Another run finished this file while we were on it."""


def _claim(conn, file_id: int) -> None:  # type: ignore[no-untyped-def]
    """Lock the file's row for this transaction; a second run waits here, then backs off.

    The UPDATE takes a row lock (PostgreSQL) or the write lock (SQLite) that is held
    until the file's transaction ends, so two runs never load the same file at once.
    """
    claimed = conn.execute(
        update(etl_file)
        .where(etl_file.c.file_id == file_id, etl_file.c.status == "processing")
        .values(status="processing")
    )
    if claimed.rowcount != 1:
        raise _ClaimedElsewhere(file_id)


def _receive(ctx: Context, bank_code: str, data: RemoteFile) -> _Registered | None:
    """Fetch, hash and archive the raw bytes, then register them by digest."""
    received_at = now()
    incoming = ctx.archive_dir / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    tmp = incoming / f"{uuid.uuid4().hex}.part"
    try:
        try:
            ctx.landing.fetch(bank_code, data.name, tmp, data.size)
        except (FileNotFoundError, TransientError):  # SFTP: "no longer there" is a TransientError
            if _still_in_inbox(ctx, bank_code, data.name):
                raise
            tmp.unlink(missing_ok=True)
            return None  # answered and removed by a concurrent run
        digest = hashlib.sha256()
        with tmp.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        sha = digest.hexdigest()
        final = ctx.archive_dir / bank_code / sha[:2] / f"{sha}__{data.name}"
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp.unlink()
        else:
            os.replace(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TransientError(f"cannot fetch or archive {bank_code}/{data.name}: {exc}") from exc
    dataset, business_date = _name_facts(data.name)
    row = {
        "file_name": data.name,
        "bank_code": bank_code,
        "dataset": dataset,
        "business_date": business_date,
        "sha256": sha,
        "size_bytes": data.size,
        "received_at": received_at,
        "status": "processing",
        "archive_path": str(final.relative_to(ctx.archive_dir)),
    }
    try:
        with ctx.engine.begin() as conn:
            file_id = conn.execute(insert(etl_file).values(row).returning(etl_file.c.file_id)).scalar_one()
        return _Registered(file_id, sha, data.size, final, received_at, "processing")
    except IntegrityError:
        pass
    except OperationalError as exc:
        raise TransientError(f"cannot register {data.name}: {exc}") from exc
    with ctx.engine.connect() as conn:
        original = conn.execute(
            select(etl_file).where(
                etl_file.c.bank_code == bank_code,
                etl_file.c.sha256 == sha,
                etl_file.c.status != "duplicate",
            )
        ).one()
    if original.status == "processing" or original.answered_at is None:
        # an earlier run died before answering: take the file over
        return _Registered(original.file_id, sha, data.size, final, original.received_at, original.status)
    if not _still_in_inbox(ctx, bank_code, data.name):
        return None  # this very upload was answered and cleared by a concurrent run meanwhile
    with ctx.engine.begin() as conn:
        dup_id = conn.execute(
            insert(etl_file)
            .values({**row, "status": "duplicate", "duplicate_of": original.file_id, "processed_at": now()})
            .returning(etl_file.c.file_id)
        ).scalar_one()
    return _Registered(dup_id, sha, data.size, final, received_at, "duplicate")


def _name_facts(name: str) -> tuple[str | None, dt.date | None]:
    try:
        fn = parse_file_name(name)
    except BankInputError:
        return None, None
    return fn.dataset.value, fn.business_date


def _check_envelope(
    ctx: Context, bank_code: str, name: str, ok: RemoteFile, reg: _Registered
) -> tuple[FileName, int | None]:
    """Name, contract and control file; the ``.ok`` row count is checked after reading."""
    fname = parse_file_name(name)
    if fname.bank_code != bank_code:
        raise BankInputError("BANK_MISMATCH", message("BANK_MISMATCH"), f"{fname.bank_code} ≠ {bank_code}")
    if bank_code not in ctx.contracts:
        raise BankInputError("NO_CONTRACT", message("NO_CONTRACT"), bank_code)
    if fname.dataset not in ctx.contracts[bank_code].feeds:
        raise BankInputError("NO_CONTRACT", f"约定中没有 {fname.dataset} 数据集")
    try:
        control = parse_ok(ctx.landing.read_small(bank_code, ok.name))
    except (FileNotFoundError, TransientError):
        if _still_in_inbox(ctx, bank_code, name):
            raise
        raise _ClaimedElsewhere(reg.file_id) from None  # answered and cleared by a concurrent run
    if control.sha256 and control.sha256 != reg.sha256:
        raise BankInputError("OK_SHA256_MISMATCH", message("OK_SHA256_MISMATCH"))
    return fname, control.rows


def _parse(ctx: Context, fname: FileName, path: Path, exact: bool = False) -> ParsedFile:
    feed = ctx.contracts[fname.bank_code].feeds[fname.dataset]
    if fname.fmt == "xlsx":
        return read_xlsx(path, chunk_rows=ctx.chunk_rows, max_decompressed=ctx.max_decompressed)
    read = read_delimited if exact else read_delimited_fast
    return read(
        path, gzipped=fname.gzipped, delimiter=feed.delimiter, chunk_rows=ctx.chunk_rows,
        max_decompressed=ctx.max_decompressed,
    )


def _load_file(
    ctx: Context, bank_code: str, fname: FileName, reg: _Registered, expected_rows: int | None
) -> None:
    """The file in one transaction: staged, checked, merged and recorded, or nothing.

    The columnar reader goes first; a file it cannot vouch for (a blank line, a quote
    across lines, bad bytes...) is read again from the start by the exact reader, whose
    messages name the line. Whatever the first attempt staged or inserted is discarded.
    """
    with ctx.engine.begin() as conn:
        _claim(conn, reg.file_id)
        attempt = None
        if conn.dialect.name == "postgresql":
            # the file-wide duplicate check groups every key: in memory, not spilled to disk
            conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            if fname.dataset is Dataset.ELIC:
                # rows reach the fact table early (EarlyInsert): the bank's merge lock
                # first, and a savepoint to take them back if the file is read again
                lock_merge(conn, fact_elicense_biz.name, [bank_code])
                attempt = conn.begin_nested()
        try:
            _load_parsed(ctx, conn, bank_code, fname, reg, expected_rows, _parse(ctx, fname, reg.archive_path))
        except FastPathAborted as why:
            if attempt is not None:
                attempt.rollback()
            log.info("%s: read again by the exact reader (%s)", fname.name, why)
            exact = _parse(ctx, fname, reg.archive_path, exact=True)
            _load_parsed(ctx, conn, bank_code, fname, reg, expected_rows, exact)
        else:
            if attempt is not None:
                attempt.commit()  # RELEASE SAVEPOINT


_OUTLET_STAGED = (
    "bank_code", "outlet_code", "outlet_name", "outlet_type", "town_code", "community", "address",
    "longitude", "latitude", "service_items", "opened_on", "status",
)
_ELIC_STAGED = (
    "biz_id", "biz_type", "uscc", "enterprise_name", "outlet_code", "biz_date",
    "credit_amount_yuan", "drawn_amount_yuan", "loan_product", "status", "legal_rep_key",
    "source_line",
)


def _load_parsed(  # noqa: PLR0915 - one file's stages, in order
    ctx: Context, conn, bank_code: str, fname: FileName, reg: _Registered,  # type: ignore[no-untyped-def]
    expected_rows: int | None, parsed: ParsedFile,
) -> None:
    import numpy as np
    import pyarrow as pa

    contract = ctx.contracts[bank_code]
    feed = contract.feeds[fname.dataset]
    dataset = fname.dataset
    columns = resolve_columns(parsed.header, feed, dataset)
    warnings = [
        "未识别的表头已忽略：" + " ".join(h.split())  # one line each
        for h in unknown_headers(parsed.header, feed, dataset)
    ]
    tag = uuid.uuid4().hex[:12]
    outlet = dataset is Dataset.OUTLET
    key_field = "outlet_code" if outlet else "biz_id"
    staging = create_staging(
        conn, stg_outlet if outlet else stg_elicense_biz, _OUTLET_STAGED if outlet else _ELIC_STAGED, tag
    )
    keys = create_key_table(conn, tag)
    issues: list[RowIssue] = []
    rows_total = 0
    rows_loaded = 0
    refused_outlets: set[str] = set()  # sent, but refused: not "left out" of the snapshot
    loaded_at = now()
    constants = {"bank_code": bank_code, "source_file": fname.name, "loaded_at": loaded_at}
    pg = conn.dialect.name == "postgresql"
    writer = _Writer(background=pg)
    early = EarlyInsert(conn, staging, tag, constants) if pg and not outlet else None
    run = None  # the validator may still be importing GX: first chunks are read meanwhile
    params = {"file_date": fname.business_date.isoformat()}
    known = pa.array(sorted(known_outlets(conn, bank_code)), pa.string()) if not outlet else None
    pending: list[NormalisedChunk] = []  # normalised, waiting for one GX batch

    def check_pending() -> None:
        """One GX validation for the pending chunks, then each chunk is staged."""
        nonlocal issues, rows_loaded, run
        if run is None:
            run = ctx.validator.file_run(dataset.value, fname.name)
        outcome = run.validate(_frame(pending), params=params)
        found = sorted(outcome.issues, key=lambda i: i.line)
        found_lines = np.fromiter((i.line for i in found), dtype=np.int64, count=len(found))
        target = early.batch if early is not None else staging
        for chunk in pending:
            lo = int(np.searchsorted(found_lines, chunk.lines[0], side="left"))
            hi = int(np.searchsorted(found_lines, chunk.lines[-1], side="right"))
            chunk_issues = _merge_issues(chunk.issues, found[lo:hi])
            if known is not None:
                chunk_issues += _unknown_outlets(chunk, known)
            issues += chunk_issues
            good = _good_rows(chunk, chunk_issues)
            if outlet:
                refused_outlets.update(_refused(chunk, good, "outlet_code"))
            data = _staged_columns(ctx, chunk, good, fname)
            writer.submit(_stage_chunk, conn, keys, _keys_of(chunk, key_field), target, data)
            rows_loaded += len(data)
        if early is not None:
            writer.submit(early.flush, conn)
        pending.clear()

    def prepare(cells: CellChunk | RawChunk) -> NormalisedChunk:
        if isinstance(cells, RawChunk):
            cells = cells_from_raw(cells, len(parsed.header))
        return normalise_cells(cells, columns, feed, dataset)

    # a GX batch read ahead: GX and the early inserts no longer wait for the reader
    reader = _Prefetch(parsed.chunks, prepare, depth=max(1, ctx.gx_rows // ctx.chunk_rows))
    try:
        for chunk in reader:
            if not len(chunk):
                continue
            rows_total += len(chunk)
            pending.append(chunk)
            # GX costs ~0.2-0.3 s per validation whatever its size: batch several chunks
            if sum(map(len, pending)) >= ctx.gx_rows:
                check_pending()
        if pending:
            check_pending()
        writer.wait()
        for line, why in parsed.malformed:
            issues.append(RowIssue(line, "", "MALFORMED_ROW", f"{message('MALFORMED_ROW')}：{why}"))
        rows_total += len(parsed.malformed)
        if early is not None and early.complete:
            dups = duplicate_keys_of(conn, keys, sorted({i.line for i in issues}))
        else:
            dups = duplicate_keys(conn, keys)
        if dups:
            flagged = {(i.line, i.field) for i in issues}
            issues += [
                RowIssue(line, key_field, "DUPLICATE_KEY", message("DUPLICATE_KEY"), key)
                for line, key in dups
                if (line, key_field) not in flagged
            ]
            rows_loaded -= drop_duplicated(conn, staging, key_field, keys)
            if early is not None:
                rows_loaded -= early.undo_duplicated(conn, (key for _, key in dups))
            if outlet:
                refused_outlets.update(key for _, key in dups)
        rows_rejected = rows_total - rows_loaded
        if expected_rows is not None and expected_rows != rows_total:
            err = BankInputError(
                "OK_ROWS_MISMATCH", f"控制文件(.ok)声明 {expected_rows} 行，文件中有 {rows_total} 行"
            )
            err.rows_total = rows_total  # type: ignore[attr-defined]
            raise err
        if run is None:  # a file of no rows still gets its page
            run = ctx.validator.file_run(dataset.value, fname.name)
        docs_page = run.publish()
        # a header-only file is valid v1: no new records (ELIC) or no outlets (OUTLET)
        if rows_total and rows_rejected / rows_total > feed.reject_threshold:
            raise _TooManyInvalid(rows_total, issues, feed.reject_threshold, docs_page)
        if outlet:
            merge_outlets(
                conn, None, bank_code, fname.business_date, fname.name, keep=refused_outlets,
                staging=staging,
            )
        else:
            merge_elicense_biz(conn, staging=staging, constants=constants)
    finally:
        reader.close()
        writer.close()
        drop_staging(conn, staging, keys, *([early.batch] if early is not None else []))
    _write_rejects(conn, reg, fname.name, issues)
    status = "accepted" if rows_rejected == 0 else "partially_accepted"
    conn.execute(
        update(etl_file)
        .where(etl_file.c.file_id == reg.file_id)
        .values(
            status=status,
            processed_at=now(),
            rows_total=rows_total,
            rows_loaded=rows_loaded,
            rows_rejected=rows_rejected,
            error="\n".join(warnings) or None,
            data_docs=docs_page,
        )
    )


def _stage_chunk(conn, keys, key_rows, staging, data) -> None:  # type: ignore[no-untyped-def]
    stage(conn, keys, None, key_rows)
    stage(conn, staging, None, data)


class _Writer:
    """Writes chunks to staging in a second thread while the next ones are read and checked.

    PostgreSQL parses a COPY on its own core; the Python side waits on the socket with
    the GIL released. A few chunks in flight at most (one GX batch hands over several
    at once), so memory stays flat; the connection is used by one thread at a time
    (``wait`` before anything else uses it). SQLite connections stay in their own
    thread: there the write happens inline.
    """

    def __init__(self, background: bool, depth: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="govbank-stage") if background else None
        self._pending: deque[Future] = deque()
        self._depth = depth

    def submit(self, fn: Callable[..., None], *args: object) -> None:
        if self._pool is None:
            fn(*args)
            return
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Let writes in flight finish (an error, if any, is raised by ``wait``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Prefetch:
    """Reads and normalises the next chunks in a second thread while GX checks this one.

    Arrow parses and computes without the GIL, so the read runs on the core that GX's
    Python leaves idle. ``depth`` chunks wait at most (flat memory). Whatever the reader
    raises (``FastPathAborted``, a bank's bad bytes) is raised where the chunk was due.
    """

    _DONE = object()

    def __init__(self, source: Iterator[T], fn: Callable[[T], R], depth: int = 1) -> None:
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(source, fn), name="govbank-read", daemon=True
        )
        self._thread.start()

    def _run(self, source: Iterator[T], fn: Callable[[T], R]) -> None:
        try:
            for item in source:
                if not self._put(fn(item)):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[R]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading (the consumer is done or failed) and wait for the thread."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


class _TooManyInvalid(BankInputError):
    def __init__(self, rows_total: int, issues: list[RowIssue], threshold: float, docs: str | None) -> None:
        bad = len({i.line for i in issues})
        super().__init__(
            "TOO_MANY_INVALID",
            f"{message('TOO_MANY_INVALID')}（无效 {bad} 行 / 共 {rows_total} 行，阈值 {threshold:.0%}）",
        )
        self.rows_total, self.issues, self.docs = rows_total, issues, docs


def _merge_issues(parse_issues: list[RowIssue], gx_issues: list) -> list[RowIssue]:
    """Type errors first; a GX finding on a field that failed to parse says nothing new."""
    seen = {(i.line, i.field) for i in parse_issues}
    out = list(parse_issues)
    for g in gx_issues:
        if (g.line, g.field) in seen:
            continue
        seen.add((g.line, g.field))
        out.append(g)
    return out


def _unknown_outlets(chunk: NormalisedChunk, known) -> list[RowIssue]:  # type: ignore[no-untyped-def]
    """Business at an outlet the bank never sent (closed ones count: old business)."""
    import pyarrow.compute as pc

    codes = chunk.columns["outlet_code"]
    unknown = pc.and_(codes.is_valid(), pc.invert(pc.is_in(codes, value_set=known)))
    if not pc.any(unknown).as_py():
        return []
    where = pc.indices_nonzero(unknown)
    return [
        RowIssue(int(chunk.lines[i]), "outlet_code", "UNKNOWN_OUTLET", message("UNKNOWN_OUTLET"), code)
        for i, code in zip(where.to_pylist(), codes.take(where).to_pylist(), strict=True)
    ]


def _keys_of(chunk: NormalisedChunk, key_field: str):  # type: ignore[no-untyped-def]
    import pyarrow as pa

    table = pa.table({"key": chunk.columns[key_field], "line": pa.array(chunk.lines, pa.int32())})
    return table.filter(table["key"].is_valid())


def _good_rows(chunk: NormalisedChunk, issues: list[RowIssue]):  # type: ignore[no-untyped-def]
    """Boolean mask of the rows no issue names."""
    import numpy as np

    if not issues:
        return np.ones(len(chunk), dtype=bool)
    return ~np.isin(chunk.lines, np.fromiter((i.line for i in issues), dtype=np.int64))


def _refused(chunk: NormalisedChunk, good, key_field: str) -> set[str]:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    codes = chunk.columns[key_field].filter(pa.array(~good))
    return {c for c in codes.to_pylist() if c}


def _frame(chunks: list[NormalisedChunk]):  # type: ignore[no-untyped-def]
    """Chunks as one Great Expectations batch: floats and datetimes, not decimal text.

    Text of few distinct values (types, statuses, outlet codes) becomes a pandas
    category: GX filters the whole frame for every expectation and row condition, and
    a category is filtered as small integer codes, not as strings (a quarter of GX's time).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    data: dict[str, object] = {"source_line": np.concatenate([c.lines for c in chunks])}
    for name in chunks[0].columns:
        if name == "legal_rep_name":
            continue
        values = pa.concat_arrays([c.columns[name] for c in chunks])
        if name in ("credit_amount", "drawn_amount", "longitude", "latitude", "service_items"):
            data[name] = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_date32(values.type):
            data[name] = pc.cast(values, pa.timestamp("ns")).to_pandas()
        elif _few_distinct(values, pc):
            data[name] = values.dictionary_encode().to_pandas()
        else:
            data[name] = values.to_pandas()
    return pd.DataFrame(data)


def _few_distinct(values, pc, sample: int = 2000) -> bool:  # type: ignore[no-untyped-def]
    """Whether a column looks like codes rather than ids: judged on its first rows."""
    head = values.slice(0, sample)
    return len(head) > 0 and pc.count_distinct(head).as_py() * 4 < len(head)


def _staged_columns(ctx: Context, chunk: NormalisedChunk, good, fname: FileName):  # type: ignore[no-untyped-def]
    """The good rows, as the staging table's columns."""
    import pyarrow as pa

    mask = pa.array(good)
    c = {name: values.filter(mask) for name, values in chunk.columns.items()}
    n = int(good.sum())
    if fname.dataset is Dataset.OUTLET:
        c["bank_code"] = pa.repeat(pa.scalar(fname.bank_code), n)
        return pa.table({name: c[name] for name in _OUTLET_STAGED})
    c["credit_amount_yuan"] = c["credit_amount"]
    c["drawn_amount_yuan"] = c["drawn_amount"]
    c["legal_rep_key"] = pseudonymise_column(ctx.pseudonym_key, c["legal_rep_id"])
    c["source_line"] = pa.array(chunk.lines[good], pa.int32())
    return pa.table({name: c[name] for name in _ELIC_STAGED})


def _masked(issue: RowIssue) -> str | None:
    return mask(issue.value) if issue.field in PERSONAL_FIELDS else issue.value


def _write_rejects(conn, reg: _Registered, file_name: str, issues: list[RowIssue]) -> None:  # type: ignore[no-untyped-def]
    if not issues:
        return
    conn.execute(
        insert(etl_reject),
        [
            {
                "file_id": reg.file_id,
                "file_name": file_name,
                "sha256": reg.sha256,
                "line": i.line,
                "field": i.field or None,
                "reason_code": i.reason_code,
                "message": i.message,
                "value": _masked(i),
            }
            for i in sorted(issues, key=lambda i: (i.line, i.field))
        ],
    )


def _record_rejection(ctx: Context, bank_code: str, name: str, reg: _Registered, err: BankInputError) -> None:
    """A whole file refused: nothing loaded, every row counted as rejected."""
    rows_total = getattr(err, "rows_total", 0)
    row_issues = getattr(err, "issues", [])
    with ctx.engine.begin() as conn:
        _claim(conn, reg.file_id)
        _write_rejects(conn, reg, name, row_issues)
        conn.execute(
            insert(etl_reject).values(
                file_id=reg.file_id,
                file_name=name,
                sha256=reg.sha256,
                line=None,
                field=None,
                reason_code=err.reason_code,
                message=err.message_zh + (f"（{err.detail}）" if err.detail else ""),
            )
        )
        conn.execute(
            update(etl_file)
            .where(etl_file.c.file_id == reg.file_id)
            .values(
                status="rejected",
                processed_at=now(),
                rows_total=rows_total,
                rows_loaded=0,
                rows_rejected=rows_total,
                error=f"{err.reason_code}: {err.message_zh}",
                data_docs=getattr(err, "docs", None),
            )
        )


def _receipt_for(conn, file_id: int) -> tuple[Receipt, list[ReceiptError]]:  # type: ignore[no-untyped-def]
    f = conn.execute(select(etl_file).where(etl_file.c.file_id == file_id)).one()
    errors = [
        ReceiptError(r.reason_code, r.message, r.line, r.field, r.value)
        for r in conn.execute(
            select(etl_reject)
            .where(etl_reject.c.file_id == file_id)
            .order_by(etl_reject.c.line.is_not(None), etl_reject.c.line, etl_reject.c.reject_id)
        )
    ]
    receipt = Receipt(
        file_name=f.file_name,
        bank_code=f.bank_code,
        dataset=f.dataset,
        business_date=f.business_date.isoformat() if f.business_date else None,
        sha256=f.sha256,
        size_bytes=f.size_bytes,
        received_at=iso(f.received_at),
        processed_at=iso(f.processed_at),
        status=f.status,
        rows_total=f.rows_total,
        rows_loaded=f.rows_loaded,
        rows_rejected=f.rows_rejected,
        errors=errors,
        warnings=f.error.split("\n") if f.status in LOADED and f.error else [],
    )
    return receipt, errors




def _answer(ctx: Context, bank_code: str, name: str, file_id: int, ok: RemoteFile) -> FileOutcome:
    with ctx.engine.connect() as conn:
        receipt, errors = _receipt_for(conn, file_id)
        docs = conn.execute(select(etl_file.c.data_docs).where(etl_file.c.file_id == file_id)).scalar_one()
    _deliver(ctx, bank_code, name, receipt, errors, ok)
    with ctx.engine.begin() as conn:
        conn.execute(update(etl_file).where(etl_file.c.file_id == file_id).values(answered_at=now()))
    counts = Counter(e.reason_code for e in errors)
    return FileOutcome(
        name, bank_code, receipt.dataset, receipt.status, receipt.rows_total,
        receipt.rows_loaded, receipt.rows_rejected, counts.most_common(3), docs,
    )


def _still_in_inbox(ctx: Context, bank_code: str, name: str) -> bool:
    names = {f.name for f in ctx.landing.list_inbox(bank_code)}
    return name in names and f"{name}.ok" in names


def _answer_duplicate(ctx: Context, bank_code: str, name: str, reg: _Registered, ok: RemoteFile) -> FileOutcome:
    if not _still_in_inbox(ctx, bank_code, name):
        # a concurrent run answered this very upload: do not overwrite its receipt
        with ctx.engine.begin() as conn:
            conn.execute(update(etl_file).where(etl_file.c.file_id == reg.file_id).values(answered_at=now()))
        return FileOutcome(name, bank_code, None, "taken_by_another_run")
    with ctx.engine.connect() as conn:
        receipt, _ = _receipt_for(conn, reg.file_id)
        dup = conn.execute(select(etl_file.c.duplicate_of).where(etl_file.c.file_id == reg.file_id)).scalar_one()
        original, _ = _receipt_for(conn, dup)
    receipt.duplicate_of = {
        "file_name": original.file_name,
        "status": original.status,
        "processed_at": original.processed_at,
        "rows_loaded": original.rows_loaded,
    }
    _deliver(ctx, bank_code, name, receipt, [], ok)
    with ctx.engine.begin() as conn:
        conn.execute(update(etl_file).where(etl_file.c.file_id == reg.file_id).values(answered_at=now()))
    return FileOutcome(name, bank_code, receipt.dataset, "duplicate")


def _deliver(
    ctx: Context, bank_code: str, name: str, receipt: Receipt, errors: list[ReceiptError], ok: RemoteFile
) -> None:
    """Receipt first, then the inbox is cleared: a crash in between re-answers, never loses."""
    if errors:
        ctx.landing.write_outbox(bank_code, f"{name}.rejects.csv", rejects_csv(name, errors))
    ctx.landing.write_outbox(bank_code, f"{name}.receipt.json", receipt.to_json())
    ctx.landing.remove_inbox(bank_code, [name, ok.name])

