"""What a bank gets back, and what ``etl_file`` / ``etl_reject`` record for it.

A JSON receipt and, when rows were rejected, a rejects CSV go to the bank's outbox; the
receipt is rebuilt from the warehouse, so a run that died before answering answers the
same. Personal values are masked before a reject row is stored.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from sqlalchemy import Connection, insert, select, update

from govbank.domain.datasets import PERSONAL_FIELDS
from govbank.domain.errors import BankInputError, FileRejected
from govbank.domain.issues import RowIssue
from govbank.domain.pseudonym import mask
from govbank.domain.reasons import REPLAY_MESSAGE, message
from govbank.domain.statuses import LOADED
from govbank.ingest.context import Context
from govbank.ingest.discover import bounded_name
from govbank.ingest.intake import Registered, claim, still_as_listed, still_in_inbox
from govbank.transport import RemoteFile
from govbank.util.clock import iso, now
from govbank.util.text import log_safe
from govbank.warehouse.schema import etl_file, etl_reject

log = logging.getLogger(__name__)

STATUS_ZH = {
    "accepted": "全部接收",
    "partially_accepted": "部分接收",
    "rejected": "拒收",
    "duplicate": "重复文件，未重复入库",
}
MAX_ERRORS_IN_RECEIPT = 200
_REJECT_BATCH = 5_000  # etl_reject rows per INSERT: the statement's parameters stay small
# what makes Excel (or LibreOffice) read a CSV cell as a formula, full-width forms too
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


@dataclass
class ReceiptError:
    reason_code: str
    message: str
    line: int | None = None
    field: str | None = None
    value: str | None = None


@dataclass
class Receipt:
    file_name: str
    bank_code: str
    dataset: str | None
    business_date: str | None
    sha256: str
    size_bytes: int
    received_at: str
    processed_at: str
    status: str
    rows_total: int
    rows_loaded: int
    rows_rejected: int
    errors: list[ReceiptError] = field(default_factory=list)
    duplicate_of: dict | None = None
    replay_of: dict | None = None  # an operator's replay: the earlier outcome it replaces
    warnings: list[str] = field(default_factory=list)
    # reason -> issues counted but not listed (past GOVBANK_MAX_REJECT_ROWS)
    errors_omitted: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> bytes:
        counts = Counter(e.reason_code for e in self.errors) + Counter(self.errors_omitted)
        omitted = sum(self.errors_omitted.values())
        doc = {
            "spec": "政银合作数据报送规范 v1",
            **{k: v for k, v in asdict(self).items() if k not in ("errors", "errors_omitted")},
            "status_zh": STATUS_ZH[self.status],
            "error_summary": [
                {"reason_code": c, "message": message(c), "count": n}
                for c, n in counts.most_common()
            ],
            "errors": [asdict(e) for e in self.errors[:MAX_ERRORS_IN_RECEIPT]],
            "errors_truncated": len(self.errors) > MAX_ERRORS_IN_RECEIPT or omitted > 0,
        }
        if omitted:
            doc["errors_not_listed"] = omitted
            doc["errors_not_listed_zh"] = f"另有 {omitted} 处问题只计数（见 error_summary），未逐条列出"
        return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")


def excel_safe(value: object) -> str:
    """A cell Excel shows as text instead of running it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def rejects_csv(file_name: str, errors: Iterable[ReceiptError]) -> bytes:
    """UTF-8 with BOM so Excel opens the Chinese text; every cell formula-proof."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["文件名", "行号", "字段", "原因代码", "说明", "原值"])
    for e in errors:
        writer.writerow(
            [excel_safe(v) for v in (file_name, e.line or "", e.field or "", e.reason_code, e.message, e.value)]
        )
    return "\ufeff".encode() + buf.getvalue().encode("utf-8")


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
    loaded_now: bool = True  # False: loaded by an earlier run, only answered by this one

    def log_line(self) -> str:
        reasons = "；".join(f"{c}（{message(c)}）×{n}" for c, n in self.top_reasons) or "无"
        return (
            f"bank={self.bank_code} dataset={self.dataset or '-'} file={log_safe(self.file_name)} "
            f"status={self.status} rows_in={self.rows_total} loaded={self.rows_loaded} "
            f"rejected={self.rows_rejected} top_reasons: {reasons}"
        )


def _masked(issue: RowIssue) -> str | None:
    return mask(issue.value) if issue.field in PERSONAL_FIELDS else issue.value


def omitted_message(code: str, n: int) -> str:
    return f"{message(code)}（另有 {n} 处同类问题只计数、未逐条列出）"


def write_rejects(
    conn: Connection, reg: Registered, file_name: str, issues: Sequence[RowIssue],
    omitted: Mapping[str, int] | None = None,
) -> None:
    """The issues held in detail, in batches; one summary row per reason for the rest."""
    ordered = sorted(issues, key=lambda i: (i.line, i.field))
    for start in range(0, len(ordered), _REJECT_BATCH):
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
                for i in ordered[start : start + _REJECT_BATCH]
            ],
        )
    if omitted:
        conn.execute(
            insert(etl_reject),
            [
                {
                    "file_id": reg.file_id, "file_name": file_name, "sha256": reg.sha256, "line": None,
                    "field": None, "reason_code": code, "message": omitted_message(code, n), "occurrences": n,
                }
                for code, n in sorted(omitted.items())
            ],
        )


def record_loaded(
    conn: Connection, reg: Registered, file_name: str, issues: Sequence[RowIssue],
    counts: tuple[int, int, int], warnings: Sequence[str], docs: str | None,
    omitted: Mapping[str, int] | None = None,
) -> None:
    """A file loaded, in its transaction: its rejected rows and its ``etl_file`` row."""
    rows_total, rows_loaded, rows_rejected = counts
    write_rejects(conn, reg, file_name, issues, omitted)
    conn.execute(
        update(etl_file)
        .where(etl_file.c.file_id == reg.file_id)
        .values(
            status="accepted" if rows_rejected == 0 else "partially_accepted",
            processed_at=now(),
            rows_total=rows_total,
            rows_loaded=rows_loaded,
            rows_rejected=rows_rejected,
            error="\n".join(warnings) or None,
            data_docs=docs,
        )
    )


def record_rejection(ctx: Context, name: str, reg: Registered, err: BankInputError) -> None:
    """A whole file refused: nothing loaded, every row counted as rejected."""
    rejected = err if isinstance(err, FileRejected) else FileRejected(err.reason_code, err.message_zh)
    with ctx.engine.begin() as conn:
        claim(conn, reg.file_id)
        write_rejects(conn, reg, name, rejected.issues, getattr(rejected, "omitted", None))
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
                rows_total=rejected.rows_total,
                rows_loaded=0,
                rows_rejected=rejected.rows_total,
                error=f"{err.reason_code}: {err.message_zh}",
                data_docs=rejected.data_docs,
            )
        )


def receipt_for(conn: Connection, file_id: int) -> tuple[Receipt, list[ReceiptError]]:
    """The receipt as the warehouse records the file: the same whichever run answers."""
    f = conn.execute(select(etl_file).where(etl_file.c.file_id == file_id)).one()
    errors, omitted = [], {}
    for r in conn.execute(
        select(etl_reject)
        .where(etl_reject.c.file_id == file_id)
        .order_by(etl_reject.c.line.is_not(None), etl_reject.c.line, etl_reject.c.reject_id)
    ):
        if r.occurrences is not None:  # a summary: in the rejects file, counted in the receipt
            omitted[r.reason_code] = omitted.get(r.reason_code, 0) + r.occurrences
        errors.append(ReceiptError(r.reason_code, r.message, r.line, r.field, r.value))
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
        errors_omitted=omitted,
    )
    if f.replay_of is not None:
        earlier = conn.execute(select(etl_file).where(etl_file.c.file_id == f.replay_of)).one()
        receipt.replay_of = {
            "file_name": earlier.file_name,
            "status": earlier.status,
            "processed_at": iso(earlier.processed_at),
            "rows_loaded": earlier.rows_loaded,
            "message": REPLAY_MESSAGE,
        }
    if omitted:  # the receipt lists issues; the summaries are counted, not listed
        receipt.errors = [e for e in errors if e.line is not None or e.reason_code not in omitted]
    return receipt, errors


def _answered(ctx: Context, file_id: int) -> None:
    with ctx.engine.begin() as conn:
        conn.execute(update(etl_file).where(etl_file.c.file_id == file_id).values(answered_at=now()))


def answer(ctx: Context, bank_code: str, name: str, file_id: int, ok: RemoteFile) -> FileOutcome:
    with ctx.engine.connect() as conn:
        receipt, errors = receipt_for(conn, file_id)
        docs = conn.execute(select(etl_file.c.data_docs).where(etl_file.c.file_id == file_id)).scalar_one()
    deliver(ctx, bank_code, name, receipt, errors, ok, file_id)
    counts = Counter(e.reason_code for e in receipt.errors) + Counter(receipt.errors_omitted)
    return FileOutcome(
        name, bank_code, receipt.dataset, receipt.status, receipt.rows_total,
        receipt.rows_loaded, receipt.rows_rejected, counts.most_common(3), docs,
    )


def answer_duplicate(ctx: Context, bank_code: str, name: str, reg: Registered, ok: RemoteFile) -> FileOutcome:
    if not still_in_inbox(ctx, bank_code, name):
        # a concurrent run answered this very upload: do not overwrite its receipt
        _answered(ctx, reg.file_id)
        return FileOutcome(name, bank_code, None, "taken_by_another_run")
    with ctx.engine.connect() as conn:
        receipt, _ = receipt_for(conn, reg.file_id)
        dup = conn.execute(select(etl_file.c.duplicate_of).where(etl_file.c.file_id == reg.file_id)).scalar_one()
        original, _ = receipt_for(conn, dup)
    receipt.duplicate_of = {
        "file_name": original.file_name,
        "status": original.status,
        "processed_at": original.processed_at,
        "rows_loaded": original.rows_loaded,
    }
    deliver(ctx, bank_code, name, receipt, [], ok, reg.file_id)
    return FileOutcome(name, bank_code, receipt.dataset, "duplicate")


def deliver(
    ctx: Context, bank_code: str, name: str, receipt: Receipt, errors: list[ReceiptError], ok: RemoteFile,
    file_id: int,
) -> None:
    """Receipt first, then the inbox is cleared: a crash in between re-answers, never loses.

    The ``.ok`` goes first, then ``answered_at`` is recorded, then the data file: killed
    after the ``.ok`` went, the data file left behind is incomplete to every later
    listing, so a new upload under its name is read only once its own ``.ok`` arrives.
    """
    out = bounded_name(name)  # a path component built from a name the bank chose
    if errors:
        ctx.landing.write_outbox(bank_code, f"{out}.rejects.csv", rejects_csv(name, errors))
    ctx.landing.write_outbox(bank_code, f"{out}.receipt.json", receipt.to_json())
    ctx.landing.remove_inbox(bank_code, [ok.name])
    _answered(ctx, file_id)
    ctx.landing.remove_inbox(bank_code, [name])


def set_aside(ctx: Context, bank_code: str, name: str, reg: Registered, attempts: int) -> None:
    """A poison file: refused, kept in the archive, operators told."""
    record_rejection(ctx, name, reg, BankInputError("POISON_FILE", message("POISON_FILE"), f"{attempts} attempts"))
    ctx.alert(
        f"【govbank 告警】银行 {bank_code} 的文件 {log_safe(name, 160)} 已处理失败 {attempts} 次（我方原因），"
        f"已作为问题文件搁置并回执拒收（POISON_FILE）。\n"
        f"存档：{log_safe(reg.archive_path.name, 200)}（sha256 {reg.sha256}）；请查明原因后重放。"
    )


def answer_if_stable(ctx: Context, bank_code: str, data: RemoteFile, ok: RemoteFile, reg: Registered) -> FileOutcome:
    """Answer and clear, unless the file changed since it was listed: then it stays in the
    inbox and the next run reads it again, once stable (its new bytes are a new file)."""
    if not still_as_listed(ctx, data, ok):
        log.warning(
            "bank=%s file=%s changed since it was listed; not cleared, read again next run",
            bank_code, log_safe(data.name),
        )
        return FileOutcome(data.name, bank_code, None, "changed_left_for_next_run")
    return answer(ctx, bank_code, data.name, reg.file_id, ok)
