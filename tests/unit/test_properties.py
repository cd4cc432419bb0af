"""Issue 8, property-based: whatever bytes a bank sends, reading gives rows or a typed
``BankInputError``, never another exception; what a bank may legitimately write reads
back exactly; names, control files and the rejects CSV hold for any input.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from govbank.config.contracts import AmountUnit, FeedContract
from govbank.domain.datasets import FIELDS, Dataset, field_names
from govbank.domain.errors import BankInputError
from govbank.ingest.answer import ReceiptError, excel_safe, rejects_csv
from govbank.ingest.discover import parse_file_name, parse_ok
from govbank.ingest.normalise import (
    mask_personal_numbers,
    normalise_chunk,
    parse_date,
    parse_number,
    to_yuan,
)
from govbank.ingest.read import (
    FastPathAborted,
    RawChunk,
    read_delimited,
    read_delimited_fast,
)
from govbank.ingest.xlsx import read_xlsx
from govbank.util.text import log_safe
from tests.corpus import xlsx

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILE_REASONS = {
    "EMPTY_FILE", "UNREADABLE", "FILE_TOO_LARGE", "DELIMITER_MISMATCH",
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("props")


def _drain(parsed) -> list[tuple[int, list]]:  # type: ignore[no-untyped-def]
    out = []
    for chunk in parsed.chunks:
        assert len(chunk.lines) == len(chunk.rows)
        for line, row in zip(chunk.lines, chunk.rows, strict=True):
            assert len(row) == len(parsed.header)
            assert all(c is None or (isinstance(c, str) and c == c.strip(" \u3000")) for c in row)
            out.append((line, row))
    lines = [line for line, _ in out]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    return out


def _read_or_refuse(path: Path, **kw: object) -> list | None:
    try:
        parsed = read_delimited(path, chunk_rows=7, **kw)  # type: ignore[arg-type]
        return _drain(parsed)
    except BankInputError as err:
        assert err.reason_code in FILE_REASONS, err.reason_code
        assert err.message_zh
        return None


# bytes that look a little like bank files: delimiters, quotes, newlines, BOMs, CJK in
# both encodings, invalid bytes
_PIECES = st.sampled_from([
    b",", b"|", b";", b"\t", b'"', b"\r\n", b"\n", b"\r", b"\xef\xbb\xbf", b" ", b"\x00",
    "业务流水号".encode(), "温州".encode("gb18030"), b"\xff", b"\x80", b"\xe4\xb8", b"A1", b"2023-06-01",
])
BANKISH = st.lists(st.one_of(_PIECES, st.binary(max_size=6)), max_size=40).map(b"".join)


@FAST
@given(data=st.one_of(st.binary(max_size=300), BANKISH), delimiter=st.sampled_from([",", "|", "auto"]))
@example(data=b'a|b\n"x', delimiter="|")
@example(data=b"\xef\xbb\xbf", delimiter="auto")
def test_any_bytes_read_or_refuse(scratch: Path, data: bytes, delimiter: str) -> None:
    path = scratch / "any.txt"
    path.write_bytes(data)
    _read_or_refuse(path, gzipped=False, delimiter=delimiter)


@FAST
@given(data=st.one_of(st.binary(max_size=200), BANKISH.map(gzip.compress)), cut=st.integers(0, 400))
def test_any_gzip_read_or_refuse(scratch: Path, data: bytes, cut: int) -> None:
    """Random bytes, real gzip streams and gzip streams cut anywhere."""
    path = scratch / "any.csv.gz"
    path.write_bytes(data[: cut or None])
    _read_or_refuse(path, gzipped=True, delimiter="auto")


_CELL = st.text(
    alphabet=st.characters(
        # no lone CR: Python's csv.writer leaves it unquoted with a "\n" line end, which
        # RFC 4180 does not allow, so such a file is not one a bank may write
        codec="utf-8", categories=["L", "N", "P", "S", "Zs"], include_characters=",|\"\n'=",
        exclude_characters="\ufeff\u3000\u00a0",
    ),
    max_size=12,
)
_HEADER_CELL = st.text(alphabet="业务流水号企业名称状态金额日期网点ABCxyz", min_size=1, max_size=6)


@FAST
@given(
    header=st.lists(_HEADER_CELL, min_size=2, max_size=5, unique=True),
    body=st.lists(st.lists(_CELL, min_size=5, max_size=5), max_size=8),
    delimiter=st.sampled_from([",", "|"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    gzipped=st.booleans(),
)
def test_what_a_bank_may_write_reads_back(
    scratch: Path, header: list[str], body: list[list[str]], delimiter: str, encoding: str,
    newline: str, gzipped: bool,
) -> None:
    """RFC 4180 files in an allowed encoding and delimiter read back cell for cell."""
    width = len(header)
    rows = [r[:width] for r in body]
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    data = buf.getvalue().encode(encoding)
    path = scratch / ("rt.csv.gz" if gzipped else "rt.csv")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    got = _read_or_refuse(path, gzipped=gzipped, delimiter=delimiter)
    assert got is not None

    def clean(c: str) -> str | None:
        return c.strip(" \t\r\n\u3000\u00a0\ufeff") or None

    want = [[clean(c) for c in r] for r in rows if any(clean(c) for c in r)]
    assert [row for _, row in got] == want


def _exact_or_refusal(path: Path, **kw: object) -> list | str:
    try:
        return _drain(read_delimited(path, chunk_rows=3, **kw))  # type: ignore[arg-type]
    except BankInputError as err:
        return err.reason_code


def _fast_or_refusal(path: Path, **kw: object) -> list | str | None:
    """The columnar reader's rows, its refusal, or None when it hands over to the exact one."""
    try:
        parsed = read_delimited_fast(path, chunk_rows=3, **kw)  # type: ignore[arg-type]
        out = []
        for chunk in parsed.chunks:
            cols = [c.to_pylist() for c in chunk.columns]
            assert all(len(c) == len(chunk.lines) for c in cols)
            out += [(int(line), list(row)) for line, row in zip(chunk.lines, zip(*cols, strict=True), strict=True)]
        return out
    except FastPathAborted:
        return None
    except BankInputError as err:
        return err.reason_code


