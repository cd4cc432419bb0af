"""SftpLanding against a real OpenSSH server (tests/sshd.py), through an AIRFLOW_CONN_* env."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sshd import SshdServer

from govbank.domain.errors import ConfigError, TransientError
from govbank.ingest.discover import complete_files
from govbank.transport.sftp import SftpLanding

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONN_ID = "govbank_test_sftp"
BANK, OTHER = "WZB", "OHRCB"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    with pytest.MonkeyPatch.context() as mp:
        if "AIRFLOW_HOME" not in os.environ:  # importing Airflow writes there
            mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        srv = SshdServer.start(banks=[BANK, OTHER])
        try:
            yield srv
        finally:
            srv.close()


@pytest.fixture(autouse=True)
def empty_folders(server: SshdServer) -> None:
    for box in (server.inbox_path(BANK), server.outbox_path(BANK)):
        for f in box.iterdir():
            f.unlink()


def use_conn(mp: pytest.MonkeyPatch, server: SshdServer, **extra: object) -> None:
    mp.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", server.conn_json(server.pipeline, **extra))


@pytest.fixture
def landing(server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SftpLanding]:
    use_conn(monkeypatch, server)
    land = SftpLanding(CONN_ID, backoff=0.1)
    yield land
    land.close()


def logins(server: SshdServer, since: int) -> int:
    return server.log_text(since).count(f"Accepted publickey for {server.pipeline} ")


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_bank_codes_are_the_bank_folders(landing: SftpLanding) -> None:
    assert landing.bank_codes() == [OTHER, BANK]


def test_listing_500_files_is_one_directory_read(server: SshdServer, landing: SftpLanding) -> None:
    for i in range(300):
        name = f"ELIC_{BANK}_20230615_{i:03d}.csv"
        server.put_inbox_file(BANK, name, b"x" * i)
        if i < 200:
            server.put_inbox_file(BANK, name + ".ok", b"")
    landing.bank_codes()  # connect first, so the mark below sees only the listing
    mark = server.sftp_mark()

    files = landing.list_inbox(BANK)

    requests = server.sftp_requests(mark)
    assert len(files) == 500
    sizes = {f.name: f.size for f in files}
    assert sizes[f"ELIC_{BANK}_20230615_299.csv"] == 299
    assert [r for r in requests if r.startswith("opendir")] == [f'opendir "/{BANK}/inbox"']
    # two lstat calls prove the bank folder and its inbox are not links; none per file
    folders = [f'lstat name "/{BANK}"', f'lstat name "/{BANK}/inbox"']
    assert [r for r in requests if "stat" in r] == folders, requests
    assert not [r for r in requests if r.startswith("open ")], requests
    # the discovery rule: a data file counts only once its .ok is there
    complete = complete_files(files)
    assert len(complete) == 200
    assert f"ELIC_{BANK}_20230615_250.csv" not in {f.name for f, _ in complete}


def test_one_connection_serves_every_call(
    server: SshdServer, landing: SftpLanding, tmp_path: Path
) -> None:
    server.put_inbox_file(BANK, "a.csv", b"a,b\n1,2\n")
    server.put_inbox_file(BANK, "a.csv.ok", b"rows=1\n")
    mark = server.log_size()
    landing.bank_codes()
    ((f, ok),) = complete_files(landing.list_inbox(BANK))
    assert landing.read_small(BANK, ok.name) == b"rows=1\n"
    landing.fetch(BANK, f.name, tmp_path / f.name, f.size)
    landing.write_outbox(BANK, "a.csv.receipt.json", b"{}")
    landing.remove_inbox(BANK, [f.name, ok.name])
    assert logins(server, mark) == 1


def test_fetch_verifies_the_size_and_keeps_partial_files_out(
    server: SshdServer, landing: SftpLanding, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    server.put_inbox_file(BANK, "f.csv", data)
    (listed,) = landing.list_inbox(BANK)

    landing.fetch(BANK, "f.csv", tmp_path / "f.csv", listed.size)
    assert (
        hashlib.sha256((tmp_path / "f.csv").read_bytes()).digest() == hashlib.sha256(data).digest()
    )
    assert leftovers(tmp_path, "f.csv") == []

    with pytest.raises(TransientError, match="still being written"):
        landing.fetch(BANK, "f.csv", tmp_path / "g.csv", listed.size - 1)
    assert leftovers(tmp_path, "f.csv") == []


def test_a_growing_file_is_left_alone(
    server: SshdServer, landing: SftpLanding, tmp_path: Path
) -> None:
    server.put_inbox_file(BANK, "grow.csv", b"1" * 100_000)
    (listed,) = landing.list_inbox(BANK)
    with server.sftp_as(server.account_for(BANK)) as bank, bank.open("/inbox/grow.csv", "ab") as fh:
        fh.write(b"2" * 10_000)  # the bank is still uploading

    with pytest.raises(TransientError, match="still being written"):
        landing.fetch(BANK, "grow.csv", tmp_path / "grow.csv", listed.size)
    assert (server.inbox_path(BANK) / "grow.csv").stat().st_size == 110_000
    assert list(tmp_path.iterdir()) == []


def _wait_for_part(folder: Path, at_least: int, timeout: float = 20.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in folder.glob(".*.part"):
            if p.stat().st_size >= at_least:
                return p
        time.sleep(0.002)
    raise AssertionError(f"no download in progress in {folder}")


def test_a_file_growing_during_the_download_is_left_alone(
    server: SshdServer, landing: SftpLanding, tmp_path: Path
) -> None:
    size = 16 * 1024 * 1024
    path = server.put_inbox_file(BANK, "late.csv", os.urandom(size))
    landing.list_inbox(BANK)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(landing.fetch, BANK, "late.csv", tmp_path / "late.csv", size)
        _wait_for_part(tmp_path, 1)
        frozen = server.freeze_sessions()  # the transfer pauses where it is
        with path.open("ab") as fh:
            fh.write(b"more rows\n")
        server.thaw_sessions(frozen)
        with pytest.raises(TransientError, match="changed during the download"):
            job.result(timeout=60)
    assert path.stat().st_size == size + 10
    assert list(tmp_path.iterdir()) == []


def _cut_mid_download(server: SshdServer, landing: SftpLanding, tmp_path: Path, cut: str) -> None:
    data = os.urandom(16 * 1024 * 1024)
    server.put_inbox_file(BANK, "big.csv", data)
    (listed,) = landing.list_inbox(BANK)
    mark = server.log_size()
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(landing.fetch, BANK, "big.csv", tmp_path / "big.csv", listed.size)
        part = _wait_for_part(tmp_path, 1024 * 1024)
        server.freeze_sessions()
        assert part.stat().st_size < len(data), "the download finished before the cut"
        if cut == "connection":
            server.kill_sessions()
        else:  # the whole server crashes and comes back a second later
            server.kill()
            threading.Timer(1.0, server.restart).start()
        job.result(timeout=60)
    assert (tmp_path / "big.csv").read_bytes() == data
    assert leftovers(tmp_path, "big.csv") == []
    assert logins(server, mark) == 1  # the first login was before the mark
    assert (server.inbox_path(BANK) / "big.csv").exists()  # fetching never removes


def test_a_connection_cut_mid_download_is_retried(
    server: SshdServer, landing: SftpLanding, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="govbank.transport.sftp"):
        _cut_mid_download(server, landing, tmp_path, "connection")
    assert "reconnecting" in caplog.text


def test_a_server_restart_mid_download_is_retried(
    server: SshdServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_conn(monkeypatch, server)
    with SftpLanding(CONN_ID, attempts=6, backoff=0.2) as landing:
        _cut_mid_download(server, landing, tmp_path, "server")
    assert server.running


def test_dropped_connection_gives_up_with_a_transient_error(
    server: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(monkeypatch, server)
    with SftpLanding(CONN_ID, attempts=2, backoff=0.1) as landing:
        landing.bank_codes()
        server.stop()
        try:
            with pytest.raises(TransientError, match="connection"):
                landing.list_inbox(BANK)
        finally:
            server.restart()
        assert landing.list_inbox(BANK) == []  # and it works again once the server is back


@pytest.mark.parametrize("staging", [True, False], ids=["staging_dir", "outbox_part"])
def test_write_outbox_never_shows_half_a_receipt(
    server: SshdServer, monkeypatch: pytest.MonkeyPatch, staging: bool
) -> None:
    use_conn(monkeypatch, server, **({"staging_dir": "/.staging"} if staging else {}))
    versions = [bytes([65 + i]) * 2_000_000 for i in range(6)]
    seen: set[str] = set()
    reads: list[bytes] = []
    done = threading.Event()

    def bank_watches_its_outbox() -> None:
        with server.sftp_as(server.account_for(BANK)) as bank:
            while not done.is_set():
                names = bank.listdir("/outbox")
                seen.update(names)
                if "r.json" in names:
                    with bank.open("/outbox/r.json", "rb") as fh:
                        reads.append(fh.read())

    with ThreadPoolExecutor(1) as pool, SftpLanding(CONN_ID) as landing:
        watcher = pool.submit(bank_watches_its_outbox)
        try:
            for data in versions:
                landing.write_outbox(BANK, "r.json", data)
                time.sleep(0.05)
        finally:
            done.set()
        watcher.result(timeout=30)

    assert reads, "the bank never saw the receipt"
    assert all(r in versions for r in reads), "the bank read a partial receipt"
    if staging:
        assert seen == {"r.json"}
    final = server.outbox_path(BANK) / "r.json"
    assert final.read_bytes() == versions[-1]
    assert leftovers(server.outbox_path(BANK), "r.json") == []
    assert oct(final.stat().st_mode & 0o777) == "0o644"


def test_remove_inbox_removes_and_tolerates_missing(
    server: SshdServer, landing: SftpLanding
) -> None:
    server.put_inbox_file(BANK, "d.csv", b"1")
    server.put_inbox_file(BANK, "d.csv.ok", b"")
    server.put_inbox_file(BANK, "e.csv", b"1")
    landing.remove_inbox(BANK, ["d.csv", "d.csv.ok", "gone.csv"])
    assert [f.name for f in landing.list_inbox(BANK)] == ["e.csv"]


def test_names_cannot_leave_the_bank_folder(landing: SftpLanding, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        landing.read_small(BANK, "../outbox/x")
    with pytest.raises(ValueError):
        landing.fetch("..", "x", tmp_path / "x", 1)


def other_host_key() -> str:
    public = Ed25519PrivateKey.generate().public_key()
    return public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()


def test_a_wrong_host_key_is_refused_with_a_clear_message(
    server: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_conn(monkeypatch, server, host_key=other_host_key())
    mark = server.log_size()
    started = time.monotonic()
    with SftpLanding(CONN_ID) as landing, pytest.raises(ConfigError) as err:
        landing.bank_codes()
    message = str(err.value)
    assert "host key does not match" in message
    assert "host_key" in message and "SHA256:" in message
    assert time.monotonic() - started < 5, "a wrong host key must not be retried"
    assert logins(server, mark) == 0


def test_no_host_key_and_unknown_host_is_refused(
    server: SshdServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/known_hosts
    conn = server.conn_dict(server.pipeline)
    del conn["extra"]["host_key"]  # type: ignore[attr-defined]
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    with SftpLanding(CONN_ID) as landing, pytest.raises(ConfigError, match="host_key"):
        landing.bank_codes()


@pytest.mark.parametrize("extra", [{"no_host_key_check": True}, {"allow_host_key_change": True}])
def test_turning_host_key_checks_off_is_refused(
    server: SshdServer, monkeypatch: pytest.MonkeyPatch, extra: dict[str, object]
) -> None:
    use_conn(monkeypatch, server, **extra)
    with SftpLanding(CONN_ID) as landing, pytest.raises(ConfigError, match="host key checking"):
        landing.bank_codes()
