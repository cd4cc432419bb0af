"""Map a bank's headers to canonical fields and normalise values to warehouse types.

Type problems (a date that is not a date, a number that is not a number) are found
here, row by row; business rules are Great Expectations' job (``govbank.validate.validator``).
Amounts become exact ``Decimal`` 元 whatever the contract's unit.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from govbank.config.contracts import AmountUnit, FeedContract
from govbank.domain.datasets import FIELDS, Dataset
from govbank.domain.errors import BankInputError
from govbank.domain.issues import RowIssue
from govbank.domain.reasons import message
from govbank.domain.reference import town_lookup
from govbank.ingest.read import CellChunk, RawChunk, cells_from_raw
from govbank.util.text import log_safe

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# ASCII digits only: ``\d`` would take full-width "１０００" and Arabic-Indic "١٢٣", which
# Decimal() then reads as numbers; dates refuse them, and so do numbers (bank-files.md §7)
_PLAIN_NUMBER = re.compile(r"[+-]?([0-9]+|[0-9]{1,3}(,[0-9]{3})+)(\.[0-9]+)?", re.ASCII)
_WAN = Decimal(10000)
_CENT = Decimal("0.01")
# what the warehouse columns hold: NUMERIC(18,2) amounts, INTEGER counts; a bigger
# value is the bank's error (a row issue), never a database error mid-load
MAX_YUAN = Decimal(10) ** 16
MAX_INT = 2**31 - 1
_DECIMAL_FIELDS = frozenset(
    f.name for fields in FIELDS.values() for f in fields if f.kind in ("amount", "decimal")
)
# 元 amounts that are already exact warehouse text: at most 16 integer digits, 2 decimals
_PLAIN_YUAN = r"^[0-9]{1,16}(\.[0-9]{1,2})?$"
# characters PostgreSQL refuses in text (a UTF-8 database holds every other code point):
# a cell with one is the bank's error, found here so the row never reaches COPY
_FORBIDDEN_CHARS = "\x00"
# what bank staff may type into free text that identifies a person: an 18-character
# resident ID (17 digits and a digit or X), a 15-digit old one, a mobile number (1[3-9]
# and 9 digits, perhaps +86 and grouped 3-4-4); half- or full-width digits, and only as a
# whole run of digits, so longer numbers (an account) and shorter ones stay as they are
_D = "[0-9０-９]"
_PERSONAL_NUMBER = (
    f"(^|[^0-9０-９])("
    f"{_D}{{17}}[0-9０-９XxＸｘ]|{_D}{{15}}"
    f"|(?:[+＋]?[8８][6６][- ]?)?[1１][3-9３-９]{_D}[- ]?{_D}{{4}}[- ]?{_D}{{4}}"
    f")([^0-9０-９]|$)"
)
MASKED_MARKER = "【已脱敏】"


@dataclass
class NormalisedChunk:
    """Canonical columns as Arrow arrays: text and enums ``string``, dates ``date32``,
    amounts and decimals the exact decimal text (``"1500000.00"``), counts ``int64``;
    null when empty or unparseable (then with a :class:`RowIssue`)."""

    lines: np.ndarray  # int64, the file line of each row
    columns: dict[str, pa.Array]
    issues: list[RowIssue] = field(default_factory=list)
    masked: int = 0  # ID- or mobile-shaped values masked in free text

    def __len__(self) -> int:
        return len(self.lines)

    def values(self, name: str) -> list:
        """One column as Python values (``Decimal`` for amounts): for tests and SQLite."""
        values = self.columns[name].to_pylist()
        if name in _DECIMAL_FIELDS:
            return [None if v is None else Decimal(v) for v in values]
        return values


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
    if not _PLAIN_NUMBER.fullmatch(text):
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


@functools.lru_cache(maxsize=1 << 14)
def _parse_date_cached(text: str, formats: tuple[str, ...]) -> dt.date:
    """:func:`parse_date` across chunks: a file's few hundred dates recur in every chunk."""
    return parse_date(text, formats)


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
    """Row-wise chunk (exact reader, xlsx) -> typed columns."""
    width = max(columns.values(), default=-1) + 1
    width = max(width, max((len(r) for r in chunk.rows), default=0))
    return normalise_cells(cells_from_raw(chunk, width), columns, feed, dataset)


