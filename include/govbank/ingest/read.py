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
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from govbank.domain.errors import BankInputError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

SAMPLE_BYTES = 1 << 20
MAX_FIELD_CHARS = 1 << 16  # one cell; a longer one means a broken quote or a bad file
MAX_LINE_CHARS = 1 << 20  # one physical line; read in bounded pieces, never whole
# gzip and xlsx bomb cap; looked up at call time, so a test can lower it
DEFAULT_MAX_DECOMPRESSED = 4 << 30
# valid UTF-8 non-ASCII characters before the first invalid byte that mean "UTF-8 with
# bad bytes or GB18030 rows mixed in": random GB18030 text gives 0-5 (measured)
MIXED_MIN_CHARS = 8
CFB_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # OLE: an encrypted workbook or an .xls
# calamine holds the first sheet whole, as a dense grid of its used range (about 32 bytes
# a cell, empty ones too) plus each cell's text (a shared string copied into every cell
# that uses it). Both are counted by a streaming pass over the sheet's XML before
# calamine sees the file, and a sheet over either limit is FILE_TOO_LARGE; looked up at
# call time, so a test can lower them. 4 M cells: 200,000 rows of 20 columns; text is
# counted in UTF-8 bytes (bench/README.md: the peak memory of a sheet at both limits).
XLSX_MAX_CELLS = 4_000_000
XLSX_MAX_TEXT = 96 << 20
_XLSX_SMALL_PART = 16 << 20  # workbook.xml and relationship parts, read whole
_DELIMITER_NAMES = {",": "“,”", "|": "“|”", ";": "“;”", "\t": "制表符"}
csv.field_size_limit(MAX_FIELD_CHARS)


@dataclass
class RawChunk:
    """Rows as the bank wrote them: text cells (or None), each with its line number."""

    lines: list[int] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.lines)


@dataclass
class CellChunk:
    """Rows as columns: one Arrow string array per header column (trimmed, null when
    blank) and the line number of each row. What normalising works on."""

    lines: np.ndarray  # int64
    columns: list[pa.Array]

    def __len__(self) -> int:
        return len(self.lines)


def cells_from_raw(chunk: RawChunk, width: int) -> CellChunk:
    """The row-wise chunk of the exact reader (and of xlsx) as columns."""
    import numpy as np
    import pyarrow as pa

    return CellChunk(
        np.asarray(chunk.lines, dtype=np.int64),
        [pa.array([row[i] for row in chunk.rows], pa.string()) for i in range(width)],
    )


@dataclass
class ParsedFile:
    encoding: str
    delimiter: str | None
    header: list[str]
    chunks: Iterator[RawChunk] | Iterator[CellChunk]
    malformed: list[tuple[int, str]] = field(default_factory=list)


class FastPathAborted(Exception):
    """The file is not plain enough for the columnar reader: read it with the exact one.

    Raised for anything the columnar reader might understand differently from the exact
    reader (blank or malformed lines, a quote across lines, a lone CR, bad bytes): the
    exact reader then gives the bank the precise message with its line number.
    """


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


def _cap(max_decompressed: int | None) -> int:
    return DEFAULT_MAX_DECOMPRESSED if max_decompressed is None else max_decompressed


def open_bytes(path: Path, gzipped: bool, max_decompressed: int | None = None) -> IO[bytes]:
    raw = path.open("rb")
    if not gzipped:
        return raw
    return io.BufferedReader(_CappedReader(gzip.GzipFile(fileobj=raw), _cap(max_decompressed)), 1 << 16)


