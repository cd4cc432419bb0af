"""Where bank files land: a local folder (embedded default) or an SFTP server.

Both present the same small interface, ``Landing``, so every later stage works on
local copies and never knows which one delivered the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from govbank.domain.errors import ConfigError, TransientError

# what a file system holds in one name (Linux NAME_MAX, OpenSSH's too): a transport
# refuses to build a path from a longer name instead of failing half-way with OSError
NAME_MAX_BYTES = 255


class LandingLinkError(ConfigError):
    """A bank folder, or its ``inbox``/``outbox``, is a symbolic link (or not a folder).

    Following it would let one bank's folder read or clear another's, so the bank is
    not processed: the run raises it, and the task fails with an operator alert.
    """


class EntryChanged(TransientError):
    """An inbox entry is no longer the regular file the listing showed (swapped for a
    link, a folder or a device, or a different file): it is not read. The next listing
    shows what it is now (a link is not listed at all)."""


def check_name(name: str) -> str:
    """A plain name within one folder, short enough to be a path component."""
    if (
        not name
        or name in {".", ".."}
        or "/" in name
        or "\x00" in name
        or len(name.encode("utf-8", "surrogateescape")) > NAME_MAX_BYTES
    ):
        raise ValueError(f"not a plain file name: {name[:80]!r}")
    return name


@dataclass(frozen=True)
class RemoteFile:
    bank_code: str
    name: str
    size: int
    mtime: float


class Landing(Protocol):
    def bank_codes(self) -> list[str]:
        """Bank folders present on the landing (each has ``inbox/`` and ``outbox/``)."""
        ...

    def list_inbox(self, bank_code: str) -> list[RemoteFile]:
        """Every file in the bank's inbox, with sizes, in one listing call."""
        ...

    def read_small(self, bank_code: str, name: str, limit: int = 65536) -> bytes:
        """A small inbox file (a ``.ok`` control file)."""
        ...

    def fetch(self, bank_code: str, name: str, dest: Path, expected_size: int) -> None:
        """Copy an inbox file to ``dest``; raise ``TransientError`` if it is not whole."""
        ...

    def write_outbox(self, bank_code: str, name: str, data: bytes) -> None:
        """Write a receipt so that no reader ever sees half of it (temp name, then rename)."""
        ...

    def remove_inbox(self, bank_code: str, names: list[str]) -> None:
        """Remove answered files (and their ``.ok``) from the inbox."""
        ...

    def close(self) -> None: ...


def open_landing(landing_dir: Path, sftp_conn_id: str | None = None) -> Landing:
    """The landing the settings name: SFTP when a connection id is given, else the folder."""
    if sftp_conn_id:
        from govbank.transport.sftp import SftpLanding

        return SftpLanding(sftp_conn_id)
    from govbank.transport.local import LocalLanding

    return LocalLanding(landing_dir)
