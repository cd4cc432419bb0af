"""Files and folders only the pipeline's OS account can read.

Raw archive files and raw API pages hold what the banks and the platform sent, resident
IDs included; the warehouse keeps pseudonyms only. So they are written 0600 in 0700
folders whatever the process umask is, and folders left wider by an earlier version are
narrowed when they are next used.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path, root: Path | None = None) -> Path:
    """``path`` and every folder between ``root`` (included) and it, created or narrowed to 0700.

    Without ``root`` only ``path`` itself is narrowed; missing parents are created 0700 too.
    A folder another account owns (a mounted volume's root) is left as it is: the
    folders below it are ours and closed.
    """
    path = Path(path)
    top = Path(root) if root is not None else path
    chain = [path, *path.parents]
    levels = chain[: chain.index(top) + 1] if top in chain else [path]
    for level in reversed(levels):
        try:
            level.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        except FileNotFoundError:
            level.mkdir(mode=DIR_MODE, parents=True)
        _narrow(level, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Narrow ``path`` to 0600 (before it is renamed into place)."""
    _narrow(Path(path), FILE_MODE)
    return path


def create_private(path: Path) -> Path:
    """Create ``path`` empty and 0600, so whatever is then written into it is never wider."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, data: bytes) -> None:
    """``path`` written 0600 (an existing file is narrowed first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, FILE_MODE)
        fh.write(data)


def _narrow(path: Path, mode: int) -> None:
    st = path.stat()
    if st.st_mode & 0o7777 == mode or st.st_uid != os.geteuid():
        return
    path.chmod(mode)
