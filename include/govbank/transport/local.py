"""The embedded default: a local folder laid out like the SFTP server.

Every path below the landing root is opened one component at a time with
``O_NOFOLLOW`` (relative to the folder above, by descriptor), and every file is checked
on the descriptor it was read through (``fstat``), never by its name: a link planted in
a bank's folder, or a file swapped for one after the listing, can point the run at
another bank's files only if something follows it, and nothing does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from govbank.domain.errors import TransientError
from govbank.transport import EntryChanged, LandingLinkError, RemoteFile, check_name
from govbank.util.text import log_safe

_BANK_DIR = re.compile(r"^[A-Z0-9]{2,16}$")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: a FIFO swapped in must not hang the open; no effect on a regular file
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_COPY_BLOCK = 1 << 20


class LocalLanding:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @contextlib.contextmanager
    def _folder(self, bank_code: str, box: str, create: bool = False) -> Iterator[int | None]:
        """A descriptor of ``<root>/<bank>/<box>``, opened without following a link;
        ``None`` when it does not exist. A link (or a non-folder) raises LandingLinkError."""
        if not _BANK_DIR.match(bank_code):
            raise ValueError(f"not a bank code: {bank_code!r}")
        fds: list[int] = []
        try:
            try:
                fds.append(os.open(self.root, os.O_RDONLY | os.O_DIRECTORY))
            except FileNotFoundError:
                yield None
                return
            for part in (bank_code, box):
                if create and part == box:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fds[-1])
                try:
                    fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
                except FileNotFoundError:
                    yield None
                    return
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise LandingLinkError(
                            f"landing folder {bank_code}/{box if part == box else ''} is a "
                            "symbolic link or not a folder: the bank is not processed until "
                            "an operator replaces it with a real folder"
                        ) from exc
                    raise
            yield fds[-1]
        finally:
            for fd in reversed(fds):
                os.close(fd)

    def bank_codes(self) -> list[str]:
        """Bank folders, links among them: processing one raises ``LandingLinkError``, so
        a linked folder ends in an alert rather than being passed over in silence."""
        if not self.root.is_dir():
            return []
        out = []
        with os.scandir(self.root) as it:
            for entry in it:
                if _BANK_DIR.match(entry.name) and (entry.is_dir() or entry.is_symlink()):
                    out.append(entry.name)
        return sorted(out)

    def list_inbox(self, bank_code: str) -> list[RemoteFile]:
        with self._folder(bank_code, "inbox") as fd:
            if fd is None:
                return []
            out = []
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        out.append(RemoteFile(bank_code, entry.name, st.st_size, st.st_mtime))
        return sorted(out, key=lambda f: f.name)

    @contextlib.contextmanager
    def _open_regular(self, bank_code: str, name: str) -> Iterator[tuple[int, os.stat_result]]:
        check_name(name)
        with self._folder(bank_code, "inbox") as inbox:
            if inbox is None:
                raise FileNotFoundError(f"{bank_code}/inbox")
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=inbox)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise EntryChanged(f"{bank_code}/inbox/{log_safe(name)} is a symbolic link; not read") from exc
                raise
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise EntryChanged(f"{bank_code}/inbox/{log_safe(name)} is not a regular file; not read")
                os.set_blocking(fd, True)
                yield fd, st
            finally:
                os.close(fd)

    def read_small(self, bank_code: str, name: str, limit: int = 65536) -> bytes:
        with self._open_regular(bank_code, name) as (fd, _):
            with os.fdopen(os.dup(fd), "rb") as fh:
                return fh.read(limit)

    def fetch(self, bank_code: str, name: str, dest: Path, expected_size: int) -> None:
        """Copy through the one descriptor whose ``fstat`` showed a regular file of the
        listed size; a different size before or after is a file still being written."""
        with self._open_regular(bank_code, name) as (fd, before):
            if before.st_size != expected_size:
                raise TransientError(
                    f"{log_safe(name)} is {before.st_size} bytes, listed as {expected_size}; left alone"
                )
            with os.fdopen(os.dup(fd), "rb") as src, open(dest, "wb") as out:
                while block := src.read(_COPY_BLOCK):
                    out.write(block)
            after = os.fstat(fd)
        size = dest.stat().st_size
        if size != expected_size or after.st_size != expected_size or after.st_mtime_ns != before.st_mtime_ns:
            raise TransientError(f"{log_safe(name)} changed while it was copied ({expected_size} -> {size})")

    def write_outbox(self, bank_code: str, name: str, data: bytes) -> None:
        check_name(name)
        with self._folder(bank_code, "outbox", create=True) as outbox:
            if outbox is None:  # no bank folder: make it, as before
                (self.root / bank_code).mkdir(parents=True, exist_ok=True)
                return self.write_outbox(bank_code, name, data)
            tmp = f".{uuid.uuid4().hex}.part"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=outbox)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, name, src_dir_fd=outbox, dst_dir_fd=outbox)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=outbox)
                raise
        return None

    def remove_inbox(self, bank_code: str, names: list[str]) -> None:
        for name in names:
            check_name(name)
        with self._folder(bank_code, "inbox") as inbox:
            if inbox is None:
                return
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=inbox)  # a link itself, never its target

    def close(self) -> None:
        return None
