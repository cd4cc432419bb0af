"""The standalone dashboard's accounts: a file of user names and salted bcrypt hashes.

One ``name:hash`` line per user (the htpasswd layout, so an administrator recognises
it), written by ``python -m govbank.dashboard add-user NAME``. Only hashes are kept:
whoever reads the file still has to guess each password at bcrypt's cost. The file is
written owner-only (0600) and replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import bcrypt

from govbank.domain.errors import ConfigError

USERS_FILE_ENV = "GOVBANK_DASHBOARD_USERS_FILE"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD = 12
MAX_PASSWORD_BYTES = 72  # bcrypt reads no further: a longer one would be cut silently
ROUNDS = 12


def hash_password(password: str, rounds: int = ROUNDS) -> str:
    """A salted bcrypt hash of ``password`` (refused if bcrypt would truncate it)."""
    raw = password.encode()
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ConfigError(f"a dashboard password is at most {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds)).decode()


def read_users(path: Path) -> dict[str, str]:
    """Name -> bcrypt hash; a malformed line is an error, not a silently missing user."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no dashboard users file at {path}") from None
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not NAME.fullmatch(name) or not hashed.startswith("$2"):
            raise ConfigError(f"{path}:{number}: expected NAME:BCRYPT-HASH")
        users[name] = hashed
    return users


def write_users(path: Path, users: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("".join(f"{name}:{hashed}\n" for name, hashed in sorted(users.items())))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_user(path: Path, name: str, password: str, rounds: int = ROUNDS) -> bool:
    """Add ``name`` or change its password; True when the user is new."""
    if not NAME.fullmatch(name):
        raise ConfigError("a user name is 1-64 letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD:
        raise ConfigError(f"a dashboard password has at least {MIN_PASSWORD} characters")
    users = read_users(path) if path.exists() else {}
    new = name not in users
    users[name] = hash_password(password, rounds)
    write_users(path, users)
    return new


class UserFile:
    """Checks passwords against the users file, re-read when it changes (no restart to
    add a user)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, str] = {}
        # an unknown name costs one bcrypt check too, so timing does not tell names apart
        self._dummy = hash_password("not-a-password-of-anyone", rounds=ROUNDS).encode()
        self._load()
        if not self._users:
            raise ConfigError(f"{path} has no users: add one with python -m govbank.dashboard add-user NAME")

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise ConfigError(f"no dashboard users file at {self.path}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._users = read_users(self.path)
            self._stamp = stamp

    def verify(self, name: str, password: str) -> bool:
        try:
            self._load()
        except (OSError, ConfigError):
            pass  # keep the last good list rather than lock everyone out mid-edit
        raw = password.encode()
        hashed = self._users.get(name)
        if len(raw) > MAX_PASSWORD_BYTES:
            return False
        ok = bcrypt.checkpw(raw, hashed.encode() if hashed else self._dummy)
        return ok and hashed is not None