def normalise_cells(
    chunk: CellChunk, columns: dict[str, int], feed: FeedContract, dataset: Dataset
) -> NormalisedChunk:
    """Typed canonical columns of a chunk, and a :class:`RowIssue` per unparseable cell.

    Each distinct cell text is parsed once by the row-wise rules above (``parse_date``,
    ``parse_number``, ``to_yuan``), so the columnar path means exactly what they mean; a
    file of a million rows has a few hundred distinct dates. Plain 元 amounts, the
    common case, are recognised by a regular expression instead, which accepts nothing
    the rules would not.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(chunk)
    out = NormalisedChunk(lines=chunk.lines, columns={})
    towns = town_lookup()
    for f in FIELDS[dataset]:
        idx = columns.get(f.name)
        raw = chunk.columns[idx] if idx is not None else pa.nulls(n, pa.string())
        if f.free_text:
            raw, found = mask_personal_numbers(raw)
            out.masked += found
        raw = _refuse_forbidden(raw, f.name, chunk.lines, out.issues)
        if f.kind in ("text", "enum"):
            if f.name == "town":
                out.columns["town_code"] = _by_distinct(raw, towns.get, pa.string(), None)[0]
            out.columns[f.name] = raw
            continue
        if f.kind == "date":
            formats = feed.date_formats
            typed, bad = _by_distinct(
                raw, lambda v, formats=formats: _parse_date_cached(v, formats), pa.date32(), ValueError
            )
        elif f.kind == "int":
            typed, bad = _by_distinct(raw, _parse_int, pa.int64(), ValueError)
        elif f.kind == "amount":
            unit = feed.amount_unit
            plain = (
                pc.fill_null(pc.match_substring_regex(raw, _PLAIN_YUAN), False)
                if unit is AmountUnit.YUAN
                else pa.repeat(False, n)
            )
            if pc.all(pc.or_(plain, raw.is_null())).as_py():
                typed, bad = raw, pa.repeat(False, n)
            else:
                rest = pc.if_else(plain, pa.scalar(None, pa.string()), raw)
                parsed, bad = _by_distinct(
                    rest, lambda v, unit=unit: str(to_yuan(parse_number(v), unit)), pa.string(), ValueError
                )
                typed = pc.if_else(plain, raw, parsed)
        elif f.kind == "decimal":
            typed, bad = _by_distinct(raw, lambda v: str(parse_number(v)), pa.string(), ValueError)
        else:  # pragma: no cover - every kind is handled above
            raise AssertionError(f.kind)
        out.columns[f.name] = typed
        if pc.any(bad).as_py():
            code = "INVALID_DATE" if f.kind == "date" else "INVALID_NUMBER"
            positions = pc.indices_nonzero(bad).to_pylist()
            cells = raw.take(pa.array(positions)).to_pylist()
            out.issues.extend(
                RowIssue(int(chunk.lines[i]), f.name, code, message(code), v)
                for i, v in zip(positions, cells, strict=True)
            )
    return out


def mask_personal_numbers(raw: pa.Array) -> tuple[pa.Array, int]:
    """``raw`` with every ID- or mobile-shaped number replaced by :data:`MASKED_MARKER`,
    and how many there were.

    Done before anything else sees the column, so neither the warehouse (``dim_outlet``,
    which the dashboard role reads), the Data Docs nor ``etl_reject`` ever holds them.
    A second pass takes the numbers whose left neighbour the first one consumed
    ("13800138000,13900139000"): RE2 has no look-around.
    """
    import pyarrow.compute as pc

    if not len(raw) or raw.null_count == len(raw):
        return raw, 0
    if not pc.any(pc.match_substring_regex(raw, _PERSONAL_NUMBER)).as_py():
        return raw, 0
    masked = raw
    for _ in range(2):
        masked = pc.replace_substring_regex(masked, _PERSONAL_NUMBER, rf"\1{MASKED_MARKER}\3")

    def markers(column: pa.Array) -> int:
        return pc.sum(pc.count_substring(column, MASKED_MARKER)).as_py() or 0

    return masked, markers(masked) - markers(raw)


def _refuse_forbidden(
    raw: pa.Array, field_name: str, lines: np.ndarray, issues: list[RowIssue]
) -> pa.Array:
    """``raw`` with cells holding a forbidden character nulled, one issue for each.

    The value kept in the issue is escaped (``\\x00``): it is stored in ``etl_reject``
    and the rejects file, which would refuse or hide the character itself.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(raw) or raw.null_count == len(raw) or not _may_hold(raw, _FORBIDDEN_CHARS):
        return raw
    bad = pc.fill_null(pc.match_substring_regex(raw, f"[{_FORBIDDEN_CHARS}]"), False)
    if not pc.any(bad).as_py():
        return raw
    positions = pc.indices_nonzero(bad).to_pylist()
    cells = raw.take(pa.array(positions)).to_pylist()
    issues.extend(
        RowIssue(int(lines[i]), field_name, "INVALID_CHARACTER", message("INVALID_CHARACTER"), log_safe(v, 64))
        for i, v in zip(positions, cells, strict=True)
    )
    return pc.if_else(bad, pa.scalar(None, pa.string()), raw)


def _may_hold(raw: pa.Array, chars: str) -> bool:
    """Whether any of the (ASCII) ``chars`` occurs in the bytes behind ``raw``.

    One vectorised pass over the column's data buffer where a regex visits every cell:
    almost every column holds none. False only when none can be there (a buffer shared
    with cells outside ``raw`` can only make it say True).
    """
    import numpy as np
    import pyarrow as pa

    if isinstance(raw, pa.ChunkedArray) or not pa.types.is_string(raw.type):
        return True
    data = raw.buffers()[2]
    if data is None:
        return False
    octets = np.frombuffer(data, dtype=np.uint8)
    return any(bool((octets == ord(c)).any()) for c in chars)


def _parse_int(text: str) -> int:
    n = parse_number(text)
    if n != n.to_integral_value() or abs(n) > MAX_INT:
        raise ValueError(text)
    return int(n)


def _by_distinct(
    raw: pa.Array, parse: Callable[[str], object], typ: pa.DataType,
    errors: type[Exception] | None,
) -> tuple[pa.Array, pa.Array]:
    """``parse`` applied once per distinct value; the typed column and where it failed.

    With ``errors=None`` a ``None`` result is simply null (a lookup), never a failure.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(raw)
    values: list[object] = []
    failed: list[bool] = []
    for text in encoded.dictionary.to_pylist():
        try:
            values.append(parse(text))
            failed.append(False)
        except (ValueError, ArithmeticError):
            if errors is None:
                raise
            values.append(None)
            failed.append(True)
    indices = encoded.indices
    typed = pa.array(values, typ).take(indices)
    bad = pc.fill_null(pa.array(failed, pa.bool_()).take(indices), False)
    return typed, bad
