"""What each account can do on the landing server (tests/sshd.py, made by sftp-add-bank.sh).

Bank A (WZB) speaks plain paramiko, as a bank's own SFTP client would; the pipeline goes
through SftpLanding and its AIRFLOW_CONN_* connection.
"""

from __future__ import annotations

import base64
import io
import os
import socket
from collections.abc import Iterator

import paramiko
import pytest
from sshd import SshdServer

from govbank.transport.sftp import SftpLanding

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

A, B = "WZB", "OHRCB"
CONN_ID = "govbank_isolation_sftp"
SECRET = b"biz_id,uscc\nB-1,91330300MA2AXXXX0X\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    with pytest.MonkeyPatch.context() as mp:
        if "AIRFLOW_HOME" not in os.environ:  # importing Airflow writes there
            mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        mp.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", "{}")  # replaced below
        srv = SshdServer.start(banks=[A, B])
        try:
            mp.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", srv.conn_json(srv.pipeline))
            srv.put_inbox_file(B, "ELIC_OHRCB_20230615.csv", SECRET)
            with SftpLanding(CONN_ID) as pipeline:
                pipeline.write_outbox(
                    A, "ELIC_WZB_20230615.csv.receipt.json", b'{"status":"accepted"}'
                )
                pipeline.write_outbox(B, "ELIC_OHRCB_20230615.csv.receipt.json", b"{}")
            yield srv
        finally:
            srv.close()


@pytest.fixture(scope="module")
def bank_a(server: SshdServer) -> Iterator[paramiko.SFTPClient]:
    with server.sftp_as(server.account_for(A)) as sftp:
        yield sftp


def host_pkey(server: SshdServer) -> paramiko.PKey:
    kind, data = server.host_key_line.split()
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def b_paths(server: SshdServer) -> list[str]:
    """Every way bank A might try to name bank B's inbox."""
    return [
        f"/{B}/inbox",
        f"/../{B}/inbox",
        f"../../{B}/inbox",
        str(server.inbox_path(B)),  # the real path on the server
    ]


def test_bank_sees_only_its_own_folder(server: SshdServer, bank_a: paramiko.SFTPClient) -> None:
    assert sorted(bank_a.listdir("/")) == ["inbox", "outbox"]
    assert sorted(bank_a.listdir("/../..")) == ["inbox", "outbox"]  # the jail's root is its root
    assert bank_a.listdir("/outbox") == ["ELIC_WZB_20230615.csv.receipt.json"]


def test_bank_cannot_list_read_or_write_another_bank(
    server: SshdServer, bank_a: paramiko.SFTPClient
) -> None:
    for path in b_paths(server):
        with pytest.raises(FileNotFoundError):
            bank_a.listdir(path)
        with pytest.raises(FileNotFoundError):
            bank_a.open(f"{path}/ELIC_OHRCB_20230615.csv", "rb")
        with pytest.raises(OSError):
            bank_a.open(f"{path}/planted.csv", "wb")
        with pytest.raises(FileNotFoundError):
            bank_a.listdir(path.replace("inbox", "outbox"))
    assert sorted(os.listdir(server.inbox_path(B))) == ["ELIC_OHRCB_20230615.csv"]


def test_bank_cannot_write_outside_its_inbox(bank_a: paramiko.SFTPClient) -> None:
    with pytest.raises(PermissionError):
        bank_a.open("/planted.csv", "wb")
    with pytest.raises(PermissionError):
        bank_a.mkdir("/OHRCB")
    with pytest.raises(PermissionError):
        bank_a.rmdir("/outbox")


def test_bank_writes_its_inbox_and_the_pipeline_takes_it(
    server: SshdServer, bank_a: paramiko.SFTPClient
) -> None:
    name = "OUTLET_WZB_20230615.csv"
    bank_a.putfo(io.BytesIO(b"a,b\n1,2\n"), f"/inbox/{name}")
    bank_a.putfo(io.BytesIO(b""), f"/inbox/{name}.ok")
    assert sorted(bank_a.listdir("/inbox")) == [name, f"{name}.ok"]
    with SftpLanding(CONN_ID) as pipeline:
        assert [f.name for f in pipeline.list_inbox(A)] == [name, f"{name}.ok"]
        assert pipeline.read_small(A, name) == b"a,b\n1,2\n"
        pipeline.remove_inbox(A, [name, f"{name}.ok"])
    assert bank_a.listdir("/inbox") == []


