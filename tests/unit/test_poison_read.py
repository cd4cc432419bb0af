"""Poison files at the reading edge (issue 17): xlsx memory, names, digits, NUL, logs."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import openpyxl
import pytest

from govbank.config.contracts import FeedContract
from govbank.domain.datasets import Dataset
from govbank.domain.errors import BankInputError
from govbank.domain.reasons import ROW_REASONS
from govbank.ingest.discover import MAX_NAME_BYTES, bounded_name, parse_file_name
from govbank.ingest.normalise import normalise_cells, normalise_chunk, parse_number
from govbank.ingest.read import RawChunk, read_delimited, read_delimited_fast
from govbank.ingest.xlsx import read_xlsx
from govbank.util.text import log_safe

_CT = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
_WB = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
    '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WB_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
_SHEET_HEAD = b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
_SHEET_TAIL = b"</sheetData></worksheet>"


def write_xlsx(path: Path, rows, shared: list[str] | None = None) -> Path:  # type: ignore[no-untyped-def]
    """A minimal workbook whose first sheet's XML is streamed from ``rows`` (bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", _CT)
        z.writestr("_rels/.rels", _RELS)
        z.writestr("xl/workbook.xml", _WB)
        z.writestr("xl/_rels/workbook.xml.rels", _WB_RELS)
        sst = "".join(f"<si><t>{s}</t></si>" for s in shared or [])
        z.writestr(
            "xl/sharedStrings.xml",
            '<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
            f"{sst}</sst>",
        )
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            fh.write(_SHEET_HEAD)
            for block in rows:
                fh.write(block)
            fh.write(_SHEET_TAIL)
    return path


HEADER_ROW = b'<row r="1"><c r="A1" t="inlineStr"><is><t>h</t></is></c></row>'

