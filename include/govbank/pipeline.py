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
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from govbank.contracts import BankContract
from govbank.datasets import PERSONAL_FIELDS, Dataset
from govbank.discover import (
    FileName,
    complete_files,
    parse_file_name,
    parse_ok,
    processing_order,
)
from govbank.errors import BankInputError, TransientError
from govbank.load import known_outlets, merge_elicense_biz, merge_outlets, stage, sync_banks
from govbank.normalise import (
    NormalisedChunk,
    RowIssue,
    normalise_chunk,
    resolve_columns,
    unknown_headers,
)
from govbank.pseudonym import mask, pseudonymise
from govbank.read import ParsedFile, read_delimited, read_xlsx
from govbank.reasons import message
from govbank.receipts import Receipt, ReceiptError, rejects_csv
from govbank.schema import etl_file, etl_reject, stg_elicense_biz, stg_outlet
from govbank.transport import Landing, RemoteFile

log = logging.getLogger(__name__)
TZ = ZoneInfo("Asia/Shanghai")
LOADED = ("accepted", "partially_accepted")
FINAL = (*LOADED, "rejected")


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
    chunk_rows: int = 50_000
    max_decompressed: int | None = None  # None: govbank.read's default
    _validator: object | None = None

    @property
    def validator(self):  # type: ignore[no-untyped-def]
        if self._validator is None:
            self._validator = self.validator_factory()
        return self._validator


def now() -> dt.datetime:
    return dt.datetime.now(TZ)


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


def _parse(ctx: Context, fname: FileName, path: Path) -> ParsedFile:
    feed = ctx.contracts[fname.bank_code].feeds[fname.dataset]
    if fname.fmt == "xlsx":
        return read_xlsx(path, chunk_rows=ctx.chunk_rows, max_decompressed=ctx.max_decompressed)
    return read_delimited(
        path, gzipped=fname.gzipped, delimiter=feed.delimiter, chunk_rows=ctx.chunk_rows,
        max_decompressed=ctx.max_decompressed,
    )


def _load_file(
    ctx: Context, bank_code: str, fname: FileName, reg: _Registered, expected_rows: int | None
) -> None:
    contract = ctx.contracts[bank_code]
    feed = contract.feeds[fname.dataset]
    parsed = _parse(ctx, fname, reg.archive_path)
    columns = resolve_columns(parsed.header, feed, fname.dataset)
    warnings = [
        "未识别的表头已忽略：" + " ".join(h.split())  # one line each
        for h in unknown_headers(parsed.header, feed, fname.dataset)
    ]
    load_id = uuid.uuid4().hex
    issues: list[RowIssue] = []
    rows_total = 0
    rows_loaded = 0
    docs_page: str | None = None
    docs_show_failure = False
    seen_keys: set[str] = set()
    refused_outlets: set[str] = set()  # sent, but refused: not "left out" of the snapshot
    loaded_at = now()
    with ctx.engine.begin() as conn:
        _claim(conn, reg.file_id)
        outlets = known_outlets(conn, bank_code) if fname.dataset is Dataset.ELIC else set()
        for n, raw in enumerate(parsed.chunks):
            chunk = normalise_chunk(raw, columns, feed, fname.dataset)
            rows_total += len(chunk)
            outcome = ctx.validator.validate(
                fname.dataset.value,
                _frame(chunk, fname.dataset),
                run_name=f"{fname.name}#{n + 1}",
                params={"file_date": fname.business_date.isoformat()},
            )
            # link the first chunk that failed, else the first chunk
            if outcome.docs_page and (docs_page is None or (not outcome.success and not docs_show_failure)):
                docs_page, docs_show_failure = outcome.docs_page, not outcome.success
            chunk_issues = _merge_issues(chunk.issues, outcome.issues)
            chunk_issues += _cross_checks(chunk, fname.dataset, outlets, seen_keys)
            issues += chunk_issues
            bad = {i.line for i in chunk_issues}
            good = [i for i, line in enumerate(chunk.lines) if line not in bad]
            if fname.dataset is Dataset.OUTLET:
                codes = chunk.columns["outlet_code"]
                refused_outlets.update(
                    codes[i] for i, line in enumerate(chunk.lines) if line in bad and codes[i]
                )
            rows = _rows_for_load(ctx, chunk, good, fname, loaded_at)
            table = stg_outlet if fname.dataset is Dataset.OUTLET else stg_elicense_biz
            stage(conn, table, load_id, rows)
            rows_loaded += len(rows)
        for line, why in parsed.malformed:
            issues.append(RowIssue(line, "", "MALFORMED_ROW", f"{message('MALFORMED_ROW')}：{why}"))
        rows_total += len(parsed.malformed)
        rows_rejected = rows_total - rows_loaded
        if expected_rows is not None and expected_rows != rows_total:
            err = BankInputError(
                "OK_ROWS_MISMATCH", f"控制文件(.ok)声明 {expected_rows} 行，文件中有 {rows_total} 行"
            )
            err.rows_total = rows_total  # type: ignore[attr-defined]
            raise err
        # a header-only file is valid v1: no new records (ELIC) or no outlets (OUTLET)
        if rows_total and rows_rejected / rows_total > feed.reject_threshold:
            raise _TooManyInvalid(rows_total, issues, feed.reject_threshold, docs_page)
        if fname.dataset is Dataset.OUTLET:
            merge_outlets(
                conn, load_id, bank_code, fname.business_date, fname.name, keep=refused_outlets
            )
        else:
            merge_elicense_biz(conn, load_id)
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
        out.append(RowIssue(g.line, g.field, g.reason_code, g.message_zh))
    return out


