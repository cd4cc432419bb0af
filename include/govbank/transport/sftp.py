"""The production landing: an SFTP server, reached through Airflow's SFTP provider.

The Airflow connection (type ``sftp``) gives host, port, login and, in its extras,
``private_key`` and ``host_key``. Optional extras: ``landing_root``, the folder that holds
the bank folders (default ``/``: the pipeline's account is jailed there), and
``staging_dir``, a folder of the pipeline's own on the same file system where receipts
are uploaded before being renamed into an outbox (``scripts/sftp-add-bank.sh`` makes
``/.staging``); without it the temporary name is ``.<name>.part`` in the outbox.

Why it is built the way it is:

- One SSH connection serves every call (the hook's managed connection), because each
  new connection costs a key exchange and the pipeline makes many small calls.
- The host key is always verified. A connection that asks to skip the check is refused,
  and a mismatch is a ``ConfigError``: retrying would not help and might hide an attack.
- A file is downloaded to a temporary name beside ``dest`` and renamed only once its size
  matches the listing before and after the copy, so a half-downloaded or still-growing
  file never reaches ``dest``. A dropped connection is retried with backoff (tenacity),
  on a new connection; what is still wrong after that is a ``TransientError`` for
  Airflow to retry later.
- Receipts are uploaded under a temporary name and renamed (``posix-rename``, which
  replaces an older receipt atomically), so a bank never reads half a receipt.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import posixpath
import re
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from govbank.domain.errors import ConfigError, GovbankError, TransientError
from govbank.transport import EntryChanged, LandingLinkError, RemoteFile, check_name
from govbank.util.text import log_safe

if TYPE_CHECKING:
    from paramiko import PKey, SFTPClient

log = logging.getLogger(__name__)

T = TypeVar("T")
_BANK_DIR = re.compile(r"^[A-Z0-9]{2,16}$")
_CHUNK = 1024 * 1024
# paramiko's default: every read request is sent at once, by a helper thread that is
# then done (a limit keeps it sending, and it dies noisily if the connection drops).
# Memory stays bounded by the SSH channel window, not by the file size.
_PREFETCH_REQUESTS: int | None = None


class _Dropped(TransientError):
    """The connection broke during a call; the call is repeated on a new connection."""


def _fingerprint(key: PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _check_name(name: str) -> str:
    return check_name(name)


def _check_bank(bank_code: str) -> str:
    if not _BANK_DIR.match(bank_code):
        raise ValueError(f"not a bank code: {bank_code!r}")
    return bank_code


class SftpLanding:
    """The ``Landing`` on an SFTP server named by an Airflow connection id."""

    def __init__(
        self,
        conn_id: str,
        *,
        attempts: int = 4,
        backoff: float = 1.0,
        io_timeout: float = 60.0,
    ) -> None:
        """``attempts`` per call when the connection drops, waiting ``backoff`` x 1, 2, 4 s."""
        self.conn_id = conn_id
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.io_timeout = io_timeout
        self.root = "/"
        self.staging_dir: str | None = None
        self._hook: Any = None
        self._stack: contextlib.ExitStack | None = None
        self._sftp: SFTPClient | None = None
        self._posix_rename = True

    # ---- connection ------------------------------------------------------------------

    def _new_hook(self) -> Any:
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        try:
            # conn_retry_attempts=1: our own retry loop decides what is worth retrying
            # (the hook's would also retry a wrong host key, three times).
            # no_host_key_check=False: the constructor wins over the extras.
            hook = SFTPHook(
                ssh_conn_id=self.conn_id, conn_retry_attempts=1, no_host_key_check=False
            )
            extra = hook.get_connection(self.conn_id).extra_dejson
        except GovbankError:
            raise
        except Exception as exc:  # not found, unreadable private key, bad host_key type
            raise ConfigError(f"SFTP connection '{self.conn_id}' is unusable: {exc}") from exc
        asked_off = [
            k
            for k in ("no_host_key_check", "allow_host_key_change", "ignore_hostkey_verification")
            if str(extra.get(k, "")).lower() == "true"
        ]
        if asked_off or hook.no_host_key_check or hook.allow_host_key_change:
            raise ConfigError(
                f"SFTP connection '{self.conn_id}' turns host key checking off "
                f"({', '.join(asked_off)}): the landing requires it on; remove that extra "
                "and set host_key to the server's public host key ('ssh-ed25519 AAAA...')"
            )
        self.root = str(extra.get("landing_root") or "/")
        self.staging_dir = str(extra["staging_dir"]) if extra.get("staging_dir") else None
        return hook

    def _connect(self) -> SFTPClient:
        if self._sftp is not None:
            return self._sftp
        import paramiko

        hook = self._new_hook()
        stack = contextlib.ExitStack()
        where = f"{hook.remote_host}:{hook.port}"
        try:
            sftp = stack.enter_context(hook.get_managed_conn())
        except paramiko.BadHostKeyException as exc:
            raise ConfigError(
                f"SFTP host key does not match for {where} (connection '{self.conn_id}'): "
                f"the server presented {exc.key.get_name()} {_fingerprint(exc.key)}, the "
                f"connection's host_key is {exc.expected_key.get_name()} "
                f"{_fingerprint(exc.expected_key)}. Check the connection's host_key extra "
                "against the server's real key (from its administrator, or ssh-keyscan on a "
                "trusted network). If the server was reinstalled, update host_key; otherwise "
                "someone may be intercepting the connection."
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise ConfigError(
                f"SFTP server {where} refused login '{hook.username}' (connection "
                f"'{self.conn_id}'): check the login and private_key, and that the public "
                "key is in the server's authorized keys for that account"
            ) from exc
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc):
                raise ConfigError(
                    f"SFTP server {where} is not known (connection '{self.conn_id}'): set the "
                    "connection's host_key extra to the server's public host key "
                    "('ssh-ed25519 AAAA...')"
                ) from exc
            raise _Dropped(f"SFTP connection to {where} failed: {exc}") from exc
        except (OSError, EOFError) as exc:
            raise _Dropped(f"SFTP connection to {where} failed: {exc}") from exc
        channel = sftp.get_channel()
        if channel is not None:
            channel.settimeout(self.io_timeout)
        self._hook, self._stack, self._sftp = hook, stack, sftp
        log.info("SFTP connected to %s as %s", where, hook.username)
        return sftp

    def _disconnect(self) -> None:
        stack, self._stack, self._sftp, self._hook = self._stack, None, None, None
        if stack is not None:
            try:
                stack.close()
            except Exception as exc:  # closing a broken connection may fail too
                log.debug("SFTP close after failure: %r", exc)

    @staticmethod
    def _is_drop(exc: BaseException, sftp: SFTPClient) -> bool:
        """Did the connection break (retry elsewhere), or did the server answer an error?"""
        import paramiko
        from paramiko.sftp import SFTPError

        if isinstance(exc, paramiko.BadHostKeyException | paramiko.AuthenticationException):
            return False
        if isinstance(exc, EOFError | paramiko.SSHException | SFTPError | ConnectionError):
            return True
        if isinstance(exc, socket.timeout):
            return True
        if isinstance(exc, OSError):
            channel = sftp.get_channel()
            if channel is None or channel.closed:
                return True
            transport = channel.get_transport()
            return transport is None or not transport.is_active()
        return False

    def _call(self, what: str, op: Callable[[SFTPClient], T]) -> T:
        """Run ``op`` on the connection; reconnect and repeat it if the connection drops."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s; reconnecting in %.1f s (attempt %d of %d)",
                exc,
                wait,
                state.attempt_number + 1,
                self.attempts,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=30),
            retry=retry_if_exception_type(_Dropped),
            before_sleep=before_sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                sftp = self._connect()
                try:
                    return op(sftp)
                except GovbankError:
                    raise
                except Exception as exc:
                    if self._is_drop(exc, sftp):
                        self._disconnect()
                        raise _Dropped(f"SFTP {what}: connection lost ({exc!r})") from exc
                    if isinstance(exc, PermissionError):
                        raise ConfigError(
                            f"SFTP {what}: permission denied for the pipeline's account "
                            f"(connection '{self.conn_id}'): check the bank folder's owners "
                            "and modes (scripts/sftp-add-bank.sh sets them)"
                        ) from exc
                    if isinstance(exc, FileNotFoundError):
                        raise TransientError(f"SFTP {what}: no longer there ({exc})") from exc
                    if isinstance(exc, OSError):  # an SFTP "failure" status: server-side trouble
                        raise TransientError(f"SFTP {what}: server error ({exc})") from exc
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # ---- paths -------------------------------------------------------------------------

    def _path(self, bank_code: str, box: str, name: str | None = None) -> str:
        parts = [self.root, _check_bank(bank_code), box]
        if name is not None:
            parts.append(_check_name(name))
        return posixpath.join(*parts)

    def _check_folders(self, sftp: SFTPClient, bank_code: str, box: str) -> None:
        """The bank folder and its ``box`` are folders, not links (``lstat``): the server
        would follow a link to another bank's folder."""
        for path in (self._path(bank_code, ""), self._path(bank_code, box)):
            mode = sftp.lstat(path.rstrip("/")).st_mode or 0
            if not stat.S_ISDIR(mode):
                raise LandingLinkError(
                    f"SFTP landing folder {path} is a symbolic link or not a folder: the bank "
                    "is not processed until an operator replaces it with a real folder"
                )

    # ---- Landing -----------------------------------------------------------------------

    def bank_codes(self) -> list[str]:
        def op(sftp: SFTPClient) -> list[str]:
            return sorted(
                a.filename
                for a in sftp.listdir_attr(self.root)
                # a link is listed so that processing it raises LandingLinkError (an alert)
                if (stat.S_ISDIR(a.st_mode or 0) or stat.S_ISLNK(a.st_mode or 0))
                and _BANK_DIR.match(a.filename)
            )

        return self._call("list bank folders", op)

    def list_inbox(self, bank_code: str) -> list[RemoteFile]:
        """One directory listing; sizes come with the names (no stat per file)."""
        _check_bank(bank_code)

        def op(sftp: SFTPClient) -> list[RemoteFile]:
            try:
                self._check_folders(sftp, bank_code, "inbox")
                entries = sftp.listdir_attr(self._path(bank_code, "inbox"))
            except FileNotFoundError:
                return []
            files = [
                RemoteFile(bank_code, a.filename, int(a.st_size or 0), float(a.st_mtime or 0))
                for a in entries
                if stat.S_ISREG(a.st_mode or 0)  # readdir reports lstat: symlinks are skipped
            ]
            return sorted(files, key=lambda f: f.name)

        return self._call(f"list {bank_code}/inbox", op)

    def read_small(self, bank_code: str, name: str, limit: int = 65536) -> bytes:
        _check_bank(bank_code)
        _check_name(name)

        def op(sftp: SFTPClient) -> bytes:
            path = self._path(bank_code, "inbox", name)
            before = self._regular(sftp, bank_code, name)
            with sftp.open(path, "rb") as fh:
                self._same_file(fh.stat(), before, bank_code, name)
                return fh.read(limit)

        return self._call(f"read {bank_code}/inbox/{log_safe(name)}", op)

    def fetch(self, bank_code: str, name: str, dest: Path, expected_size: int) -> None:
        """Download to a temporary file beside ``dest``; rename it only when it is whole."""
        _check_bank(bank_code)
        _check_name(name)
        dest = Path(dest)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)

        def op(sftp: SFTPClient) -> None:
            path = self._path(bank_code, "inbox", name)
            before = self._regular(sftp, bank_code, name)
            if before.st_size != expected_size:
                raise TransientError(
                    f"{bank_code}/inbox/{log_safe(name)} is {before.st_size} bytes, listed as "
                    f"{expected_size}: still being written; left alone"
                )
            with tmp.open("wb") as out:
                with sftp.open(path, "rb") as src:
                    self._same_file(src.stat(), before, bank_code, name)
                    src.prefetch(expected_size, _PREFETCH_REQUESTS)
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            got = tmp.stat().st_size
            after = self._regular(sftp, bank_code, name)
            if (got, after.st_size, after.st_mtime) != (
                expected_size,
                expected_size,
                before.st_mtime,
            ):
                raise TransientError(
                    f"{bank_code}/inbox/{log_safe(name)} changed during the download (listed "
                    f"{expected_size} bytes, got {got}, now {after.st_size}); left alone"
                )

        try:
            self._call(f"download {bank_code}/inbox/{log_safe(name)}", op)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def _regular(self, sftp: SFTPClient, bank_code: str, name: str) -> Any:
        """``lstat`` of an inbox entry, which must be a regular file (a link is not)."""
        self._check_folders(sftp, bank_code, "inbox")
        attrs = sftp.lstat(self._path(bank_code, "inbox", name))
        if not stat.S_ISREG(attrs.st_mode or 0):
            raise EntryChanged(f"{bank_code}/inbox/{log_safe(name)} is not a regular file; not read")
        return attrs

    @staticmethod
    def _same_file(opened: Any, listed: Any, bank_code: str, name: str) -> None:
        """SFTP v3 has no O_NOFOLLOW: the opened handle (``fstat``) must be a regular file
        of the size and mtime ``lstat`` gave the name, or it was swapped in between."""
        if not stat.S_ISREG(opened.st_mode or 0) or (opened.st_size, opened.st_mtime) != (
            listed.st_size,
            listed.st_mtime,
        ):
            raise EntryChanged(f"{bank_code}/inbox/{log_safe(name)} changed as it was opened; not read")

    def write_outbox(self, bank_code: str, name: str, data: bytes) -> None:
        """Upload under a temporary name, then rename over ``name`` (replacing an older one)."""
        _check_bank(bank_code)
        _check_name(name)

        def op(sftp: SFTPClient) -> None:
            self._check_folders(sftp, bank_code, "outbox")
            final = self._path(bank_code, "outbox", name)
            if self.staging_dir:  # invisible to the bank until the rename
                part = posixpath.join(self.staging_dir, f"{bank_code}.{name}.part")
            else:
                part = self._path(bank_code, "outbox", f".{name}.part")
            with sftp.open(part, "wb") as fh:
                fh.set_pipelined(True)
                fh.write(data)
                fh.chmod(0o644)  # the bank reads it as "other"; its outbox is its own
            self._replace(sftp, part, final)

        self._call(f"write {bank_code}/outbox/{log_safe(name)}", op)

    def _replace(self, sftp: SFTPClient, part: str, final: str) -> None:
        if self._posix_rename:
            try:
                sftp.posix_rename(part, final)
                return
            except OSError as exc:
                if exc.errno is not None or "unsupported" not in str(exc).lower():
                    raise
                log.warning("SFTP server lacks posix-rename; replacing receipts in two steps")
                self._posix_rename = False
        with contextlib.suppress(FileNotFoundError):
            sftp.remove(final)
        sftp.rename(part, final)

    def remove_inbox(self, bank_code: str, names: list[str]) -> None:
        _check_bank(bank_code)
        for n in names:
            _check_name(n)

        def op(sftp: SFTPClient) -> None:
            for name in names:
                with contextlib.suppress(FileNotFoundError):  # a repeat after a drop
                    sftp.remove(self._path(bank_code, "inbox", name))

        self._call(f"remove {len(names)} file(s) from {bank_code}/inbox", op)

    def close(self) -> None:
        self._disconnect()

    def __enter__(self) -> SftpLanding:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
