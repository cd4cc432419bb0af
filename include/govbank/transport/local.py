"""The embedded default: a local folder laid out like the SFTP server."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from govbank.domain.errors import TransientError
from govbank.transport import RemoteFile

_BANK_DIR = re.compile(r"^[A-Z0-9]{2,16}$")


class LocalLanding:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _inbox(self, bank_code: str) -> Path:
        return self.root / bank_code / "inbox"

    def bank_codes(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and _BANK_DIR.match(p.name)
        )

    def list_inbox(self, bank_code: str) -> list[RemoteFile]:
        inbox = self._inbox(bank_code)
        if not inbox.is_dir():
            return []
        out = []
        with os.scandir(inbox) as it:
            for entry in it:
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append(RemoteFile(bank_code, entry.name, st.st_size, st.st_mtime))
        return sorted(out, key=lambda f: f.name)

    def read_small(self, bank_code: str, name: str, limit: int = 65536) -> bytes:
        with (self._inbox(bank_code) / name).open("rb") as fh:
            return fh.read(limit)

    def fetch(self, bank_code: str, name: str, dest: Path, expected_size: int) -> None:
        src = self._inbox(bank_code) / name
        shutil.copyfile(src, dest)
        size = dest.stat().st_size
        if size != expected_size or src.stat().st_size != expected_size:
            raise TransientError(f"{name} changed while it was copied ({expected_size} -> {size})")

    def write_outbox(self, bank_code: str, name: str, data: bytes) -> None:
        outbox = self.root / bank_code / "outbox"
        outbox.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=outbox)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, outbox / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove_inbox(self, bank_code: str, names: list[str]) -> None:
        for name in names:
            (self._inbox(bank_code) / name).unlink(missing_ok=True)

    def close(self) -> None:
        return None
