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
