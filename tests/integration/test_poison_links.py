"""Links and swapped entries on the landing (issue 17, cases 5 and 6), local and SFTP.

A bank controls what is in its own folder: a link there, or a file swapped for one
after the listing, must never make the run read, answer or clear another bank's files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from govbank.domain.errors import ConfigError, TransientError
from govbank.transport import NAME_MAX_BYTES, EntryChanged, LandingLinkError
from govbank.transport.local import LocalLanding

BANK, OTHER = "WZB", "OHRCB"
SECRET = b"other bank's pending file\n"


@pytest.fixture
def land(tmp_path: Path) -> LocalLanding:
    for bank in (BANK, OTHER):
        (tmp_path / "landing" / bank / "inbox").mkdir(parents=True)
        (tmp_path / "landing" / bank / "outbox").mkdir(parents=True)
    (tmp_path / "landing" / OTHER / "inbox" / "OUTLET_OHRCB_20230601.csv").write_bytes(SECRET)
    return LocalLanding(tmp_path / "landing")


def other_file(land: LocalLanding) -> Path:
    return land.root / OTHER / "inbox" / "OUTLET_OHRCB_20230601.csv"


def test_a_link_in_the_inbox_is_not_listed_nor_read(land: LocalLanding, tmp_path: Path) -> None:
    link = land.root / BANK / "inbox" / "OUTLET_WZB_20230601.csv"
    link.symlink_to(other_file(land))
    (land.root / BANK / "inbox" / "OUTLET_WZB_20230601.csv.ok").write_bytes(b"")
    assert [f.name for f in land.list_inbox(BANK)] == ["OUTLET_WZB_20230601.csv.ok"]
    with pytest.raises(EntryChanged):
        land.fetch(BANK, link.name, tmp_path / "got", len(SECRET))
    with pytest.raises(EntryChanged):
        land.read_small(BANK, link.name)
    assert not (tmp_path / "got").exists()


def test_a_file_swapped_for_a_link_after_the_listing_is_not_read(land: LocalLanding, tmp_path: Path) -> None:
    """Case 5: ``copyfile`` and ``stat`` followed the link and read the other bank's file."""
    mine = land.root / BANK / "inbox" / "OUTLET_WZB_20230601.csv"
    mine.write_bytes(b"x" * len(SECRET))
    (listed,) = land.list_inbox(BANK)
    mine.unlink()
    mine.symlink_to(other_file(land))  # same size, on purpose
    with pytest.raises(EntryChanged):
        land.fetch(BANK, listed.name, tmp_path / "got", listed.size)
    assert not (tmp_path / "got").exists() or (tmp_path / "got").read_bytes() != SECRET
    land.remove_inbox(BANK, [listed.name])  # removes the link, never its target
    assert other_file(land).read_bytes() == SECRET


def test_a_file_swapped_for_a_fifo_or_a_folder_is_refused_without_hanging(land: LocalLanding, tmp_path: Path) -> None:
    inbox = land.root / BANK / "inbox"
    os.mkfifo(inbox / "a.csv")
    (inbox / "b.csv").mkdir()
    for name in ("a.csv", "b.csv"):
        with pytest.raises(EntryChanged):
            land.fetch(BANK, name, tmp_path / "got", 0)


def test_a_regular_file_of_another_size_is_still_being_written(land: LocalLanding, tmp_path: Path) -> None:
    (land.root / BANK / "inbox" / "f.csv").write_bytes(b"12345")
    with pytest.raises(TransientError, match="left alone"):
        land.fetch(BANK, "f.csv", tmp_path / "got", 4)
    land.fetch(BANK, "f.csv", tmp_path / "got", 5)
    assert (tmp_path / "got").read_bytes() == b"12345"


@pytest.mark.parametrize("linked", ["bank", "inbox", "outbox"])
def test_a_bank_folder_that_is_a_link_is_refused(land: LocalLanding, tmp_path: Path, linked: str) -> None:
    """Case 6: the linked folder was processed as a bank, rejecting and removing the other
    bank's file. Now every call on it raises LandingLinkError (a ConfigError: an alert)."""
    if linked == "bank":
        (land.root / "LINKB").symlink_to(land.root / OTHER)
        bank = "LINKB"
        assert bank in land.bank_codes()  # listed, so the run meets it and alerts
    else:
        bank = BANK
        box = land.root / BANK / linked
        box.rmdir()
        box.symlink_to(land.root / OTHER / linked)
    with pytest.raises(LandingLinkError) as err:
        if linked == "outbox":
            land.write_outbox(bank, "x.receipt.json", b"{}")
        else:
            land.list_inbox(bank)
    assert isinstance(err.value, ConfigError)
    with pytest.raises(LandingLinkError):
        land.remove_inbox(bank, ["OUTLET_OHRCB_20230601.csv"]) if linked != "outbox" else land.write_outbox(bank, "y", b"")
    assert other_file(land).read_bytes() == SECRET
    assert list((land.root / OTHER / "outbox").iterdir()) == []