_ROWISH = st.lists(
    st.lists(st.sampled_from(["A1", "温州", " x ", "", "\u3000", '"q|u,o"', '"a""b"', 'b"c', "2023-06-01", "|", ","]),
             min_size=1, max_size=4).map("".join),
    min_size=3, max_size=3,
)


@FAST
@given(
    rows=st.lists(st.one_of(_ROWISH.map("|".join), st.sampled_from(["", " | | ", "a|b", "a|b|c|d", '"x\ny"|b|c'])), max_size=9),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    gzipped=st.booleans(),
    tail=st.booleans(),
    junk=st.one_of(st.just(b""), st.sampled_from([b"\xff", b"\x81\x20", b"\r"])),
)
def test_columnar_reader_agrees_with_the_exact_reader(
    scratch: Path, rows: list[str], encoding: str, newline: str, gzipped: bool, tail: bool, junk: bytes,
) -> None:
    """Where the columnar reader answers at all, it answers exactly what the exact one does."""
    data = newline.join(["业务流水号|企业名称|状态", *rows]).encode(encoding) + (newline.encode() if tail else b"") + junk
    path = scratch / ("eq.txt.gz" if gzipped else "eq.txt")
    path.write_bytes(gzip.compress(data) if gzipped else data)
    fast = _fast_or_refusal(path, gzipped=gzipped, delimiter="|")
    if fast is not None:
        assert fast == _exact_or_refusal(path, gzipped=gzipped, delimiter="|")


def test_columnar_reader_takes_plain_files_and_hands_over_the_rest(scratch: Path) -> None:
    plain = scratch / "plain.txt"
    plain.write_bytes('业务流水号|企业名称\r\nB1|"温州|瓯海"\r\nB2| 　x \r\n | \r\nB4|y'.encode("gb18030"))
    assert _fast_or_refusal(plain, gzipped=False, delimiter="|") == [
        (2, ["B1", "温州|瓯海"]), (3, ["B2", "x"]), (5, ["B4", "y"]),
    ]
    for body in ('B1|"x\ny"\n', "B1|x\rB2|y\n", "B1|x|z\n", 'B1|"x"y\n'):
        odd = scratch / "odd.txt"
        odd.write_bytes(f"业务流水号|企业名称\n{body}".encode())
        assert _fast_or_refusal(odd, gzipped=False, delimiter="|") is None, body


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=400), flips=st.lists(st.tuples(st.integers(0, 5000), st.integers(1, 255)), max_size=6))
@example(data=b"", flips=[(1583, 64)])  # an unknown zip version: NotImplementedError
def test_any_workbook_reads_or_refuses(scratch: Path, data: bytes, flips: list[tuple[int, int]]) -> None:
    """Random bytes, and a real workbook with bytes flipped: rows or a typed refusal.

    calamine is Rust: a panic would surface as ``pyo3_runtime.PanicException``, which is
    a ``BaseException``; this proves none escapes for these inputs.
    """
    book = bytearray(xlsx([["业务流水号", "企业名称"], ["B1", "温州"], ["B2", 3.5]]))
    for pos, mask in flips:
        book[pos % len(book)] ^= mask
    for content in (data, bytes(book)):
        path = scratch / "any.xlsx"
        path.write_bytes(content)
        try:
            parsed = read_xlsx(path, chunk_rows=5)
            _drain(parsed)
        except BankInputError as err:
            assert err.reason_code in FILE_REASONS


