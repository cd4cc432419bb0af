"""Read an xlsx bank file: its first sheet, after its size is checked from the XML.

calamine, which reads the sheet, holds it whole; a few MB of xlsx can describe gigabytes
of cells. The sheet's used range, cells and text are counted first by a streaming pass
over the zip's XML, with memory bounded, and a sheet over the limits is refused.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from govbank.domain.errors import BankInputError
from govbank.ingest.read import MAX_LINE_CHARS, ParsedFile, RawChunk, _cap, _clean

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