def test_a_real_bank_folder_still_works(land: LocalLanding, tmp_path: Path) -> None:
    land.write_outbox(BANK, "a.receipt.json", b"{}")
    assert (land.root / BANK / "outbox" / "a.receipt.json").read_bytes() == b"{}"
    assert [p.name for p in (land.root / BANK / "outbox").iterdir()] == ["a.receipt.json"]
    land.write_outbox("NEWB", "a.receipt.json", b"{}")  # a bank folder made on first use
    assert (land.root / "NEWB" / "outbox" / "a.receipt.json").exists()


def test_no_path_is_built_from_an_over_long_name(land: LocalLanding, tmp_path: Path) -> None:
    name = "中" * 90  # 270 bytes
    assert len(name.encode()) > NAME_MAX_BYTES
    for call in (
        lambda: land.fetch(BANK, name, tmp_path / "got", 1),
        lambda: land.read_small(BANK, name),
        lambda: land.write_outbox(BANK, name, b""),
        lambda: land.remove_inbox(BANK, [name]),
    ):
        with pytest.raises(ValueError):
            call()


# ------------------------------------------------------------------ SFTP, on the real sshd


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from sshd import SshdServer

    with pytest.MonkeyPatch.context() as mp:
        if "AIRFLOW_HOME" not in os.environ:
            mp.setenv("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
        mp.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        srv = SshdServer.start(banks=[BANK, OTHER])
        try:
            yield srv
        finally:
            srv.close()


@pytest.fixture
def sftp(server, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from govbank.transport.sftp import SftpLanding

    monkeypatch.setenv("AIRFLOW_CONN_GOVBANK_TEST_SFTP", server.conn_json(server.pipeline))
    for box in (server.inbox_path(BANK), server.outbox_path(BANK), server.inbox_path(OTHER)):
        for f in box.iterdir():
            f.unlink()
    land = SftpLanding("govbank_test_sftp", backoff=0.1)
    yield land
    land.close()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sftp_a_link_planted_in_an_inbox_is_not_followed(server, sftp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server.put_inbox_file(OTHER, "OUTLET_OHRCB_20230601.csv", SECRET)
    # the link as the bank would make it: a path inside the landing, as the server sees it
    link = server.inbox_path(BANK) / "OUTLET_WZB_20230601.csv"
    link.symlink_to(f"/{OTHER}/inbox/OUTLET_OHRCB_20230601.csv")
    server.put_inbox_file(BANK, "OUTLET_WZB_20230601.csv.ok", b"")
    # the link does lead to the other bank's file for whoever follows it
    with sftp._connect().open(f"/{BANK}/inbox/{link.name}", "rb") as fh:
        assert fh.read() == SECRET
    assert [f.name for f in sftp.list_inbox(BANK)] == ["OUTLET_WZB_20230601.csv.ok"]
    with pytest.raises(EntryChanged):
        sftp.fetch(BANK, link.name, tmp_path / "got", len(SECRET))
    with pytest.raises(EntryChanged):
        sftp.read_small(BANK, link.name)
    assert not (tmp_path / "got").exists()
    sftp.remove_inbox(BANK, [link.name])
    assert (server.inbox_path(OTHER) / "OUTLET_OHRCB_20230601.csv").read_bytes() == SECRET


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sftp_a_file_swapped_for_a_link_after_the_listing_is_not_read(server, sftp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server.put_inbox_file(OTHER, "OUTLET_OHRCB_20230601.csv", SECRET)
    mine = server.put_inbox_file(BANK, "OUTLET_WZB_20230601.csv", b"y" * len(SECRET))
    (listed,) = sftp.list_inbox(BANK)
    mine.unlink()
    mine.symlink_to(f"/{OTHER}/inbox/OUTLET_OHRCB_20230601.csv")
    with pytest.raises(EntryChanged):
        sftp.fetch(BANK, listed.name, tmp_path / "got", listed.size)
    assert not (tmp_path / "got").exists()
    mine.unlink()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sftp_a_bank_folder_that_is_a_link_is_refused(server, sftp, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server.put_inbox_file(OTHER, "OUTLET_OHRCB_20230601.csv", SECRET)
    linked = server.root / "LINKB"
    linked.symlink_to(OTHER)
    try:
        assert "LINKB" in sftp.bank_codes()
        with pytest.raises(LandingLinkError):
            sftp.list_inbox("LINKB")
        with pytest.raises(LandingLinkError):
            sftp.fetch("LINKB", "OUTLET_OHRCB_20230601.csv", tmp_path / "got", len(SECRET))
        with pytest.raises(LandingLinkError):
            sftp.write_outbox("LINKB", "x.receipt.json", b"{}")
        assert sorted(f.name for f in sftp.list_inbox(BANK)) == []  # the real banks still work
    finally:
        linked.unlink()
    assert (server.inbox_path(OTHER) / "OUTLET_OHRCB_20230601.csv").read_bytes() == SECRET
