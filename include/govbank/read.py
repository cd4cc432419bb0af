"""Read a bank file: decompress, detect the encoding, parse, and stream it in chunks.

Memory stays flat: delimited files are decoded and parsed as a stream and handed on
``chunk_rows`` rows at a time. Whatever goes wrong with the bytes themselves becomes a
``BankInputError`` with a reason code, never an unhandled exception.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from govbank.errors import BankInputError

SAMPLE_BYTES = 1 << 20
MAX_FIELD_CHARS = 1 << 16  # one cell; a longer one means a broken quote or a bad file
DEFAULT_MAX_DECOMPRESSED = 4 << 30  # gzip bomb cap
csv.field_size_limit(MAX_FIELD_CHARS)


@dataclass
class RawChunk:
    """Rows as the bank wrote them: text cells (or None), each with its line number."""

    lines: list[int] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class ParsedFile:
    encoding: str
    delimiter: str | None
    header: list[str]
    chunks: Iterator[RawChunk]
    malformed: list[tuple[int, str]] = field(default_factory=list)


class _CappedReader(io.RawIOBase):
    """Counts decompressed bytes and stops a gzip bomb before it fills the disk or memory."""

    def __init__(self, inner: IO[bytes], cap: int) -> None:
        self.inner, self.cap, self.seen = inner, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        try:
            data = self.inner.read(len(b))
        except (OSError, EOFError, zlib.error) as exc:
            raise BankInputError("UNREADABLE", "gzip 压缩文件已损坏", str(exc)) from exc
        self.seen += len(data)
        if self.seen > self.cap:
            raise BankInputError("FILE_TOO_LARGE", "文件解压后超过大小上限", f"> {self.cap} bytes")
        b[: len(data)] = data
        return len(data)


def open_bytes(path: Path, gzipped: bool, max_decompressed: int = DEFAULT_MAX_DECOMPRESSED) -> IO[bytes]:
    raw = path.open("rb")
    if not gzipped:
        return raw
    return io.BufferedReader(_CappedReader(gzip.GzipFile(fileobj=raw), max_decompressed), 1 << 16)


def detect_encoding(sample: bytes) -> str:
    """UTF-8 (with or without BOM) or GB18030: the only encodings bank-files.md allows."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the sample's end is still UTF-8
        if exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data":
            return "utf-8"
    from charset_normalizer import from_bytes

    best = from_bytes(sample, cp_isolation=["gb18030"], threshold=0.5).best()
    if best is None:
        raise BankInputError("UNREADABLE", "无法识别文件编码（应为 UTF-8 或 GB18030）")
    return "gb18030"


def _clean(cell: str | None) -> str | None:
    if cell is None:
        return None
    text = cell.strip(" \t\r\n\u3000\u00a0\ufeff")
    return text or None


def _sniff_delimiter(header_line: str, expected: str) -> str:
    counts = {d: header_line.count(d) for d in ",|"}
    found = max(counts, key=lambda d: counts[d])
    if counts[found] == 0:
        found = expected if expected != "auto" else ","
    if expected != "auto" and found != expected:
        raise BankInputError(
            "DELIMITER_MISMATCH", f"分隔符应为 “{expected}”，文件中为 “{found}”"
        )
    return found


def read_delimited(
    path: Path, *, gzipped: bool, delimiter: str, chunk_rows: int,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
) -> ParsedFile:
    stream = open_bytes(path, gzipped, max_decompressed)
    try:
        sample = stream.read(SAMPLE_BYTES)
        stream = io.BufferedReader(_Prefixed(sample, stream), 1 << 16)  # type: ignore[arg-type]
        if not sample.strip(b" \t\r\n\xef\xbb\xbf"):
            raise BankInputError("EMPTY_FILE", "文件为空")
        encoding = detect_encoding(sample)
    except BaseException:
        stream.close()
        raise
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
    first = _safe_readline(text)
    delim = _sniff_delimiter(first, delimiter)
    lines = _chain_first(first, text)
    reader = csv.reader(lines, delimiter=delim, strict=True)
    try:
        header_cells = next(reader)
    except csv.Error as exc:
        text.close()
        raise BankInputError("UNREADABLE", "表头行无法解析", str(exc)) from exc
    header = [(_clean(h) or "") for h in header_cells]
    parsed = ParsedFile(encoding, delim, header, iter(()))
    parsed.chunks = _csv_chunks(reader, text, len(header), chunk_rows, parsed.malformed)
    return parsed