def detect_encoding(sample: bytes) -> str:
    """UTF-8 (with or without BOM) or GB18030: the only encodings bank-files.md allows.

    Not UTF-8 means GB18030 when the bytes decode as GB18030, whatever characters they
    hold: a statistical detector would refuse valid files with rare characters. UTF-16
    (Excel's "Unicode text") is named, since decoding it as GB18030 would "succeed".
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    head = sample[:200]
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or (
        max(head[0::2].count(0), head[1::2].count(0)) > 20 and min(head[0::2].count(0), head[1::2].count(0)) < 5
    ):
        raise BankInputError("UNREADABLE", "文件为 UTF-16 编码（应为 UTF-8 或 GB18030），请另存为 UTF-8")
    try:
        sample.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        # a multi-byte character cut by the sample's end is still UTF-8
        if exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data":
            return "utf-8"
        # plenty of valid UTF-8 text before the first bad byte: not a GB18030 file but
        # UTF-8 with invalid bytes or rows from another system; decoding it as GB18030
        # would load mojibake
        prefix = sample[: exc.start].decode("utf-8")
        if len(prefix) - len(prefix.encode("ascii", "ignore")) >= MIXED_MIN_CHARS:
            raise BankInputError(
                "UNREADABLE",
                "文件含有无效字节或混用了 UTF-8 与 GB18030 编码",
                f"byte {exc.start}: {sample[exc.start:exc.start + 4]!r}",
            ) from exc
    try:  # incremental: a character cut by the sample's end is not an error
        codecs.getincrementaldecoder("gb18030")().decode(sample, final=False)
    except UnicodeDecodeError as exc:
        raise BankInputError(
            "UNREADABLE", "无法识别文件编码（应为 UTF-8 或 GB18030）", f"byte {exc.start}"
        ) from exc
    return "gb18030"


def _clean(cell: str | None) -> str | None:
    if cell is None:
        return None
    text = cell.strip(" \t\r\n\u3000\u00a0\ufeff")
    return text or None


def _sniff_delimiter(header_line: str, expected: str) -> str:
    """The header's delimiter; ``;`` and tab are recognised only to be refused by name."""
    counts = {d: header_line.count(d) for d in (",", "|", ";", "\t")}
    found = max(counts, key=lambda d: counts[d])
    if counts[found] == 0:
        found = expected if expected != "auto" else ","
    allowed = (expected,) if expected != "auto" else (",", "|")
    if found not in allowed:
        raise BankInputError(
            "DELIMITER_MISMATCH",
            f"分隔符应为 {' 或 '.join(_DELIMITER_NAMES[d] for d in allowed)}，"
            f"文件中为 {_DELIMITER_NAMES[found]}",
        )
    return found


def _open_sniffed(
    path: Path, gzipped: bool, max_decompressed: int | None
) -> tuple[IO[bytes], bytes, str]:
    """The byte stream (positioned at the start), its first MiB and its encoding."""
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
    return stream, sample, encoding


def _header_of(sample: bytes, encoding: str, delimiter: str) -> tuple[str, list[str]]:
    """Delimiter and cleaned header cells of the first line, as the exact reader sees them."""
    text = io.TextIOWrapper(io.BytesIO(sample), encoding=encoding, errors="strict", newline="")
    try:
        first = next(_bounded_lines(text), "")
        delim = _sniff_delimiter(first, delimiter)
        cells = next(csv.reader([first], delimiter=delim, strict=True))
    except csv.Error as exc:
        raise BankInputError("UNREADABLE", "表头行无法解析", str(exc)) from exc
    except UnicodeDecodeError as exc:  # a character cut by the sample's end
        raise FastPathAborted("header") from exc
    return delim, [(_clean(h) or "") for h in cells]


class _Watcher(io.RawIOBase):
    """Passes the bytes through to Arrow and keeps what proves each row is one line.

    Counts line feeds, refuses lone CRs, and parses every line holding a quote with the
    exact reader's rules (``csv`` strict), so the columnar reader is trusted only where
    both readers must agree.
    """

    def __init__(self, inner: IO[bytes], encoding: str, delimiter: str, width: int) -> None:
        self.inner, self.encoding, self.delimiter, self.width = inner, encoding, delimiter, width
        self.newlines = 0
        self.last = b""
        self.error: BaseException | None = None
        self._tail = b""  # an unfinished line holding a quote, carried to the next block

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        try:
            data = self.inner.read(len(b))
            if data:
                self._watch(data)
        except BaseException as exc:  # Arrow would hide it: keep it for the caller
            self.error = exc
            raise
        b[: len(data)] = data
        return len(data)

    def _watch(self, data: bytes) -> None:
        self.newlines += data.count(b"\n")
        joined = self.last[-1:] + data
        if joined.count(b"\r") != joined.count(b"\r\n") + (1 if joined.endswith(b"\r") else 0):
            raise FastPathAborted("lone CR")
        self.last = data[-1:]
        block = self._tail + data
        end = block.rfind(b"\n") + 1
        done, self._tail = block[:end], block[end:]
        if len(self._tail) > MAX_LINE_CHARS * 4:
            raise FastPathAborted("long line")
        # only the lines around each quote: a Python loop over every line costs ~1 s a
        # million rows, while the reader holds the interpreter lock GX needs
        quote = done.find(b'"')
        while quote != -1:
            end = done.find(b"\n", quote)  # done ends with a line feed
            self._check_line(done[done.rfind(b"\n", 0, quote) + 1:end])
            quote = done.find(b'"', end)

    def _check_line(self, line: bytes) -> None:
        try:
            text = line.decode(self.encoding).rstrip("\r")
            rows = list(csv.reader([text.lstrip("\ufeff")], delimiter=self.delimiter, strict=True))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise FastPathAborted("quoted line") from exc
        if len(rows) != 1 or len(rows[0]) != self.width:
            raise FastPathAborted("quoted line")

    def finish(self) -> None:
        if b'"' in self._tail:
            self._check_line(self._tail)


