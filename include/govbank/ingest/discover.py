"""Which inbox files are complete, and what their names and control files say."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from govbank.domain.datasets import Dataset
from govbank.domain.errors import BankInputError
from govbank.transport import RemoteFile
from govbank.util.text import log_safe

# ASCII digits only, and the whole name: ``$`` alone would let "x.csv\n" through
FILE_NAME = re.compile(
    r"(?P<dataset>OUTLET|ELIC)_(?P<bank>[A-Z0-9]{2,16})_(?P<date>[0-9]{8})(?:_(?P<seq>[0-9]{2}))?"
    r"\.(?P<ext>csv|txt|xlsx|csv\.gz|txt\.gz)",
    re.ASCII,
)
_ROWS = re.compile(r"[0-9]{1,15}", re.ASCII)
_SHA256 = re.compile(r"[0-9a-fA-F]{64}", re.ASCII)
OK_SUFFIX = ".ok"
# bytes of UTF-8, not characters: what a file system limits (255 bytes a name). A valid
# name is under 50 bytes; 128 leaves room for what we add around it on our side
# (``<sha256>__<name>`` in the archive, ``<name>.receipt.json`` in the outbox).
MAX_NAME_BYTES = 128
_DATASET_ORDER = {Dataset.OUTLET: 0, Dataset.ELIC: 1}


@dataclass(frozen=True)
class FileName:
    name: str
    dataset: Dataset
    bank_code: str
    business_date: dt.date
    seq: int
    ext: str

    @property
    def gzipped(self) -> bool:
        return self.ext.endswith(".gz")

    @property
    def fmt(self) -> str:
        return "xlsx" if self.ext == "xlsx" else "delimited"


def name_bytes(name: str) -> int:
    """Length in bytes as stored; undecodable bytes (surrogate escapes) count as one each."""
    return len(name.encode("utf-8", "surrogateescape"))


def bounded_name(name: str) -> str:
    """``name`` itself when within :data:`MAX_NAME_BYTES`, else a stand-in that is.

    For paths and receipt names we build from a name the bank chose: a longer one is cut
    on a character boundary and given a digest of the whole, so two long names that
    share a beginning still get different paths. Slashes, NULs and controls (which a
    path or a log must never hold) become ``_``.
    """
    plain = "".join("_" if c in "/\\\x00" or not c.isprintable() else c for c in name)
    plain = plain.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    if plain == name and name_bytes(name) <= MAX_NAME_BYTES and name not in {".", ".."}:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    room = MAX_NAME_BYTES - len(digest) - 1
    cut = plain.encode("utf-8")[:room].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def parse_file_name(name: str) -> FileName:
    if name_bytes(name) > MAX_NAME_BYTES:
        raise BankInputError(
            "FILE_NAME_INVALID",
            f"文件名超过 {MAX_NAME_BYTES} 字节（UTF-8）",
            log_safe(name, 80),
        )
    m = FILE_NAME.fullmatch(name)
    if not m:
        raise BankInputError("FILE_NAME_INVALID", "文件名不符合规范", log_safe(name, 160))
    try:
        day = dt.datetime.strptime(m["date"], "%Y%m%d").date()
    except ValueError as exc:
        raise BankInputError("FILE_NAME_INVALID", "文件名中的日期不存在", log_safe(name)) from exc
    return FileName(name, Dataset(m["dataset"]), m["bank"], day, int(m["seq"] or 0), m["ext"])


def complete_files(listing: list[RemoteFile]) -> list[tuple[RemoteFile, RemoteFile]]:
    """Data files whose ``.ok`` exists, paired with it; the rest are still uploading."""
    by_name = {f.name: f for f in listing}
    out = []
    for f in listing:
        if f.name.endswith(OK_SUFFIX) or f.name.startswith("."):
            continue
        ok = by_name.get(f.name + OK_SUFFIX)
        if ok is not None:
            out.append((f, ok))
    return out


def processing_order(name: str) -> tuple:
    """Business date, then OUTLET before ELIC, then sequence; bad names first."""
    try:
        fn = parse_file_name(name)
    except BankInputError:
        return (0, dt.date.min, 0, 0, name)
    return (1, fn.business_date, _DATASET_ORDER[fn.dataset], fn.seq, name)


@dataclass(frozen=True)
class ControlFile:
    rows: int | None = None
    sha256: str | None = None


def parse_ok(data: bytes) -> ControlFile:
    """An empty ``.ok`` is valid; ``rows=`` and ``sha256=`` lines are checked when present."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BankInputError("OK_INVALID", "控制文件(.ok)不是 UTF-8 文本") from exc
    rows: int | None = None
    sha: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep:
            raise BankInputError("OK_INVALID", "控制文件(.ok)每行应为 键=值", line[:80])
        if key == "rows":
            if not _ROWS.fullmatch(value):  # str.isdigit() accepts "²", which int() refuses
                raise BankInputError("OK_INVALID", "控制文件(.ok)中 rows 不是整数", value[:80])
            rows = int(value)
        elif key == "sha256":
            if not _SHA256.fullmatch(value):
                raise BankInputError("OK_INVALID", "控制文件(.ok)中 sha256 格式错误", value[:80])
            sha = value.lower()
    return ControlFile(rows, sha)
