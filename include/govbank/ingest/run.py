"""One bank's inbox through every stage, in order: intake (fetch, archive, register,
claim, envelope), read, normalise, check, stage, merge, answer.

``process_bank`` is what the ingest DAG's mapped task calls, once per bank. What a bank
sent wrong ends in a receipt (no retry); what broke on our side raises
``TransientError`` so Airflow retries, and a retry is safe: files already answered
are duplicates, a file whose load did not commit is loaded again from scratch.

No file stops its bank's queue: any other exception while one file is processed is
logged and counted against that file (``etl_file.attempts``), the bank's next files
go on, and the run then fails with :class:`FilesFailed` so it is red and alerted. A
file whose loads began ``max_attempts`` times without an answer is a poison file: it
is answered ``rejected`` (``POISON_FILE``), kept in the archive, and operators are told.
What a dataset needs is asked of its ``DatasetSpec``; this module does not branch on it.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection
from sqlalchemy.exc import InterfaceError, OperationalError

from govbank.domain.datasets import DatasetSpec, spec_of
from govbank.domain.errors import BankInputError, FilesFailed, TransientError
from govbank.domain.statuses import FINAL
from govbank.ingest.answer import (
    FileOutcome,
    answer_duplicate,
    answer_if_stable,
    record_loaded,
    record_rejection,
    set_aside,
)
from govbank.ingest.checks import ROW_RULES, FileChecks, pieces
from govbank.ingest.context import Context
from govbank.ingest.discover import FileName, complete_files, processing_order
from govbank.ingest.intake import (
    ClaimedElsewhere,
    Registered,
    check_envelope,
    claim,
    count_attempt,
    forget,
    receive,
    still_as_listed,
    sweep_cleared,
)
from govbank.ingest.merge import MERGES, MergeInput, lock_merge, sync_banks
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
)
from govbank.ingest.stage import Staging, keys_of, staged_columns
from govbank.ingest.xlsx import read_xlsx
from govbank.transport import EntryChanged, RemoteFile
from govbank.util.clock import now
from govbank.util.concurrency import Prefetch
from govbank.util.text import log_safe

if TYPE_CHECKING:
    from govbank.ingest.read import CellChunk

__all__ = ["Context", "FileOutcome", "FilesFailed", "process_bank", "process_file"]

log = logging.getLogger(__name__)

# what says the database or the network is down, not this file: the whole task retries
_OUR_OUTAGE = (TransientError, OperationalError, InterfaceError)


def process_bank(ctx: Context, bank_code: str) -> list[FileOutcome]:
    """Every complete file in one bank's inbox, in business-date order.

    A file that changed under us is left for the next run; an unexpected error on one
    file is logged and counted, and the others go on before the run fails.
    """
    try:
        listing = ctx.landing.list_inbox(bank_code)
    except OSError as exc:
        raise TransientError(f"cannot list {bank_code}/inbox: {exc}") from exc
    pairs = sorted(complete_files(listing), key=lambda p: processing_order(p[0].name))
    sweep_cleared(ctx, bank_code, listing)
    with ctx.engine.begin() as conn:
        sync_banks(conn, ctx.contracts.values())
    outcomes, failed = [], []
    for data, ok in pairs:
        try:
            outcome = process_file(ctx, bank_code, data, ok)
        except EntryChanged as exc:  # swapped or rewritten since the listing: not read
            log.warning("bank=%s: %s; left for the next run", bank_code, log_safe(exc))
            outcome = FileOutcome(data.name, bank_code, None, "changed_left_for_next_run")
        except _OUR_OUTAGE:
            raise
        except Exception as exc:
            log.exception(
                "bank=%s file=%s failed on our side (the attempt is counted; the bank's next files go on): %s",
                bank_code, log_safe(data.name), log_safe(exc),
            )
            failed.append(log_safe(data.name, 80))
            continue
        log.info("%s", outcome.log_line())
        outcomes.append(outcome)
    if not pairs:
        log.info("bank=%s: no complete files in the inbox", bank_code)
    if failed:
        raise FilesFailed(f"bank={bank_code}: {len(failed)} file(s) failed on our side: {', '.join(failed)}")
    return outcomes


def process_file(ctx: Context, bank_code: str, data: RemoteFile, ok: RemoteFile) -> FileOutcome:
    """One file: registered, loaded or refused, answered; or left to the run that has it."""
    reg = receive(ctx, bank_code, data)
    name = data.name
    if reg is None:
        return FileOutcome(name, bank_code, None, "taken_by_another_run")
    if reg.status == "duplicate":
        return answer_duplicate(ctx, bank_code, name, reg, ok)
    if reg.status in FINAL:  # loaded earlier, the answer never reached the outbox
        outcome = answer_if_stable(ctx, bank_code, data, ok, reg)
        outcome.loaded_now = False  # its rows were counted by the run that loaded them
        return outcome
    attempts = count_attempt(ctx, reg)
    if attempts >= ctx.max_attempts:
        try:
            set_aside(ctx, bank_code, name, reg, attempts)
        except ClaimedElsewhere:
            return FileOutcome(name, bank_code, None, "taken_by_another_run")
        return answer_if_stable(ctx, bank_code, data, ok, reg)
    ctx.warm_validator()
    try:
        ctx.hook("registered", name, 0)
        fname, expected_rows = check_envelope(ctx, bank_code, name, ok, reg)
        _load_file(ctx, fname, reg, expected_rows)
    except BankInputError as err:
        if err.reason_code == "OK_SHA256_MISMATCH" and not still_as_listed(ctx, data, ok):
            forget(ctx, reg)  # still being written: its final bytes are another file
            log.warning("bank=%s file=%s changed since it was listed; read again next run", bank_code, log_safe(name))
            return FileOutcome(name, bank_code, None, "changed_left_for_next_run")
        try:
            record_rejection(ctx, name, reg, err)
        except ClaimedElsewhere:
            return FileOutcome(name, bank_code, None, "taken_by_another_run")
    except ClaimedElsewhere:
        # a concurrent run loaded it first; that run answers the bank
        return FileOutcome(name, bank_code, None, "taken_by_another_run")
    except OperationalError as exc:  # locked, connection cut: the transaction rolled back
        raise TransientError(f"loading {bank_code}/{log_safe(name)} failed, will retry: {exc}") from exc
    return answer_if_stable(ctx, bank_code, data, ok, reg)


def _parse(ctx: Context, fname: FileName, path: Path, exact: bool = False) -> ParsedFile:
    feed = ctx.contracts[fname.bank_code].feeds[fname.dataset]
    if fname.fmt == "xlsx":
        return read_xlsx(path, chunk_rows=ctx.chunk_rows, max_decompressed=ctx.max_decompressed)
    read = read_delimited if exact or not ctx.fast_reader else read_delimited_fast
    return read(
        path, gzipped=fname.gzipped, delimiter=feed.delimiter, chunk_rows=ctx.chunk_rows,
        max_decompressed=ctx.max_decompressed,
    )


def _load_file(ctx: Context, fname: FileName, reg: Registered, expected_rows: int | None) -> None:
    """The file in one transaction: staged, checked, merged and recorded, or nothing.

    The columnar reader goes first; a file it cannot vouch for (a blank line, a quote
    across lines, bad bytes...) is read again from the start by the exact reader, whose
    messages name the line. Whatever the first attempt staged or inserted is discarded.
    """
    spec = spec_of(fname.dataset)
    with ctx.engine.begin() as conn:
        claim(conn, reg.file_id)
        attempt = None
        if conn.dialect.name == "postgresql":
            # the file-wide duplicate check groups every key: in memory, not spilled to disk
            conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            if spec.early_insert:
                # rows reach the target early: the bank's merge lock first, and a
                # savepoint to take them back if the file is read again
                lock_merge(conn, spec.target_table, [fname.bank_code])
                attempt = conn.begin_nested()
        try:
            _load_parsed(ctx, conn, spec, fname, reg, expected_rows, _parse(ctx, fname, reg.archive_path))
        except FastPathAborted as why:
            if attempt is not None:
                attempt.rollback()
            log.info("%s: read again by the exact reader (%s)", log_safe(fname.name), log_safe(why))
            exact = _parse(ctx, fname, reg.archive_path, exact=True)
            _load_parsed(ctx, conn, spec, fname, reg, expected_rows, exact)
        else:
            if attempt is not None:
                attempt.commit()  # RELEASE SAVEPOINT


def _load_parsed(
    ctx: Context, conn: Connection, spec: DatasetSpec, fname: FileName, reg: Registered,
    expected_rows: int | None, parsed: ParsedFile,
) -> None:
    """Check and stage chunk by chunk, then the whole-file rules, the merge and the record."""
    feed = ctx.contracts[fname.bank_code].feeds[fname.dataset]
    columns = resolve_columns(parsed.header, feed, fname.dataset)
    warnings = [
        "未识别的表头已忽略：" + " ".join(h.split())  # one line each
        for h in unknown_headers(parsed.header, feed, fname.dataset)
    ]
    constants = {"bank_code": fname.bank_code, "source_file": fname.name, "loaded_at": now()}
    pg = conn.dialect.name == "postgresql"
    staging = Staging(
        conn, spec, uuid.uuid4().hex[:12], constants, ctx.writer_factory(pg),
        ctx.early_insert if pg and spec.early_insert else None, ctx.hook,
    )
    checks = FileChecks(
        spec, lambda: ctx.validator, fname.name, {"file_date": fname.business_date.isoformat()},
        [ROW_RULES[rule](conn, fname.bank_code) for rule in spec.row_rules], keep=ctx.max_reject_rows,
    )

    masked = [0]  # ID- and mobile-shaped values masked in free text (normalise.py)

    def prepare(cells: CellChunk | RawChunk) -> NormalisedChunk:
        if isinstance(cells, RawChunk):
            cells = cells_from_raw(cells, len(parsed.header))
        chunk = normalise_cells(cells, columns, feed, fname.dataset)
        masked[0] += chunk.masked
        return chunk

    # a GX batch read ahead: GX and the early inserts do not wait for the reader
    reader = Prefetch(parsed.chunks, prepare, depth=max(1, ctx.gx_rows // ctx.chunk_rows))
    try:
        _check_and_stage(ctx, spec, fname, reader, checks, staging)
        staging.writer.wait()
        checks.add_malformed(parsed.malformed)
        checks.refuse_duplicates(conn, staging)
        checks.check_count(expected_rows)
        docs = checks.publish()
        checks.check_threshold(feed.reject_threshold, docs)
        older = MERGES[spec.merge](conn, staging.table, MergeInput(
            fname.bank_code, fname.name, fname.business_date, constants, frozenset(checks.refused),
        ))
        if older:  # docs/bank-files.md §12: a late file never rolls data back
            warnings.append(f"有 {older} 行早于已入库的较新数据（已报送业务日期更晚的文件），未覆盖较新的数据")
        ctx.hook("merged", fname.name, 0)
        if spec.snapshot and checks.refused:  # docs/bank-files.md §8: refused is not left out
            warnings.append(f"快照中有 {len(checks.refused)} 个编号的行被拒，对应网点保持原状（未撤销、未更新）")
    finally:
        reader.close()
        staging.close()
    counts = (checks.rows_total, checks.rows_loaded, checks.rows_rejected)
    if masked[0]:
        warnings.append(f"自由文本中发现疑似身份证号/手机号 {masked[0]} 处，已脱敏")
    record_loaded(conn, reg, fname.name, checks.issues, counts, warnings, docs, checks.omitted)


def _check_and_stage(
    ctx: Context, spec: DatasetSpec, fname: FileName, reader: Prefetch,
    checks: FileChecks, staging: Staging,
) -> None:
    """Chunks gathered into GX batches; each batch checked, its good rows staged.

    GX costs about the same per validation whatever its size, so several chunks go at once;
    once a file's issues pass what is kept in detail, pieces of at most that many rows: GX's
    result of a batch holds every failing row, and a file of bad rows is not worth the speed.
    """
    pending: list[NormalisedChunk] = []
    batch_rows = [min(ctx.chunk_rows, ctx.gx_rows)]  # one chunk first (GX starts early), doubling

    def flush(small: bool = False) -> None:
        batches = [[p] for c in pending for p in pieces(c, max(1, checks.keep))] if small else [pending]
        for batch in batches:
            for chunk, good in checks.check_batch(batch):
                rows = partial(staged_columns, spec, chunk, good, fname.bank_code, ctx.pseudonym_key)
                staging.submit(keys_of(chunk, spec.key_field), rows)  # rows built off the GX thread
                checks.rows_loaded += int(good.sum())
        staging.end_batch()
        pending.clear()
        batch_rows[0] = min(2 * batch_rows[0], ctx.gx_rows)

    for chunk in reader:
        if not len(chunk):
            continue
        checks.rows_total += len(chunk)
        pending.append(chunk)
        mostly_bad = bool(checks.omitted) or sum(len(c.issues) for c in pending) >= checks.keep
        if mostly_bad or sum(map(len, pending)) >= batch_rows[0]:
            flush(small=mostly_bad)
    if pending:
        flush()
