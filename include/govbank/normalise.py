"""Map a bank's headers to canonical fields and normalise values to warehouse types.

Type problems (a date that is not a date, a number that is not a number) are found
here, row by row; business rules are Great Expectations' job (``govbank.validate``).
Amounts become exact ``Decimal`` 元 whatever the contract's unit.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from govbank.contracts import AmountUnit, FeedContract
from govbank.datasets import FIELDS, Dataset
from govbank.errors import BankInputError
from govbank.read import RawChunk
from govbank.reasons import message
from govbank.reference import town_lookup

_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+|\d{1,3}(,\d{3})+)(\.\d+)?$")
_WAN = Decimal(10000)
_CENT = Decimal("0.01")
# what the warehouse columns hold: NUMERIC(18,2) amounts, INTEGER counts; a bigger
# value is the bank's error (a row issue), never a database error mid-load
MAX_YUAN = Decimal(10) ** 16
MAX_INT = 2**31 - 1


@dataclass(frozen=True)
class RowIssue:
    line: int
    field: str
    reason_code: str
    message: str
    value: str | None = None


@dataclass
class NormalisedChunk:
    lines: list[int]
    columns: dict[str, list]  # canonical field -> values (typed, None when empty)
    issues: list[RowIssue] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)


def resolve_columns(header: list[str], feed: FeedContract, dataset: Dataset) -> dict[str, int]:
    """Canonical field -> column index; a missing required header rejects the file."""
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        positions.setdefault(name, []).append(i)
    mapping = feed.header_map(dataset)
    out: dict[str, int] = {}
    missing: list[str] = []
    for f in FIELDS[dataset]:
        hits = positions.get(mapping[f.name], [])
        if len(hits) > 1:
            raise BankInputError("HEADER_DUPLICATE", f"表头“{mapping[f.name]}”出现了 {len(hits)} 次")
        if hits:
            out[f.name] = hits[0]
        elif f.required:
            missing.append(mapping[f.name])
    if missing:
        raise BankInputError("HEADER_MISSING", "缺少必填表头：" + "、".join(missing))
    return out


def unknown_headers(header: list[str], feed: FeedContract, dataset: Dataset) -> list[str]:
    known = set(feed.header_map(dataset).values())
    return [h for h in header if h and h not in known]


def parse_number(text: str) -> Decimal:
    """Plain decimals, optionally with correctly grouped thousands separators.

    Scientific notation is refused: it is how a spreadsheet mangles long numbers.
    """
    if not _PLAIN_NUMBER.match(text):
        raise ValueError(text)
    try:
        return Decimal(text.replace(",", ""))
    except InvalidOperation as exc:
        raise ValueError(text) from exc


def parse_date(text: str, formats: tuple[str, ...]) -> dt.date:
    for fmt in formats:
        try:
            parsed = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return parsed.date()
    raise ValueError(text)


def to_yuan(value: Decimal, unit: AmountUnit) -> Decimal:
    """Exact 元 with at most 2 decimals; anything finer is an error, never rounded away."""
    yuan = value * _WAN if unit is AmountUnit.WAN_YUAN else value
    if abs(yuan) >= MAX_YUAN:
        raise ValueError(f"{value} is beyond NUMERIC(18,2)")
    if yuan != yuan.quantize(_CENT):
        raise ValueError(f"{value} has more than 2 decimals in 元")
    return yuan.quantize(_CENT)


def normalise_chunk(
    chunk: RawChunk, columns: dict[str, int], feed: FeedContract, dataset: Dataset
) -> NormalisedChunk:
    out = NormalisedChunk(lines=list(chunk.lines), columns={})
    issues = out.issues
    towns = town_lookup()
    for f in FIELDS[dataset]:
        idx = columns.get(f.name)
        raw = [row[idx] for row in chunk.rows] if idx is not None else [None] * len(chunk)
        if f.kind in ("text", "enum"):
            if f.name == "town":
                out.columns["town_code"] = [towns.get(v) if v else None for v in raw]
            out.columns[f.name] = raw
            continue
        values: list = []
        for line, v in zip(chunk.lines, raw, strict=True):
            if v is None:
                values.append(None)
                continue
            try:
                if f.kind == "date":
                    values.append(parse_date(v, feed.date_formats))
                elif f.kind == "amount":
                    values.append(to_yuan(parse_number(v), feed.amount_unit))
                elif f.kind == "decimal":
                    values.append(parse_number(v))
                elif f.kind == "int":
                    n = parse_number(v)
                    if n != n.to_integral_value() or abs(n) > MAX_INT:
                        raise ValueError(v)
                    values.append(int(n))
                else:  # pragma: no cover - every kind is handled above
                    raise AssertionError(f.kind)
            except (ValueError, ArithmeticError):
                code = "INVALID_DATE" if f.kind == "date" else "INVALID_NUMBER"
                issues.append(RowIssue(line, f.name, code, message(code), v))
                values.append(None)
        out.columns[f.name] = values
    return out