def read_delimited_fast(
    path: Path, *, gzipped: bool, delimiter: str, chunk_rows: int,
    max_decompressed: int | None = None,
) -> ParsedFile:
    """The columnar reader (Arrow's CSV parser): the same rows as :func:`read_delimited`,
    as :class:`CellChunk` s, several times faster.

    The chunks raise :class:`FastPathAborted` (possibly after some were handed out) when
    the file is not one row per line or holds anything the two readers could read
    differently; the caller then starts again with :func:`read_delimited`.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    stream, sample, encoding = _open_sniffed(path, gzipped, max_decompressed)
    try:
        delim, header = _header_of(sample, encoding, delimiter)
    except BaseException:
        stream.close()
        raise
    width = len(header)
    watcher = _Watcher(stream, encoding, delim, width)
    names = [f"c{i}" for i in range(width)]

    def chunks() -> Iterator[CellChunk]:
        try:
            reader = pacsv.open_csv(
                pa.PythonFile(io.BufferedReader(watcher, 1 << 20), mode="r"),
                read_options=pacsv.ReadOptions(
                    encoding="utf8" if encoding == "utf-8" else encoding,
                    column_names=names, skip_rows=1, block_size=1 << 20, use_threads=False,
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=delim, quote_char='"', double_quote=True,
                    newlines_in_values=False, ignore_empty_lines=False,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    strings_can_be_null=False, quoted_strings_can_be_null=False,
                ),
            )
            seen = 0  # rows Arrow read, blank ones included: row i is line i + 2
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= chunk_rows:
                    out = _cells(pending, seen, pc, np, pa)
                    seen += pending_rows
                    pending, pending_rows = [], 0
                    if out is not None:
                        yield out
            if pending:
                out = _cells(pending, seen, pc, np, pa)
                seen += pending_rows
                if out is not None:
                    yield out
            watcher.finish()
            lines = watcher.newlines + (0 if watcher.last in (b"\n", b"") else 1)
            if seen + 1 != lines:
                raise FastPathAborted(f"{seen} rows, {lines} lines")
        except FastPathAborted:
            raise
        except BankInputError:
            raise
        except Exception as exc:
            if isinstance(watcher.error, (BankInputError, FastPathAborted)):
                raise watcher.error from exc
            raise FastPathAborted(str(exc)[:200]) from exc
        finally:
            stream.close()

    return ParsedFile(encoding, delim, header, chunks())


_BLANKS = " \t\r\n\u3000\u00a0\ufeff"


def _blank_as_null(arr, pc, pa):  # type: ignore[no-untyped-def]
    """Empty strings become nulls by swapping the validity bitmap (no copy of the text)."""
    if len(arr) == 0:
        return arr
    if arr.offset:
        arr = pa.concat_arrays([arr])
    keep = pc.not_equal(arr, "")
    if arr.null_count:
        keep = pc.fill_null(keep, False)
    bufs = arr.buffers()
    return pa.Array.from_buffers(
        pa.string(), len(arr), [keep.buffers()[1], bufs[1], bufs[2]], offset=arr.offset
    )


def _cells(batches: list, first: int, pc, np, pa) -> CellChunk | None:  # type: ignore[no-untyped-def]
    """Trimmed, blank-as-null columns; rows that are blank in every cell are dropped."""
    table = pa.Table.from_batches(batches)
    columns = []
    for col in table.columns:
        trimmed = pc.utf8_trim(col.combine_chunks(), characters=_BLANKS)
        if len(trimmed) and pc.max(pc.utf8_length(trimmed)).as_py() > MAX_FIELD_CHARS:
            raise FastPathAborted("long cell")
        columns.append(_blank_as_null(trimmed, pc, pa))
    lines = np.arange(first + 2, first + 2 + table.num_rows, dtype=np.int64)
    blank = None
    for col in columns:
        is_null = col.is_null()
        blank = is_null if blank is None else pc.and_(blank, is_null)
    if blank is not None and pc.any(blank).as_py():
        keep = pc.invert(blank)
        lines = lines[keep.to_numpy(zero_copy_only=False)]
        columns = [c.filter(keep) for c in columns]
    if not len(lines):
        return None
    return CellChunk(lines, columns)


def read_delimited(
    path: Path, *, gzipped: bool, delimiter: str, chunk_rows: int,
    max_decompressed: int | None = None,
) -> ParsedFile:
    """Header and a lazy stream of row chunks; broken bytes raise ``BankInputError``.

    ``max_decompressed`` (default ``DEFAULT_MAX_DECOMPRESSED``) caps what a gzip may
    inflate to. Lines are read in bounded pieces: one longer than ``MAX_LINE_CHARS``
    rejects the file instead of filling memory.
    """
    stream, _, encoding = _open_sniffed(path, gzipped, max_decompressed)
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
    lines = _bounded_lines(text)
    try:
        first = next(lines, "")
        delim = _sniff_delimiter(first, delimiter)
        reader = csv.reader(_chain_first(first, lines), delimiter=delim, strict=True)
        header_cells = next(reader)
    except csv.Error as exc:
        text.close()
        raise BankInputError("UNREADABLE", "表头行无法解析", str(exc)) from exc
    except BaseException:
        text.close()
        raise
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


def _bounded_lines(text: io.TextIOWrapper) -> Iterator[str]:
    """Physical lines, each read with a length limit, so one endless line costs no memory."""
    number = 0
    while True:
        try:
            line = text.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError as exc:
            raise BankInputError(
                "UNREADABLE", f"第 {number + 1} 行附近含有无效字节或混用编码", str(exc)
            ) from exc
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise BankInputError(
                "UNREADABLE", f"第 {number} 行超过 {MAX_LINE_CHARS} 个字符", "line too long"
            )
        yield line


def _chain_first(first: str, rest: Iterator[str]) -> Iterator[str]:
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
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        # what Excel shows (15 significant digits): 1234.5600000000001 is 1234.56
        return f"{value:.15g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return _clean(str(value))


def _check_workbook(path: Path, cap: int) -> None:
    """Refuse what calamine should not be handed: encrypted, not a zip, a zip bomb, or a
    first sheet calamine would need more memory for than the limits allow."""
    with path.open("rb") as fh:
        magic = fh.read(len(CFB_MAGIC))
    if magic == CFB_MAGIC:
        raise BankInputError(
            "UNREADABLE", "xlsx 文件设有打开密码（已加密）或为旧版 xls 格式，请另存为无密码的 xlsx 后重新报送"
        )
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            inflated = sum(i.file_size for i in infos)
            if inflated > cap:
                raise BankInputError("FILE_TOO_LARGE", "文件解压后超过大小上限", f"{inflated} > {cap} bytes")
            if len({i.filename for i in infos}) != len(infos):  # which one would calamine read?
                raise BankInputError("UNREADABLE", "xlsx 文件损坏（压缩包内有重名文件）")
            _check_sheet_size(z)
    # NotImplementedError: a zip version or feature no xlsx writer uses
    # zlib.error: a damaged deflate stream met by the size check
    except (
        zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error
    ) as exc:
        raise BankInputError("UNREADABLE", "xlsx 文件损坏（不是完整的 zip 压缩包）", str(exc)) from exc


class _XmlRefused(ValueError):
    """A DOCTYPE or entity declaration: no spreadsheet writer emits one."""


def _expat(start, end=None, text=None):  # type: ignore[no-untyped-def]
    """An expat parser on local names (namespaces dropped) that refuses DTDs."""
    from xml.parsers import expat

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True

    def local(name: str) -> str:
        return name.rpartition(" ")[2]

    def refuse(*_: object) -> None:
        raise _XmlRefused("DTD")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.StartElementHandler = lambda name, attrs: start(local(name), {local(k): v for k, v in attrs.items()})
    if end is not None:
        parser.EndElementHandler = lambda name: end(local(name))
    if text is not None:
        parser.CharacterDataHandler = text
    return parser


def _feed(z: zipfile.ZipFile, member: str, parser, limit: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """Stream ``member`` through ``parser`` in 1 MiB pieces (zipfile stops at the size
    the zip declares: a part that is longer than it says fails its CRC check)."""
    info = z.getinfo(member)
    if limit is not None and info.file_size > limit:
        raise BankInputError("FILE_TOO_LARGE", "xlsx 文件中的部件超过大小上限", f"{member}: {info.file_size}")
    from xml.parsers import expat

    try:
        with z.open(info) as fh:
            while block := fh.read(1 << 20):
                parser.Parse(block, False)
            parser.Parse(b"", True)
    except (expat.ExpatError, _XmlRefused) as exc:
        raise BankInputError("UNREADABLE", "xlsx 文件损坏（XML 格式错误）", f"{member}: {exc}") from exc


def _rels(z: zipfile.ZipFile, member: str) -> dict[str, tuple[str, str]]:
    """Relationship id -> (type's last word, target) of one ``.rels`` part."""
    out: dict[str, tuple[str, str]] = {}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "Relationship" and "Id" in attrs:
            out[attrs["Id"]] = (attrs.get("Type", "").rpartition("/")[2], attrs.get("Target", ""))

    if member in z.NameToInfo:
        _feed(z, member, _expat(start), _XLSX_SMALL_PART)
    return out


def _resolve(base: str, target: str) -> str:
    import posixpath

    return target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(base, target))