ELIC_COLUMNS = {name: i for i, name in enumerate(field_names(Dataset.ELIC))}
OUTLET_COLUMNS = {name: i for i, name in enumerate(field_names(Dataset.OUTLET))}
FEEDS = st.builds(
    FeedContract,
    date_formats=st.sampled_from([("%Y-%m-%d", "%Y%m%d"), ("%Y/%m/%d",), ("%Y%m%d",)]),
    amount_unit=st.sampled_from(list(AmountUnit)),
)
_ANY_CELL = st.one_of(
    st.none(), st.text(max_size=25),
    st.from_regex(r"\A[-+]?[0-9,]{1,25}(\.[0-9]{0,6})?\Z"),
    st.from_regex(r"\A[0-9]{4}[-/]?[0-9]{1,2}[-/]?[0-9]{1,2}\Z"),
)


@FAST
@example(  # a mobile-shaped number in every cell: free text is masked
    dataset=Dataset.OUTLET, feed=FeedContract(date_formats=("%Y-%m-%d",), amount_unit=AmountUnit.YUAN),
    rows=[["13000000000"] * 12],
)
@given(dataset=st.sampled_from(list(Dataset)), feed=FEEDS, rows=st.lists(st.lists(_ANY_CELL, min_size=12, max_size=12), min_size=1, max_size=4))
def test_normalise_any_text(dataset: Dataset, feed: FeedContract, rows: list[list[str | None]]) -> None:
    """Any cells give typed values or row issues that quote the cell, never an exception,
    and every value fits its warehouse column."""
    columns = ELIC_COLUMNS if dataset is Dataset.ELIC else OUTLET_COLUMNS
    width = len(columns)
    chunk = RawChunk(list(range(2, 2 + len(rows))), [r[:width] for r in rows])
    out = normalise_chunk(chunk, columns, feed, dataset)
    assert len(out) == len(rows)
    flagged = {(i.line, i.field) for i in out.issues}
    for f in FIELDS[dataset]:
        for line, raw, value in zip(chunk.lines, (r[columns[f.name]] for r in chunk.rows), out.values(f.name), strict=True):
            if raw is None or (line, f.name) in flagged:
                assert value is None
            elif f.kind == "date":
                assert isinstance(value, dt.date)
            elif f.kind == "amount":
                assert isinstance(value, Decimal) and value == value.quantize(Decimal("0.01"))
                assert abs(value) < Decimal(10) ** 16
            elif f.kind == "int":
                assert isinstance(value, int) and abs(value) < 2**31
            elif f.kind == "decimal":
                assert isinstance(value, Decimal)
            elif f.free_text:  # ID- and mobile-shaped numbers masked (test_privacy)
                assert value == _masked(raw)
            else:
                assert value == raw
    for issue in out.issues:
        raw = chunk.rows[issue.line - 2][columns[issue.field]]
        if issue.reason_code == "INVALID_CHARACTER":  # quoted escaped: etl_reject refuses NUL
            assert raw is not None and "\x00" in raw and issue.value == log_safe(raw, 64)
            continue
        assert issue.reason_code in ("INVALID_DATE", "INVALID_NUMBER")
        assert issue.value == raw


def _masked(text: str) -> str:
    import pyarrow as pa

    return mask_personal_numbers(pa.array([text], pa.string()))[0][0].as_py()


@FAST
@given(
    cents=st.integers(min_value=0, max_value=10**15),
    grouped=st.booleans(),
    day=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2099, 12, 31)),
    fmt=st.sampled_from(["%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"]),
)
def test_valid_numbers_and_dates_read_exactly(cents: int, grouped: bool, day: dt.date, fmt: str) -> None:
    value = Decimal(cents) / 100
    text = f"{value:,.2f}" if grouped else f"{value:.2f}"
    assert to_yuan(parse_number(text), AmountUnit.YUAN) == value
    assert parse_date(day.strftime(fmt), (fmt,)) == day


_OK_LINE = st.one_of(
    st.text(max_size=30),
    st.builds(lambda n: f"rows={n}", st.integers(0, 10**12)),
    st.builds(lambda h: f"sha256={h}", st.text(alphabet="0123456789abcdefABCDEF", min_size=63, max_size=65)),
    st.builds(lambda s: f"rows={s}", st.text(alphabet="0123456789²³¹١٢٣０１２ \t", max_size=5)),
)


