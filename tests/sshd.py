"""A real OpenSSH ``sshd`` for the SFTP tests, set up like the production landing server.

Why the real thing: chroot jails, directory permissions and host-key checks are what
keep one bank out of another bank's files, and only OpenSSH enforces them the way the
production server does. The accounts and folders are made by ``scripts/sftp-add-bank.sh``
(the documented onboarding path), so the tests also prove the script.

Everything lives under a root-owned ``/srv/govbank-test-<random>/`` (a chroot is refused
under ``/tmp``); account and group names carry the same random prefix, so parallel runs
do not collide. ``close()`` removes the accounts, groups and folders; a run that died
without closing is cleaned up by the next ``start()``.

    server = SshdServer.start(banks=["WZB", "OHRCB"])
    os.environ["AIRFLOW_CONN_LANDING"] = server.conn_json(server.pipeline)
    ...
    server.close()
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import grp
import io
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko

SSHD = "/usr/sbin/sshd"
ADD_BANK = Path(__file__).resolve().parents[1] / "scripts" / "sftp-add-bank.sh"
DEFAULT_BASE = Path("/srv")
_DIR_PREFIX = "govbank-test-"


class SshdError(RuntimeError):
    """sshd could not be set up or started; the message carries its log."""


def _run(cmd: Sequence[str], env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        list(cmd), capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        raise SshdError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (no psutil needed)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _alive(pid: int) -> bool:
    """Running (a zombie counts as gone: it holds no connection)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: Sequence[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            for p in pids:
                if _alive(p):
                    os.kill(p, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.01)


def _remove_accounts(accounts: Sequence[str], groups: Sequence[str]) -> None:
    for name in accounts:
        subprocess.run(["userdel", "-f", name], capture_output=True)
    for name in [*accounts, *groups]:  # user groups left behind, then the shared ones
        subprocess.run(["groupdel", name], capture_output=True)


def cleanup_stale(base: Path = DEFAULT_BASE) -> None:
    """Remove servers left by test processes that died without ``close()``."""
    for folder in base.glob(f"{_DIR_PREFIX}*"):
        try:
            owner = json.loads((folder / "owner.json").read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{owner['pid']}").exists():
            continue
        for pid in owner.get("sshd_pids", []):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        _remove_accounts(owner["accounts"], owner["groups"])
        shutil.rmtree(folder, ignore_errors=True)


class SshdServer:
    """One sshd on 127.0.0.1 with a bank account per bank and the pipeline's account."""

    def __init__(self, folder: Path, banks: Sequence[str], prefix: str, log_level: str) -> None:
        self.folder = folder
        self.etc = folder / "etc"
        self.root = folder / "landing"
        self.banks = list(banks)
        self.prefix = prefix
        self.pipeline = f"{prefix}pipeline"
        self.banks_group = f"{prefix}banks"
        self.landing_group = f"{prefix}landing"
        self.log_level = log_level
        self.host = "127.0.0.1"
        self.port = 0
        self.config = self.etc / "sshd_config"
        self.log = self.etc / "sshd.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._syslog: socket.socket | None = None
        self._sftp_lines: list[str] = []

    # ---- lifecycle -------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        banks: Sequence[str],
        *,
        base: Path = DEFAULT_BASE,
        log_level: str = "VERBOSE",
    ) -> SshdServer:
        """Create accounts and folders with the onboarding script, then start sshd."""
        if os.geteuid() != 0:
            raise SshdError("the sshd test server needs root (useradd, chroot)")
        if not Path(SSHD).exists():
            raise SshdError(f"{SSHD} is missing: apt-get install -y openssh-server")
        cleanup_stale(base)
        prefix = "gb" + secrets.token_hex(3) + "_"
        folder = base / (_DIR_PREFIX + prefix.rstrip("_"))
        folder.mkdir(mode=0o755)
        os.chmod(folder, 0o755)
        server = cls(folder, banks, prefix, log_level)
        atexit.register(server.close)
        try:
            server._write_owner()
            server._provision()
            server.port = _free_port()
            server._write_config()
            server._spawn()
        except BaseException:
            server.close()
            raise
        return server

    def _provision(self) -> None:
        self.etc.mkdir(mode=0o755)
        (self.etc / "client").mkdir(mode=0o700)
        _run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "govbank-test-host",
                "-f",
                str(self.etc / "ssh_host_ed25519_key"),
            ]
        )
        self._onboard(None)
        for bank in self.banks:
            self._onboard(bank)
        self._listen_syslog()

    def _onboard(self, bank_code: str | None) -> None:
        """A new key pair, then ``sftp-add-bank.sh`` for the bank (None: the pipeline)."""
        account = self.pipeline if bank_code is None else self.account_for(bank_code)
        key = self.etc / "client" / account
        key.unlink(missing_ok=True)
        Path(f"{key}.pub").unlink(missing_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", account, "-f", str(key)])
        args = ["--pipeline", f"{key}.pub"] if bank_code is None else [bank_code, f"{key}.pub"]
        _run(["bash", str(ADD_BANK), *args], env=self.script_env())

    def add_bank(self, bank_code: str) -> str:
        """Onboard a bank while sshd runs (or give it a new key); its account name."""
        if bank_code not in self.banks:
            self.banks.append(bank_code)
            self._write_owner()
        self._onboard(bank_code)
        return self.account_for(bank_code)

    def _listen_syslog(self) -> None:
        """Receive the pipeline session's internal-sftp log (one line per SFTP request).

        internal-sftp logs through syslog(3), which inside the jail opens ``/dev/log``
        relative to the chroot: a socket at ``<root>/dev/log`` collects those lines
        (production can do the same with rsyslog's ``AddUnixListenSocket``).
        """
        dev = self.root / "dev"
        dev.mkdir(mode=0o755)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(dev / "log"))
        os.chmod(dev / "log", 0o666)
        self._syslog = sock

        def pump() -> None:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                line = data.decode("utf-8", "replace")
                self._sftp_lines.append(line.split("]: ", 1)[-1].strip())

        threading.Thread(target=pump, name="sshd-syslog", daemon=True).start()

    def script_env(self) -> dict[str, str]:
        """The settings ``scripts/sftp-add-bank.sh`` needs for this server."""
        return {
            "GOVBANK_SFTP_ROOT": str(self.root),
            "GOVBANK_SFTP_KEYS": str(self.etc / "authorized_keys"),
            "GOVBANK_SFTP_PIPELINE": self.pipeline,
            "GOVBANK_SFTP_PREFIX": self.prefix,
            "GOVBANK_SFTP_BANKS_GROUP": self.banks_group,
            "GOVBANK_SFTP_LANDING_GROUP": self.landing_group,
            "GOVBANK_SFTP_LOG_LEVEL": self.log_level,
        }

    def _write_config(self) -> None:
        match_blocks = _run(["bash", str(ADD_BANK), "--sshd-config"], env=self.script_env())
        self.config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.host}\n"
            f"HostKey {self.etc / 'ssh_host_ed25519_key'}\n"
            "PidFile none\n"
            f"LogLevel {self.log_level}\n"
            "UsePAM no\n"
            "PermitRootLogin no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "AuthenticationMethods publickey\n"
            "AuthorizedKeysFile none\n"
            f"AllowGroups {self.banks_group} {self.landing_group}\n"
            "Subsystem sftp internal-sftp\n" + match_blocks
        )

    def _write_owner(self) -> None:
        pids = [self._proc.pid] if self._proc and self._proc.poll() is None else []
        accounts = [f"{self.prefix}pipeline"] + [self.account_for(b) for b in self.banks]
        (self.folder / "owner.json").write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "accounts": accounts,
                    "sshd_pids": pids,
                    "groups": [self.banks_group, self.landing_group],
                }
            )
        )

    def _spawn(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        offset = self.log.stat().st_size if self.log.exists() else 0
        self._proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ready = f"Server listening on {self.host} port {self.port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ready in self.log_text(offset):
                self._write_owner()
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.02)
        self._terminate_listener()
        raise SshdError(f"sshd did not start on port {self.port}; its log:\n{self.log_text()}")

    def session_pids(self) -> list[int]:
        """Processes serving open connections (descendants of the listener), deepest first."""
        if self._proc is None:
            return []
        tree = _children()
        out: list[int] = []
        level = tree.get(self._proc.pid, [])
        while level:
            out[:0] = level
            level = [c for p in level for c in tree.get(p, [])]
        return out

    def _session_leaves(self) -> list[int]:
        """The internal-sftp processes, which read and write the files."""
        tree = _children()
        return [p for p in self.session_pids() if not tree.get(p)]

    def kill_sessions(self, sig: int = signal.SIGKILL) -> int:
        """Cut every open connection at once (the listener keeps accepting); how many.

        Every process of a connection gets the signal: the SFTP child alone would only
        end the SFTP channel, and the session process holds the TCP connection.
        """
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                os.kill(pid, signal.SIGCONT)  # a frozen process acts on SIGTERM only when thawed
        _wait_gone(pids, timeout=2.0)
        return len(pids)

    def freeze_sessions(self) -> list[int]:
        """SIGSTOP the connections: a transfer pauses exactly where it is (``thaw_sessions``)."""
        pids = self._session_leaves()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    def thaw_sessions(self, pids: Sequence[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _terminate_listener(self, sig: int = signal.SIGTERM) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop sshd and drop every connection; accounts and files stay (see ``restart``)."""
        self.kill_sessions(signal.SIGTERM)
        self._terminate_listener()

    def kill(self) -> None:
        """Kill sshd and its connections abruptly (SIGKILL), like a crashed server."""
        self.kill_sessions(signal.SIGKILL)
        self._terminate_listener(signal.SIGKILL)

    def restart(self) -> None:
        """Start sshd again on the same port, host key and accounts."""
        if self.running:
            self.stop()
        self._spawn()

    def close(self) -> None:
        """Stop sshd and remove the accounts, groups and folders (teardown)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self.kill()
        if self._syslog is not None:
            self._syslog.shutdown(socket.SHUT_RDWR)
            self._syslog.close()
        _remove_accounts(
            [self.pipeline] + [self.account_for(b) for b in self.banks],
            [self.banks_group, self.landing_group],
        )
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> SshdServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- what the tests use ------------------------------------------------------------

    def account_for(self, bank_code: str) -> str:
        return self.prefix + bank_code.lower()

    @property
    def host_key_line(self) -> str:
        """``ssh-ed25519 AAAA...``: what goes in the connection's ``host_key`` extra."""
        text = (self.etc / "ssh_host_ed25519_key.pub").read_text()
        return " ".join(text.split()[:2])

    def key_for(self, account: str) -> str:
        """The account's private key (OpenSSH PEM)."""
        return (self.etc / "client" / account).read_text()

    def conn_dict(self, account: str, **extra: object) -> dict[str, object]:
        return {
            "conn_type": "sftp",
            "host": self.host,
            "port": self.port,
            "login": account,
            "extra": {
                "host_key": self.host_key_line,
                "private_key": self.key_for(account),
                "conn_timeout": 10,
                "compress": False,  # zlib triples the cost of a loopback download
                **extra,
            },
        }

    def conn_json(self, account: str, **extra: object) -> str:
        """The ``AIRFLOW_CONN_<ID>`` value for the SFTP provider; ``extra`` adds extras."""
        return json.dumps(self.conn_dict(account, **extra))

    def inbox_path(self, bank_code: str) -> Path:
        """The bank's inbox on this machine's file system (outside the jail)."""
        return self.root / bank_code / "inbox"

    def outbox_path(self, bank_code: str) -> Path:
        return self.root / bank_code / "outbox"

    def put_inbox_file(self, bank_code: str, name: str, data: bytes) -> Path:
        """Leave a file as the bank's upload would (its owner, the landing group, 0640).

        Quicker than SFTP when a test needs hundreds of files.
        """
        path = self.inbox_path(bank_code) / name
        path.write_bytes(data)
        os.chown(
            path,
            pwd.getpwnam(self.account_for(bank_code)).pw_uid,
            grp.getgrnam(self.landing_group).gr_gid,
        )
        os.chmod(path, 0o640)
        return path

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log.open("rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def sftp_requests(self, mark: int = 0) -> list[str]:
        """internal-sftp log lines of the pipeline's sessions (e.g. ``opendir "/WZB/inbox"``).

        ``mark`` is a value of ``sftp_mark()``; lines arrive asynchronously, so this waits
        until none have come for 0.2 s.
        """
        seen, quiet_since = len(self._sftp_lines), time.monotonic()
        while time.monotonic() - quiet_since < 0.2:
            time.sleep(0.02)
            if len(self._sftp_lines) != seen:
                seen, quiet_since = len(self._sftp_lines), time.monotonic()
        return self._sftp_lines[mark:]

    def sftp_mark(self) -> int:
        return len(self.sftp_requests())

    def log_size(self) -> int:
        """Mark a place in the log; ``log_text(mark)`` then reads what came after it."""
        return self.log.stat().st_size if self.log.exists() else 0

    @contextlib.contextmanager
    def sftp_as(self, account: str) -> Iterator[paramiko.SFTPClient]:
        """A plain paramiko SFTP session as ``account`` (host key checked), closed on exit."""
        import paramiko

        client = paramiko.SSHClient()
        kind, data = self.host_key_line.split()
        client.get_host_keys().add(
            f"[{self.host}]:{self.port}", kind, paramiko.Ed25519Key(data=base64.b64decode(data))
        )
        try:
            client.connect(
                self.host,
                self.port,
                username=account,
                pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(self.key_for(account))),
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
            with client.open_sftp() as sftp:
                yield sftp
        finally:
            client.close()