def _sheet_parts(z: zipfile.ZipFile) -> tuple[list[str], str | None]:
    """The first sheet's XML part (every worksheet's when the workbook does not say
    clearly which is first) and the shared strings part."""
    import posixpath

    workbook = next(
        (_resolve("", t) for kind, t in _rels(z, "_rels/.rels").values() if kind == "officeDocument"),
        "xl/workbook.xml",
    )
    base = posixpath.dirname(workbook)
    rels = _rels(z, posixpath.join(base, "_rels", posixpath.basename(workbook) + ".rels"))
    first: list[str] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "sheet" and not first:
            first.append(attrs.get("id", ""))

    if workbook in z.NameToInfo:
        _feed(z, workbook, _expat(start), _XLSX_SMALL_PART)
    sheet = rels.get(first[0]) if first else None
    shared = next((_resolve(base, t) for kind, t in rels.values() if kind == "sharedStrings"), None)
    if shared not in z.NameToInfo:
        shared = "xl/sharedStrings.xml" if "xl/sharedStrings.xml" in z.NameToInfo else None
    if sheet is not None and _resolve(base, sheet[1]) in z.NameToInfo:
        return [_resolve(base, sheet[1])], shared
    return [n for n in z.NameToInfo if n.startswith("xl/worksheets/") and n.endswith(".xml")], shared


