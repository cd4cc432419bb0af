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

import hashlib
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from govbank.domain.datasets import DatasetSpec, spec_of
from govbank.domain.errors import BankInputError, GovbankError, TransientError
from govbank.domain.reasons import message
from govbank.domain.statuses import FINAL
from govbank.ingest.answer import (
    FileOutcome,
    answer,
    answer_duplicate,
    record_loaded,
    record_rejection,
)
from govbank.ingest.checks import ROW_RULES, FileChecks
from govbank.ingest.context import Context
from govbank.ingest.discover import OK_SUFFIX, FileName, complete_files, processing_order
from govbank.ingest.intake import ClaimedElsewhere, Registered, check_envelope, claim, receive
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
from govbank.warehouse.schema import etl_file

if TYPE_CHECKING:
    from collections.abc import Iterator

    from govbank.ingest.read import CellChunk

__all__ = ["Context", "FileOutcome", "FilesFailed", "process_bank", "process_file"]

log = logging.getLogger(__name__)

# what says the database or the network is down, not this file: the whole task retries
_OUR_OUTAGE = (TransientError, OperationalError, InterfaceError)


class FilesFailed(GovbankError):
    """Files of a bank failed on our side; its other files were processed (the task fails)."""


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


def sweep_cleared(ctx: Context, bank_code: str, listing: list[RemoteFile]) -> None:
    """Data files left behind by a clearing cut short (their ``.ok`` went, they did not):
    removed when their bytes are those of an answered file of that name. Anything else
    without a ``.ok`` is an upload under way and is left alone."""
    names = {f.name for f in listing}
    alone = [f for f in listing if not f.name.startswith(".") and not f.name.endswith(OK_SUFFIX)
             and f.name + OK_SUFFIX not in names]
    if not alone:
        return
    with ctx.engine.connect() as conn:
        answered = {(r.file_name, r.sha256, r.size_bytes) for r in conn.execute(
            select(etl_file.c.file_name, etl_file.c.sha256, etl_file.c.size_bytes).where(
                etl_file.c.bank_code == bank_code, etl_file.c.answered_at.is_not(None),
                etl_file.c.file_name.in_([f.name for f in alone]),
            )
        )}
    for f in alone:
        if not any(name == f.name and size == f.size for name, _, size in answered):
            continue
        tmp = ctx.archive_dir / ".incoming" / f"{uuid.uuid4().hex}.sweep"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            ctx.landing.fetch(bank_code, f.name, tmp, f.size)
            sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
        except (OSError, TransientError):
            continue  # changing or gone: a later run looks again
        finally:
            tmp.unlink(missing_ok=True)
        if (f.name, sha, f.size) in answered:
            log.info("bank=%s: %s was answered; its clearing was cut short, removed now", bank_code, log_safe(f.name))
            ctx.landing.remove_inbox(bank_code, [f.name])


def count_attempt(ctx: Context, reg: Registered) -> int:
    """How many loads of the file began before; this one is counted in its own committed
    transaction (a load killed by the kernel, out of memory, counts too). A file about
    to be set aside is not counted again."""
    with ctx.engine.begin() as conn:
        before = conn.execute(select(etl_file.c.attempts).where(etl_file.c.file_id == reg.file_id)).scalar_one()
        if before < ctx.max_attempts:
            conn.execute(update(etl_file).where(etl_file.c.file_id == reg.file_id).values(attempts=before + 1))
    return int(before)


def still_as_listed(ctx: Context, data: RemoteFile, ok: RemoteFile) -> bool:
    """Whether the file and its ``.ok`` are what the listing showed (size and mtime)."""
    now_listed = {f.name: (f.size, f.mtime) for f in ctx.landing.list_inbox(data.bank_code)}
    return all(now_listed.get(f.name) == (f.size, f.mtime) for f in (data, ok))


def _set_aside(ctx: Context, bank_code: str, name: str, reg: Registered, attempts: int) -> None:
    """A poison file: refused, kept in the archive, operators told."""
    record_rejection(ctx, name, reg, BankInputError("POISON_FILE", message("POISON_FILE"), f"{attempts} attempts"))
    ctx.alert(
        f"【govbank 告警】银行 {bank_code} 的文件 {log_safe(name, 160)} 已处理失败 {attempts} 次（我方原因），"
        f"已作为问题文件搁置并回执拒收（POISON_FILE）。\n"
        f"存档：{log_safe(reg.archive_path.name, 200)}（sha256 {reg.sha256}）；请查明原因后重放。"
    )


