"""Reading bank files: encodings, compression, delimiters, xlsx, streaming, broken bytes."""

from __future__ import annotations

import gzip
from pathlib import Path

import openpyxl
import pytest

from govbank.domain.errors import BankInputError
from govbank.ingest.read import detect_encoding, read_delimited
from govbank.ingest.xlsx import read_xlsx

HEADER = "网点编号|网点名称|地址"


def _rows(parsed) -> list[tuple[int, list]]:
    return [
        (line, row)
        for chunk in parsed.chunks
        for line, row in zip(chunk.lines, chunk.rows, strict=True)
    ]


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("gb18030", "gb18030")],
)
def test_detects_each_allowed_encoding(tmp_path: Path, encoding: str, expected: str) -> None:
    text = f"{HEADER}\nW1|瓯海　支行 |娄桥街道古岸头村\n"
    path = tmp_path / "f.txt"
    path.write_bytes(text.encode(encoding))
    parsed = read_delimited(path, gzipped=False, delimiter="|", chunk_rows=10)
    assert parsed.encoding == expected
    assert parsed.header == ["网点编号", "网点名称", "地址"]
    # full-width and ordinary spaces around a value are not data
    assert _rows(parsed) == [(2, ["W1", "瓯海　支行", "娄桥街道古岸头村"])]


def test_utf8_sample_cut_inside_a_character_is_still_utf8() -> None:
    data = "中文".encode()
    assert detect_encoding(data[:-1]) == "utf-8"


def test_gzip_crlf_quotes_and_line_numbers(tmp_path: Path) -> None:
    text = 'a,b\r\n1,"two\r\nlines"\r\n\r\n3,"x,y"\n'
    path = tmp_path / "f.csv.gz"
    path.write_bytes(gzip.compress(text.encode("utf-8")))
    parsed = read_delimited(path, gzipped=True, delimiter=",", chunk_rows=10)
    # the quoted cell spans lines 2-3; the blank line 4 is skipped; the last row is line 5
    assert _rows(parsed) == [(2, ["1", "two\r\nlines"]), (5, ["3", "x,y"])]


def test_streams_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(10)), encoding="utf-8")
    parsed = read_delimited(path, gzipped=False, delimiter=",", chunk_rows=4)
    assert [len(c) for c in parsed.chunks] == [4, 4, 2]


def test_row_with_wrong_width_is_set_aside_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,b\n1,2\n3\n4,5,6\n7,8\n", encoding="utf-8")
    parsed = read_delimited(path, gzipped=False, delimiter=",", chunk_rows=10)
    assert [line for line, _ in _rows(parsed)] == [2, 5]
    assert [line for line, _ in parsed.malformed] == [3, 4]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "EMPTY_FILE"),
        (b"  \r\n", "EMPTY_FILE"),
        ("a|b\n1|中\n".encode() + b"\xff\xfe\x00bad|x\n", "UNREADABLE"),
        (b'a,b\n1,"never closed\n2,3\n', "UNREADABLE"),
    ],
)
def test_broken_bytes_become_typed_rejections(tmp_path: Path, data: bytes, code: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(data)
    with pytest.raises(BankInputError) as err:
        parsed = read_delimited(path, gzipped=False, delimiter="auto", chunk_rows=10)
        _rows(parsed)
    assert err.value.reason_code == code


def test_delimiter_not_in_contract_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(BankInputError) as err:
        read_delimited(path, gzipped=False, delimiter="|", chunk_rows=10)
    assert err.value.reason_code == "DELIMITER_MISMATCH"


def test_gzip_bomb_is_stopped_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "f.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * 200_000))
    with pytest.raises(BankInputError) as err:
        parsed = read_delimited(
            path, gzipped=True, delimiter=",", chunk_rows=1000, max_decompressed=64_000
        )
        _rows(parsed)
    assert err.value.reason_code == "FILE_TOO_LARGE"


def test_corrupt_gzip_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "f.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n" * 1000)[:-40])
    with pytest.raises(BankInputError) as err:
        _rows(read_delimited(path, gzipped=True, delimiter=",", chunk_rows=10))
    assert err.value.reason_code == "UNREADABLE"


def test_xlsx_first_sheet_typed_cells(tmp_path: Path) -> None:
    import datetime as dt

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["网点编号", "可办事项数", "启用日期", "经度"])
    ws.append(["W1", 12, dt.datetime(2023, 1, 5), 120.62])
    ws.append([None, None, None, None])
    ws.append(["W2", "=1+1", "2023-02-01", None])
    wb.create_sheet("second").append(["ignored"])
    path = tmp_path / "f.xlsx"
    wb.save(path)
    parsed = read_xlsx(path, chunk_rows=10)
    assert parsed.header == ["网点编号", "可办事项数", "启用日期", "经度"]
    rows = _rows(parsed)
    assert rows[0] == (2, ["W1", "12", "2023-01-05", "120.62"])
    # a formula without a cached value is no value: it is never evaluated
    assert rows[1][0] == 4 and rows[1][1][0] == "W2" and rows[1][1][1] in (None, "=1+1")


def test_corrupt_xlsx_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "f.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not a workbook")
    with pytest.raises(BankInputError) as err:
        _rows(read_xlsx(path, chunk_rows=10))
    assert err.value.reason_code == "UNREADABLE"