def _shared_string_lengths(z: zipfile.ZipFile, member: str | None):  # type: ignore[no-untyped-def]
    """The UTF-8 length of each shared string (phonetic runs left out, as calamine does)."""
    from array import array

    lengths = array("q")
    state = {"in_t": False, "rph": 0, "n": 0, "total": 0}

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "si":
            state["n"] = 0
        elif name == "rPh":
            state["rph"] += 1
        elif name == "t":
            state["in_t"] = True

    def end(name: str) -> None:
        if name == "si":
            lengths.append(state["n"])
            state["total"] += state["n"]
            if state["total"] > XLSX_MAX_TEXT:
                raise BankInputError("FILE_TOO_LARGE", "xlsx 文件中的文字超过大小上限", f"> {XLSX_MAX_TEXT} characters")
        elif name == "rPh":
            state["rph"] -= 1
        elif name == "t":
            state["in_t"] = False

    def text(data: str) -> None:
        if state["in_t"] and not state["rph"]:
            state["n"] += len(data.encode("utf-8", "surrogatepass"))

    if member is not None:  # calamine holds the table too: its size counts as text
        _feed(z, member, _expat(start, end, text), XLSX_MAX_TEXT)
    return lengths


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + (ch - 64)
    return n


# a row or cell start tag (any namespace prefix), and a shared-string index right after
# it; comments or CDATA that look like cells only make the counts higher, never lower
_XLSX_TAG = re.compile(
    rb"<(?:[\w.-]+:)?(row|c)(?=[\s/>])([^>]*)>(?:\s*<(?:[\w.-]+:)?v>\s*([0-9]{1,10})\s*<)?"
)
_CELL_START = re.compile(rb"<(?:[\w.-]+:)?c[\s/>]")
_ATTR_R = re.compile(rb"\sr\s*=\s*[\"']([^\"']*)")
_ATTR_T_SHARED = re.compile(rb"\st\s*=\s*[\"']s[\"']")
_CELL_REF = re.compile(rb"([A-Z]{1,3})([0-9]{1,7})")
_REFS = re.compile(rb"\sr\s*=\s*[\"']([A-Z]{1,3})([0-9]{1,7})[\"']")
_TEXT_NODE = re.compile(rb">([^<]+)<")
_SHARED_INDEX = re.compile(rb"\st\s*=\s*[\"']s[\"'][^>]*>\s*<(?:[\w.-]+:)?v>\s*([0-9]{1,10})\s*<")