def _cross_checks(
    chunk: NormalisedChunk, dataset: Dataset, outlets: set[str], seen_keys: set[str]
) -> list[RowIssue]:
    """What needs the warehouse or the whole file: known outlets, keys across chunks."""
    out = []
    key_field = "biz_id" if dataset is Dataset.ELIC else "outlet_code"
    keys = chunk.columns[key_field]
    counts = Counter(keys)
    for line, key in zip(chunk.lines, keys, strict=True):
        if key is None:
            continue
        if key in seen_keys and counts[key] == 1:
            out.append(RowIssue(line, key_field, "DUPLICATE_KEY", message("DUPLICATE_KEY"), key))
    seen_keys.update(k for k in keys if k is not None)
    if dataset is Dataset.ELIC:
        for line, code in zip(chunk.lines, chunk.columns["outlet_code"], strict=True):
            if code is not None and code not in outlets:
                out.append(RowIssue(line, "outlet_code", "UNKNOWN_OUTLET", message("UNKNOWN_OUTLET"), code))
    return out


def _frame(chunk: NormalisedChunk, dataset: Dataset):  # type: ignore[no-untyped-def]
    """The chunk as Great Expectations sees it: floats and datetimes, not Decimals."""
    import pandas as pd

    data: dict[str, object] = {"source_line": chunk.lines}
    for name, values in chunk.columns.items():
        if name == "legal_rep_name":
            continue
        if name in ("credit_amount", "drawn_amount", "longitude", "latitude", "service_items"):
            data[name] = pd.array([float(v) if v is not None else None for v in values], dtype="Float64").astype("float64")
        elif name in ("opened_on", "biz_date"):
            data[name] = pd.to_datetime(pd.Series(values, dtype="object"), errors="coerce")
        else:
            data[name] = pd.Series(values, dtype="object")
    return pd.DataFrame(data)


def _rows_for_load(
    ctx: Context, chunk: NormalisedChunk, good: list[int], fname: FileName, loaded_at: dt.datetime
) -> list[dict]:
    c = chunk.columns
    if fname.dataset is Dataset.OUTLET:
        names = (
            "outlet_code", "outlet_name", "outlet_type", "town_code", "community", "address",
            "longitude", "latitude", "service_items", "opened_on", "status",
        )
        return [{"bank_code": fname.bank_code, **{n: c[n][i] for n in names}} for i in good]
    rows = []
    for i in good:
        rows.append(
            {
                "bank_code": fname.bank_code,
                "biz_id": c["biz_id"][i],
                "biz_type": c["biz_type"][i],
                "uscc": c["uscc"][i],
                "enterprise_name": c["enterprise_name"][i],
                "outlet_code": c["outlet_code"][i],
                "biz_date": c["biz_date"][i],
                "credit_amount_yuan": c["credit_amount"][i],
                "drawn_amount_yuan": c["drawn_amount"][i],
                "loan_product": c["loan_product"][i],
                "status": c["status"][i],
                "legal_rep_key": pseudonymise(ctx.pseudonym_key, c["legal_rep_id"][i]),
                "source_file": fname.name,
                "source_line": chunk.lines[i],
                "loaded_at": loaded_at,
            }
        )
    return rows


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
        received_at=_iso(f.received_at),
        processed_at=_iso(f.processed_at),
        status=f.status,
        rows_total=f.rows_total,
        rows_loaded=f.rows_loaded,
        rows_rejected=f.rows_rejected,
        errors=errors,
        warnings=f.error.split("\n") if f.status in LOADED and f.error else [],
    )
    return receipt, errors


def _iso(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:  # SQLite hands back naive datetimes; we stored Asia/Shanghai
        value = value.replace(tzinfo=TZ)
    return value.astimezone(TZ).isoformat(timespec="seconds")


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

