"""What a bank gets back: a JSON receipt and, when rows were rejected, a rejects CSV."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from govbank.domain.reasons import message

STATUS_ZH = {
    "accepted": "全部接收",
    "partially_accepted": "部分接收",
    "rejected": "拒收",
    "duplicate": "重复文件，未重复入库",
}
MAX_ERRORS_IN_RECEIPT = 200
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
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        counts = Counter(e.reason_code for e in self.errors)
        doc = {
            "spec": "政银合作数据报送规范 v1",
            **{k: v for k, v in asdict(self).items() if k != "errors"},
            "status_zh": STATUS_ZH[self.status],
            "error_summary": [
                {"reason_code": c, "message": message(c), "count": n}
                for c, n in counts.most_common()
            ],
            "errors": [asdict(e) for e in self.errors[:MAX_ERRORS_IN_RECEIPT]],
            "errors_truncated": len(self.errors) > MAX_ERRORS_IN_RECEIPT,
        }
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