def _count_cells(data: bytes, start: int, end: int) -> int:
    return data.count(b"<c ", start, end) + data.count(b"<c>", start, end) + data.count(b"<c/", start, end)


class _SheetExtent:
    """The used range and text of a sheet as calamine will hold it, counted as it is
    streamed; raises ``FILE_TOO_LARGE`` the moment either passes its limit."""

    def __init__(self, lengths, text: int) -> None:  # type: ignore[no-untyped-def]
        self.lengths, self.longest = lengths, max(lengths, default=0)
        self.max_cells, self.max_text = XLSX_MAX_CELLS, XLSX_MAX_TEXT
        self.rows, self.cols = [1 << 30, 0], [1 << 30, 0]
        self.row = self.col = 0
        self.cells = 0
        self.text = text
        self._check_text()

    def _check_text(self) -> None:
        if self.text > self.max_text:
            raise BankInputError(
                "FILE_TOO_LARGE",
                f"xlsx 工作表中的文字超过 {self.max_text >> 20} MB，请改用 csv.gz 或拆分文件",
                f"> {self.max_text}",
            )

    def _span(self, rows: tuple[int, int], cols: tuple[int, int]) -> None:
        r, c = self.rows, self.cols
        r[0], r[1] = min(r[0], rows[0]), max(r[1], rows[1])
        c[0], c[1] = min(c[0], cols[0]), max(c[1], cols[1])
        if (r[1] - r[0] + 1) * (c[1] - c[0] + 1) > self.max_cells:
            raise BankInputError(
                "FILE_TOO_LARGE",
                f"xlsx 工作表超过 {self.max_cells} 个单元格（行数 × 列数），请改用 csv.gz 或拆分文件",
                f"rows {r[0]}-{r[1]}, columns {c[0]}-{c[1]}",
            )

    def block(self, data: bytes, end: int) -> None:
        """``data[:end]`` holds whole tags only. Scanned by C-level calls when every cell
        names its place (``r``, as Excel and openpyxl write) or none in the block does;
        a block mixing both is followed tag by tag."""
        # every text node (inline strings, formula results, numbers, even the blanks
        # between tags): an upper bound of the text calamine keeps from this block
        self.text += sum(map(len, _TEXT_NODE.findall(data, 0, min(end + 1, len(data)))))
        self._check_text()
        prefixed = data.find(b":c", 0, end) != -1 or data.find(b":row", 0, end) != -1
        if prefixed:  # a namespace prefix: count properly
            cells = len(_CELL_START.findall(data, 0, end))
        else:
            cells = _count_cells(data, 0, end)
        # calamine first collects every cell element, duplicates included
        self.cells += cells
        if self.cells > self.max_cells:
            self._span((1, self.cells), (1, 1))
        refs = _REFS.findall(data, 0, end)
        if not refs and not prefixed and _ATTR_R.search(data, 0, end) is None:
            self._positional(data[:end])
            return
        if cells > len(refs):
            self._exact(data, end)
            return
        if refs:
            numbers = [int(d) for d in {d for _, d in refs}]
            columns = [_column_number(c) for c in {c for c, _ in refs}]
            self._span((min(numbers), max(numbers)), (min(columns), max(columns)))
            self.row = int(refs[-1][1])
        shared = data.count(b'"s"', 0, end) + data.count(b"'s'", 0, end)
        if shared:
            found = _SHARED_INDEX.findall(data, 0, end)
            size = len(self.lengths)
            self.text += sum(self.lengths[i] if i < size else self.longest for i in map(int, found))
            self.text += (shared - len(found)) * self.longest  # an index we could not see
            self._check_text()

    def _positional(self, data: bytes) -> None:
        """Rows and cells without ``r``: each row follows the last, each cell the last."""
        parts = data.split(b"<row")
        self.col += _count_cells(parts[0], 0, len(parts[0]))  # the row the last block left open
        widest = self.col
        for part in parts[1:]:
            self.row += 1
            self.col = _count_cells(part, 0, len(part))
            widest = max(widest, self.col)
        if self.row or widest:
            self._span((max(self.row - len(parts) + 1, 1), max(self.row, 1)), (1, max(widest, 1)))

    def _exact(self, data: bytes, end: int) -> None:
        for m in _XLSX_TAG.finditer(data, 0, end):
            ref = _ATTR_R.search(m[2])
            if m[1] == b"row":
                if ref is not None and not ref[1].isdigit():
                    raise BankInputError("UNREADABLE", "xlsx 文件损坏（行号格式错误）", repr(ref[1][:20]))
                self.row, self.col = (int(ref[1]) if ref is not None else self.row + 1), 0
                continue
            if ref is not None:
                cell = _CELL_REF.fullmatch(ref[1])
                if cell is None:
                    raise BankInputError("UNREADABLE", "xlsx 文件损坏（单元格坐标格式错误）", repr(ref[1][:20]))
                self.col, self.row = _column_number(cell[1]), int(cell[2])
            else:
                self.col += 1
            self._span((self.row, self.row), (self.col, self.col))
            if _ATTR_T_SHARED.search(m[2]):
                i = int(m[3]) if m[3] is not None else -1
                self.text += self.lengths[i] if 0 <= i < len(self.lengths) else self.longest
                self._check_text()