def process_file(ctx: Context, bank_code: str, data: RemoteFile, ok: RemoteFile) -> FileOutcome:
    """One file: registered, loaded or refused, answered; or left to the run that has it."""
    reg = receive(ctx, bank_code, data)
    name = data.name
    if reg is None:
        return FileOutcome(name, bank_code, None, "taken_by_another_run")
    if reg.status == "duplicate":
        return answer_duplicate(ctx, bank_code, name, reg, ok)
    if reg.status in FINAL:  # loaded earlier, the answer never reached the outbox
        outcome = _answer_if_stable(ctx, bank_code, data, ok, reg)
        outcome.loaded_now = False  # its rows were counted by the run that loaded them
        return outcome
    attempts = count_attempt(ctx, reg)
    if attempts >= ctx.max_attempts:
        try:
            _set_aside(ctx, bank_code, name, reg, attempts)
        except ClaimedElsewhere:
            return FileOutcome(name, bank_code, None, "taken_by_another_run")
        return _answer_if_stable(ctx, bank_code, data, ok, reg)
    ctx.warm_validator()
    try:
        ctx.hook("registered", name, 0)
        fname, expected_rows = check_envelope(ctx, bank_code, name, ok, reg)
        _load_file(ctx, fname, reg, expected_rows)
    except BankInputError as err:
        if err.reason_code == "OK_SHA256_MISMATCH" and not still_as_listed(ctx, data, ok):
            _forget(ctx, reg)  # still being written: its final bytes are another file
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
    return _answer_if_stable(ctx, bank_code, data, ok, reg)


def _answer_if_stable(ctx: Context, bank_code: str, data: RemoteFile, ok: RemoteFile, reg: Registered) -> FileOutcome:
    """Answer and clear, unless the file changed since it was listed: then it stays in the
    inbox and the next run reads it again, once stable (its new bytes are a new file)."""
    if not still_as_listed(ctx, data, ok):
        log.warning(
            "bank=%s file=%s changed since it was listed; not cleared, read again next run",
            bank_code, log_safe(data.name),
        )
        return FileOutcome(data.name, bank_code, None, "changed_left_for_next_run")
    return answer(ctx, bank_code, data.name, reg.file_id, ok)


def _forget(ctx: Context, reg: Registered) -> None:
    """Drop the registration of bytes that were a snapshot of a file still being written."""
    with ctx.engine.begin() as conn:
        conn.execute(delete(etl_file).where(etl_file.c.file_id == reg.file_id, etl_file.c.status == "processing"))


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

    def flush(small: bool = False) -> None:
        batches = [[p] for c in pending for p in _pieces(c, max(1, checks.keep))] if small else [pending]
        for batch in batches:
            for chunk, good in checks.check_batch(batch):
                data = staged_columns(spec, chunk, good, fname.bank_code, ctx.pseudonym_key)
                staging.submit(keys_of(chunk, spec.key_field), data)
                checks.rows_loaded += len(data)
        staging.end_batch()
        pending.clear()

    for chunk in reader:
        if not len(chunk):
            continue
        checks.rows_total += len(chunk)
        pending.append(chunk)
        mostly_bad = bool(checks.omitted) or sum(len(c.issues) for c in pending) >= checks.keep
        if mostly_bad or sum(map(len, pending)) >= ctx.gx_rows:
            flush(small=mostly_bad)
    if pending:
        flush()


def _pieces(chunk: NormalisedChunk, rows: int) -> Iterator[NormalisedChunk]:
    """``chunk`` in pieces of at most ``rows`` rows, each with its own issues."""
    if len(chunk) <= rows:
        yield chunk
        return
    for start in range(0, len(chunk), rows):
        lines = chunk.lines[start : start + rows]
        first, last = int(lines[0]), int(lines[-1])
        yield NormalisedChunk(
            lines,
            {name: col.slice(start, len(lines)) for name, col in chunk.columns.items()},
            [i for i in chunk.issues if first <= i.line <= last],
        )