class _Prefixed(io.RawIOBase):
    def __init__(self, prefix: bytes, rest: IO[bytes]) -> None:
        self.prefix, self.rest = prefix, rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        if self.prefix:
            n = min(len(b), len(self.prefix))
            b[:n], self.prefix = self.prefix[:n], self.prefix[n:]
            return n
        data = self.rest.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.rest.close()
        super().close()


def _safe_readline(text: io.TextIOWrapper) -> str:
    try:
        return text.readline(MAX_FIELD_CHARS * 4)
    except UnicodeDecodeError as exc:
        text.close()
        raise BankInputError("UNREADABLE", "文件含有无效字节或混用编码", str(exc)) from exc


def _chain_first(first: str, rest: io.TextIOWrapper) -> Iterator[str]:
    yield first
    yield from rest


def _csv_chunks(
    reader, text: io.TextIOWrapper, width: int, chunk_rows: int,  # type: ignore[no-untyped-def]
    malformed: list[tuple[int, str]],
) -> Iterator[RawChunk]:
    chunk = RawChunk()
    last_line = reader.line_num
    try:
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise BankInputError(
                    "UNREADABLE", f"第 {last_line + 1} 行无法解析（引号未闭合或字段过长）", str(exc)
                ) from exc
            except UnicodeDecodeError as exc:
                raise BankInputError(
                    "UNREADABLE", f"第 {last_line + 1} 行附近含有无效字节或混用编码", str(exc)
                ) from exc
            line = last_line + 1
            last_line = reader.line_num
            if not cells or all(_clean(c) is None for c in cells):
                continue  # blank line
            if len(cells) != width:
                malformed.append((line, f"{len(cells)} 列，表头为 {width} 列"))
                continue
            chunk.lines.append(line)
            chunk.rows.append([_clean(c) for c in cells])
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = RawChunk()
        if len(chunk):
            yield chunk
    finally:
        text.close()


def _xlsx_cell(value: object) -> str | None:
    import datetime as dt

    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return _clean(str(value))


def read_xlsx(path: Path, *, chunk_rows: int) -> ParsedFile:
    """The first sheet; its first row is the header. Formulas count by their cached value."""
    from python_calamine import CalamineWorkbook

    try:
        wb = CalamineWorkbook.from_path(str(path))
        if not wb.sheet_names:
            raise BankInputError("UNREADABLE", "工作簿中没有工作表")
        rows = wb.get_sheet_by_index(0).iter_rows()
        header_row = next(rows, None)
    except BankInputError:
        raise
    except Exception as exc:  # calamine raises its own types for corrupt or encrypted files
        raise BankInputError("UNREADABLE", "xlsx 文件损坏、加密或格式错误", type(exc).__name__) from exc
    if header_row is None or all(_xlsx_cell(c) is None for c in header_row):
        raise BankInputError("EMPTY_FILE", "工作表为空")
    header = [(_xlsx_cell(h) or "") for h in header_row]
    while header and header[-1] == "":
        header.pop()
    parsed = ParsedFile("xlsx", None, header, iter(()))

    def chunks() -> Iterator[RawChunk]:
        chunk = RawChunk()
        for i, row in enumerate(rows, start=2):
            cells = [_xlsx_cell(c) for c in row]
            if all(c is None for c in cells):
                continue
            if len(cells) > len(header) and any(c is not None for c in cells[len(header):]):
                parsed.malformed.append((i, "数据超出表头范围"))
                continue
            cells = (cells + [None] * len(header))[: len(header)]
            chunk.lines.append(i)
            chunk.rows.append(cells)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = RawChunk()
        if len(chunk):
            yield chunk

    parsed.chunks = chunks()
    return parsed