def _check_sheet_size(z: zipfile.ZipFile) -> None:
    """Count what calamine would hold for the first sheet, streaming its XML in bounded
    memory, and refuse it (``FILE_TOO_LARGE``) as soon as it is over a limit.

    A scan of the tags, not an XML parse (several times faster): the text counted is
    every text node of the sheet plus each shared string once per cell that uses it.
    """
    members, shared = _sheet_parts(z)
    for info in z.infolist():  # styles and the like, which calamine reads whole
        if (
            info.file_size > _XLSX_SMALL_PART * 4
            and info.filename.endswith(".xml")
            and info.filename not in members
            and info.filename != shared
        ):
            if not info.filename.startswith("xl/worksheets/"):
                raise BankInputError("FILE_TOO_LARGE", "xlsx 文件中的部件超过大小上限", info.filename)
    lengths = _shared_string_lengths(z, shared)
    for member in members:
        extent = _SheetExtent(lengths, sum(lengths))  # calamine holds the table as well
        tail = b""
        with z.open(member) as fh:
            while True:
                block = fh.read(4 << 20)
                data = tail + block
                cut = data.rfind(b"<") if block else len(data)
                cut = len(data) if cut < 0 else cut
                extent.block(data, cut)
                if not block:
                    break
                tail = data[cut:]
                if len(tail) > MAX_LINE_CHARS:  # one tag of a megabyte: not a spreadsheet
                    raise BankInputError("UNREADABLE", "xlsx 文件损坏（XML 标签过长）", member)


def read_xlsx(path: Path, *, chunk_rows: int, max_decompressed: int | None = None) -> ParsedFile:
    """The first sheet; its first row is the header. Formulas count by their cached value."""
    from python_calamine import CalamineWorkbook

    _check_workbook(path, _cap(max_decompressed))
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