@FAST
@given(lines=st.lists(_OK_LINE, max_size=4), raw=st.binary(max_size=80), use_raw=st.booleans())
@example(lines=["rows=²"], raw=b"", use_raw=False)
def test_parse_ok_any_bytes(lines: list[str], raw: bytes, use_raw: bool) -> None:
    data = raw if use_raw else "\n".join(lines).encode()
    try:
        control = parse_ok(data)
    except BankInputError as err:
        assert err.reason_code == "OK_INVALID"
        return
    assert control.rows is None or control.rows >= 0
    assert control.sha256 is None or (len(control.sha256) == 64 and control.sha256 == control.sha256.lower())


@FAST
@given(rows=st.integers(0, 10**12), sha=st.binary(min_size=32, max_size=32), crlf=st.booleans())
def test_parse_ok_reads_what_a_bank_writes(rows: int, sha: bytes, crlf: bool) -> None:
    nl = "\r\n" if crlf else "\n"
    control = parse_ok(f"rows={rows}{nl}sha256={sha.hex().upper()}{nl}".encode())
    assert (control.rows, control.sha256) == (rows, sha.hex())


_NAME_PART = st.sampled_from(["OUTLET", "ELIC", "elic", "WZB", "_", ".", "..", "/", "\\", "\n", " ", "２", "0", "20230615", "csv", "txt", "gz", "xlsx", "ok"])


@FAST
@given(name=st.one_of(st.text(max_size=40), st.lists(_NAME_PART, max_size=10).map("".join)))
@example(name="ELIC_WZB_20230615.csv\n")
@example(name="ELIC_WZB_２０２３０６１５.csv")
def test_parse_file_name_any_text(name: str) -> None:
    try:
        fn = parse_file_name(name)
    except BankInputError as err:
        assert err.reason_code == "FILE_NAME_INVALID"
        return
    # a name that passes is plain: ASCII, no separators, no whitespace, nothing to traverse
    assert name.isascii() and name.isprintable()
    assert not set(name) & set("/\\ \t\r\n") and ".." not in name
    assert name.startswith(f"{fn.dataset.value}_{fn.bank_code}_{fn.business_date:%Y%m%d}")


@FAST
@given(
    dataset=st.sampled_from(list(Dataset)),
    bank=st.from_regex(r"\A[A-Z0-9]{2,16}\Z"),
    day=st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31)),
    seq=st.one_of(st.none(), st.integers(1, 99)),
    ext=st.sampled_from(["csv", "txt", "xlsx", "csv.gz", "txt.gz"]),
)
def test_parse_file_name_reads_what_a_bank_writes(dataset: Dataset, bank: str, day: dt.date, seq: int | None, ext: str) -> None:
    name = f"{dataset.value}_{bank}_{day:%Y%m%d}" + (f"_{seq:02d}" if seq else "") + f".{ext}"
    fn = parse_file_name(name)
    assert (fn.dataset, fn.bank_code, fn.business_date, fn.seq, fn.ext) == (dataset, bank, day, seq or 0, ext)


@FAST
@given(value=st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats(allow_nan=False)))
@example(value="=HYPERLINK(\"http://evil\")")
@example(value="＝1+1")
def test_excel_safe_any_value(value: object) -> None:
    text = "" if value is None else str(value)
    safe = excel_safe(value)
    assert not safe.startswith(FORMULA_START)
    assert safe in (text, "'" + text)


@FAST
@given(
    name=st.text(max_size=20),
    errors=st.lists(
        st.builds(ReceiptError, reason_code=st.sampled_from(["INVALID_USCC", "MALFORMED_ROW"]), message=st.text(max_size=20),
                  line=st.one_of(st.none(), st.integers(2, 10**6)), field=st.one_of(st.none(), st.text(max_size=8)),
                  value=st.one_of(st.none(), st.text(max_size=20))),
        max_size=5,
    ),
)
def test_rejects_csv_is_inert_and_lossless(name: str, errors: list[ReceiptError]) -> None:
    """Every cell of the rejects CSV is text to Excel, and the bank can still read the value."""
    raw = rejects_csv(name, errors)
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert len(table) == len(errors) + 1
    for row, err in zip(table[1:], errors, strict=True):
        for cell in row:
            assert not cell.startswith(FORMULA_START), cell
        shown = row[5][1:] if row[5] != (err.value or "") else row[5]
        assert shown == (err.value or "")


def test_an_encrypted_workbook_is_refused_by_name(scratch: Path) -> None:
    from tests.corpus import encrypted_ole

    path = scratch / "locked.xlsx"
    path.write_bytes(encrypted_ole())
    with pytest.raises(BankInputError) as err:
        read_xlsx(path, chunk_rows=5)
    assert err.value.reason_code == "UNREADABLE" and "密码" in err.value.message_zh
    # and it is a well-formed OLE container, not just a magic number
    assert not zipfile.is_zipfile(path)