def test_bank_reads_but_cannot_change_its_receipts(bank_a: paramiko.SFTPClient) -> None:
    receipt = "/outbox/ELIC_WZB_20230615.csv.receipt.json"
    with bank_a.open(receipt, "rb") as fh:
        assert fh.read() == b'{"status":"accepted"}'
    with pytest.raises(PermissionError):
        bank_a.remove(receipt)
    with pytest.raises(PermissionError):
        bank_a.open(receipt, "wb")
    with pytest.raises(PermissionError):
        bank_a.open(receipt, "r+")
    with pytest.raises(PermissionError):
        bank_a.rename(receipt, "/outbox/renamed.json")
    with pytest.raises(PermissionError):
        bank_a.chmod(receipt, 0o666)
    with pytest.raises(PermissionError):
        bank_a.open("/outbox/forged.receipt.json", "wb")
    with pytest.raises(PermissionError):
        bank_a.posix_rename("/inbox", "/outbox")
    with bank_a.open(receipt, "rb") as fh:
        assert fh.read() == b'{"status":"accepted"}'


def test_bank_cannot_plant_links(bank_a: paramiko.SFTPClient) -> None:
    """A symlink in an inbox would point elsewhere in the pipeline's wider view."""
    bank_a.putfo(io.BytesIO(b"x"), "/inbox/own.csv")
    try:
        with pytest.raises(OSError):
            bank_a.symlink(f"/{B}/inbox/ELIC_OHRCB_20230615.csv", "/inbox/ELIC_WZB_20230615.csv")
        assert sorted(bank_a.listdir("/inbox")) == ["own.csv"]
    finally:
        bank_a.remove("/inbox/own.csv")


def test_bank_key_opens_only_its_own_account(server: SshdServer) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    host_key = host_pkey(server)
    client.get_host_keys().add(f"[{server.host}]:{server.port}", host_key.get_name(), host_key)
    key_a = paramiko.Ed25519Key.from_private_key(io.StringIO(server.key_for(server.account_for(A))))
    for account in (server.account_for(B), server.pipeline):
        with pytest.raises(paramiko.AuthenticationException):
            client.connect(
                server.host,
                server.port,
                username=account,
                pkey=key_a,
                look_for_keys=False,
                allow_agent=False,
                timeout=10,
            )
        client.close()
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(
            server.host,
            server.port,
            username=server.account_for(A),
            password="anything",
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()


def test_bank_gets_no_tunnel(server: SshdServer) -> None:
    key_a = paramiko.Ed25519Key.from_private_key(io.StringIO(server.key_for(server.account_for(A))))
    transport = paramiko.Transport(socket.create_connection((server.host, server.port), 10))
    try:
        transport.connect(host_pkey(server), username=server.account_for(A), pkey=key_a)
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", (server.host, server.port), ("127.0.0.1", 0))
    finally:
        transport.close()


def test_the_pipeline_sees_every_bank(server: SshdServer) -> None:
    with SftpLanding(CONN_ID) as pipeline:
        assert pipeline.bank_codes() == [B, A]
        assert [f.name for f in pipeline.list_inbox(B)] == ["ELIC_OHRCB_20230615.csv"]
        assert pipeline.read_small(B, "ELIC_OHRCB_20230615.csv") == SECRET


def test_a_bank_onboarded_while_the_server_runs_can_log_in_at_once(server: SshdServer) -> None:
    """The README's procedure: scripts/sftp-add-bank.sh, no sshd reload."""
    account = server.add_bank("ABCOH")
    with server.sftp_as(account) as bank:
        assert sorted(bank.listdir("/")) == ["inbox", "outbox"]
        bank.putfo(io.BytesIO(b"x"), "/inbox/OUTLET_ABCOH_20230615.csv")
    with SftpLanding(CONN_ID) as pipeline:
        assert "ABCOH" in pipeline.bank_codes()
        assert [f.name for f in pipeline.list_inbox("ABCOH")] == ["OUTLET_ABCOH_20230615.csv"]

    old_key = server.key_for(account)
    server.add_bank("ABCOH")  # re-run: a new key replaces the old one
    with server.sftp_as(account) as bank:
        assert bank.listdir("/inbox") == ["OUTLET_ABCOH_20230615.csv"]  # files kept
    client = paramiko.SSHClient()
    host_key = host_pkey(server)
    client.get_host_keys().add(f"[{server.host}]:{server.port}", host_key.get_name(), host_key)
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(
            server.host,
            server.port,
            username=account,
            pkey=paramiko.Ed25519Key.from_private_key(io.StringIO(old_key)),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()