# the child reads the workbook the way the run does and reports its own peak memory
_CHILD = """
import json, sys
from pathlib import Path
from govbank.domain.errors import BankInputError
from govbank.ingest.xlsx import read_xlsx
out = {}
try:
    parsed = read_xlsx(Path(sys.argv[1]), chunk_rows=5000)
    out["rows"] = sum(len(c) for c in parsed.chunks)
except BankInputError as exc:
    out["reason"] = exc.reason_code
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a large pytest parent would show
hwm = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith("VmHWM:"))
out["peak_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""


def read_in_child(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "case",
    ["far-cell", "shared-string-copies", "many-rows"],
)
def test_an_xlsx_calamine_would_blow_up_is_refused_in_bounded_memory(tmp_path: Path, case: str) -> None:
    """Issue 17 case 3: calamine holds the first sheet as a dense grid, each cell with its
    own copy of its text. Each workbook here would take gigabytes; it is refused from a
    streaming count before calamine sees it."""
    if case == "far-cell":  # one cell at XFD1048576: 17 billion cells of grid, 1.5 KB file
        rows = [HEADER_ROW, b'<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>']
        shared = None
    elif case == "shared-string-copies":  # one 60,000-character string in 20,000 cells
        rows = [HEADER_ROW] + [
            b'<row r="%d"><c r="A%d" t="s"><v>0</v></c></row>' % (r, r) for r in range(2, 20_002)
        ]
        shared = ["x" * 60_000]
    else:  # 9 million real cells (rows without r, cells without r): 1 GB+ in calamine
        row = b"<row>" + b"<c><v>1</v></c>" * 20 + b"</row>"
        rows = [HEADER_ROW] + [row * 10_000] * 45
        shared = None
    path = write_xlsx(tmp_path / "ELIC_WZB_20230601.xlsx", rows, shared)
    out = read_in_child(path)
    assert out["reason"] == "FILE_TOO_LARGE"
    assert out["peak_mb"] < 300, out


def test_a_large_valid_xlsx_still_reads_with_bounded_memory(tmp_path: Path) -> None:
    rows = [b'<row r="1">' + b"".join(b'<c r="%s1" t="inlineStr"><is><t>h%d</t></is></c>' % (bytes([65 + i]), i) for i in range(10)) + b"</row>"]
    body = [
        b'<row r="%d">' % r + b"".join(b'<c r="%s%d"><v>%d</v></c>' % (bytes([65 + i]), r, i) for i in range(10)) + b"</row>"
        for r in range(2, 50_002)
    ]
    rows += [b"".join(body[i : i + 5000]) for i in range(0, len(body), 5000)]
    out = read_in_child(write_xlsx(tmp_path / "f.xlsx", rows))
    assert out.get("rows") == 50_000 and out["peak_mb"] < 300, out


def test_xlsx_whose_cells_claim_odd_places_is_unreadable(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "f.xlsx", [HEADER_ROW, b'<row r="2"><c r="&#88;FD1048576"><v>1</v></c></row>'])
    with pytest.raises(BankInputError) as err:
        read_xlsx(path, chunk_rows=10)
    assert err.value.reason_code == "UNREADABLE"


def test_openpyxl_workbooks_pass_the_size_check(tmp_path: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["网点编号", "名称"])
    for i in range(2000):
        ws.append([f"W{i}", "共享的名称"])
    wb.save(tmp_path / "f.xlsx")
    parsed = read_xlsx(tmp_path / "f.xlsx", chunk_rows=500)
    assert sum(len(c) for c in parsed.chunks) == 2000


# ------------------------------------------------------------------ names (case 4)


def test_a_name_over_the_byte_limit_is_file_name_invalid() -> None:
    long_name = "ELIC_WZB_20230601_" + "中" * 60 + ".csv"  # 60 characters, 180 bytes
    assert len(long_name) < 255 and len(long_name.encode()) > MAX_NAME_BYTES
    with pytest.raises(BankInputError) as err:
        parse_file_name(long_name)
    assert err.value.reason_code == "FILE_NAME_INVALID"
    assert "128" in err.value.message_zh


@pytest.mark.parametrize(
    "name", ["x" * 250, "中" * 80, "a/b\x00c\nd" + "y" * 200, "ELIC_WZB_20230601.csv", "..", "\udcff" * 130]
)
def test_bounded_names_fit_a_path(name: str) -> None:
    got = bounded_name(name)
    assert len(got.encode("utf-8")) <= MAX_NAME_BYTES
    assert "/" not in got and "\x00" not in got and "\n" not in got and got not in {".", ".."}
    if name == "ELIC_WZB_20230601.csv":
        assert got == name
    # the archive path the run builds stays a legal file name
    assert len(f"{'0' * 64}__{got}".encode()) <= 255
    assert len(f"{got}.rejects.csv".encode()) <= 255


def test_bounded_names_of_different_long_names_differ() -> None:
    assert bounded_name("a" * 200 + "1") != bounded_name("a" * 200 + "2")


# ------------------------------------------------------------------ digits (case 9)


@pytest.mark.parametrize("text", ["１０００", "١٢٣", "۱۲۳", "１,０００.５", "1٠"])
def test_digits_of_other_scripts_are_not_numbers(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


def test_full_width_digits_are_invalid_in_amounts_counts_and_coordinates() -> None:
    header = ["service_items", "longitude", "latitude", "opened_on"]
    cols = {name: i for i, name in enumerate(header)}
    out = normalise_chunk(
        RawChunk([2, 3], [["１２", "１２０.６", "２７.９", "２０２３-０１-０１"], ["12", "120.6", "27.9", "2023-01-01"]]),
        cols,
        FeedContract(),
        Dataset.OUTLET,
    )
    codes = {(i.line, i.field, i.reason_code) for i in out.issues}
    assert codes == {
        (2, "service_items", "INVALID_NUMBER"),
        (2, "longitude", "INVALID_NUMBER"),
        (2, "latitude", "INVALID_NUMBER"),
        (2, "opened_on", "INVALID_DATE"),
    }
    assert out.values("service_items") == [None, 12]


def test_full_width_digits_in_amounts(tmp_path: Path) -> None:
    out = normalise_chunk(
        RawChunk([2, 3], [["１５００"], ["1500"]]), {"credit_amount": 0}, FeedContract(), Dataset.ELIC
    )
    assert [(i.line, i.reason_code) for i in out.issues] == [(2, "INVALID_NUMBER")]


# ------------------------------------------------------------------ NUL (case 1, the row part)


@pytest.mark.parametrize("fast", [False, True], ids=["exact-reader", "columnar-reader"])
def test_a_nul_in_a_cell_is_a_row_issue_and_never_reaches_the_columns(tmp_path: Path, fast: bool) -> None:
    path = tmp_path / "OUTLET_WZB_20230601.csv"
    path.write_bytes("网点编号,网点名称\nW1,瓯海\x00支行\nW2,好的\n".encode())
    read = read_delimited_fast if fast else read_delimited
    chunk = next(iter(read(path, gzipped=False, delimiter=",", chunk_rows=10).chunks))
    cols = {"outlet_code": 0, "outlet_name": 1}
    if fast:
        out = normalise_cells(chunk, cols, FeedContract(), Dataset.OUTLET)
    else:
        out = normalise_chunk(chunk, cols, FeedContract(), Dataset.OUTLET)
    assert [(i.line, i.field, i.reason_code, i.value) for i in out.issues] == [
        (2, "outlet_name", "INVALID_CHARACTER", "瓯海\\x00支行")
    ]
    assert out.values("outlet_name") == [None, "好的"]
    assert "INVALID_CHARACTER" in ROW_REASONS


# ------------------------------------------------------------------ logs (case 10)


def test_log_safe_keeps_input_on_one_line() -> None:
    name = "ELIC_WZB_20230601.csv\n2026-01-01 INFO bank=OHRCB: 10 rows loaded"
    out = log_safe(name)
    assert "\n" not in out and out.startswith("ELIC_WZB_20230601.csv\\n")
    for c in ["\r", "\x00", "\x1b", "\u2028", "\u2029", "\x85", "\u202e", "\udcff"]:
        assert c not in log_safe(f"a{c}b")
    assert log_safe("a\\nb") != log_safe("a\nb")  # an escape cannot be faked
    assert log_safe("瓯海支行") == "瓯海支行"
    assert len(log_safe("x" * 1000)) < 220


def test_a_name_with_a_newline_is_reported_escaped() -> None:
    with pytest.raises(BankInputError) as err:
        parse_file_name("ELIC_WZB_20230601.csv\nINFO forged")
    assert "\n" not in str(err.value) and err.value.reason_code == "FILE_NAME_INVALID"
