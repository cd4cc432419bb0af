"""A file's arrival: fetched, hashed and archived, registered by its sha256, claimed for
one run, and its envelope (name, contract, control file) checked.

The same bytes sent twice are one original and a duplicate; a file an earlier run died
on is taken over; a file another run is loading is left to it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from govbank.domain.errors import BankInputError, TransientError
from govbank.domain.reasons import NO_FEED_MESSAGE, message
from govbank.ingest.context import Context
from govbank.ingest.discover import OK_SUFFIX, FileName, bounded_name, parse_file_name, parse_ok
from govbank.transport import EntryChanged, RemoteFile
from govbank.util.clock import now
from govbank.util.private import private_dir, private_file
from govbank.util.text import log_safe
from govbank.warehouse.schema import etl_file

log = logging.getLogger(__name__)


@dataclass
class Registered:
    file_id: int
    sha256: str
    size: int
    archive_path: Path
    received_at: dt.datetime
    status: str  # processing | duplicate | <final, not yet answered>


class ClaimedElsewhere(Exception):
    """Another run finished this file while we were on it."""


def claim(conn: Connection, file_id: int) -> None:
    """Lock the file's row for this transaction; a second run waits here, then backs off.

    The UPDATE takes a row lock (PostgreSQL) or the write lock (SQLite) that is held
    until the file's transaction ends, so two runs never load the same file at once.
    """
    claimed = conn.execute(
        update(etl_file)
        .where(etl_file.c.file_id == file_id, etl_file.c.status == "processing")
        .values(status="processing")
    )
    if claimed.rowcount != 1:
        raise ClaimedElsewhere(file_id)


def still_in_inbox(ctx: Context, bank_code: str, name: str) -> bool:
    names = {f.name for f in ctx.landing.list_inbox(bank_code)}
    return name in names and f"{name}.ok" in names


def _archive(ctx: Context, bank_code: str, data: RemoteFile) -> tuple[str, Path] | None:
    """Fetch the raw bytes into the archive under their sha256; None if they are gone."""
    incoming = ctx.archive_dir / ".incoming"
    private_dir(incoming, ctx.archive_dir)  # raw bytes: 0600 files in 0700 folders
    tmp = incoming / f"{uuid.uuid4().hex}.part"
    try:
        try:
            ctx.landing.fetch(bank_code, data.name, tmp, data.size)
        except (FileNotFoundError, TransientError):  # SFTP: "no longer there" is a TransientError
            if still_in_inbox(ctx, bank_code, data.name):
                raise
            tmp.unlink(missing_ok=True)
            return None  # answered and removed by a concurrent run
        digest = hashlib.sha256()
        with tmp.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        sha = digest.hexdigest()
        final = ctx.archive_dir / bank_code / sha[:2] / f"{sha}__{bounded_name(data.name)}"
        private_dir(final.parent, ctx.archive_dir)
        if final.exists():
            tmp.unlink()
            private_file(final)  # archived by an earlier version, perhaps wider
        else:
            os.replace(private_file(tmp), final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TransientError(f"cannot fetch or archive {bank_code}/{log_safe(data.name)}: {exc}") from exc
    return sha, final


def receive(ctx: Context, bank_code: str, data: RemoteFile) -> Registered | None:
    """Fetch, hash and archive the raw bytes, then register them by digest."""
    received_at = now()
    archived = _archive(ctx, bank_code, data)
    if archived is None:
        return None
    sha, final = archived
    dataset, business_date = _name_facts(data.name)
    row = {
        "file_name": data.name,
        "bank_code": bank_code,
        "dataset": dataset,
        "business_date": business_date,
        "sha256": sha,
        "size_bytes": data.size,
        "received_at": received_at,
        "status": "processing",
        "archive_path": str(final.relative_to(ctx.archive_dir)),
    }
    try:
        with ctx.engine.begin() as conn:
            file_id = conn.execute(insert(etl_file).values(row).returning(etl_file.c.file_id)).scalar_one()
        return Registered(file_id, sha, data.size, final, received_at, "processing")
    except IntegrityError:
        pass
    except OperationalError as exc:
        raise TransientError(f"cannot register {log_safe(data.name)}: {exc}") from exc
    return _seen_before(ctx, bank_code, data, row, final)


def _seen_before(
    ctx: Context, bank_code: str, data: RemoteFile, row: dict, final: Path
) -> Registered | None:
    """The bank sent these bytes before: take an unfinished original over, or register a duplicate.

    The original is the bytes' latest outcome: an operator's replay (``ingest.replay``)
    when there is one. A replay registers its row first and arrives here, where it is
    taken over like a file an earlier run died on.
    """
    sha = row["sha256"]
    with ctx.engine.connect() as conn:
        original = conn.execute(
            select(etl_file)
            .where(
                etl_file.c.bank_code == bank_code,
                etl_file.c.sha256 == sha,
                etl_file.c.status != "duplicate",
            )
            .order_by(etl_file.c.file_id.desc())
            .limit(1)
        ).one()
    if original.status == "processing" or original.answered_at is None:
        # an earlier run died before answering: take the file over
        return Registered(original.file_id, sha, data.size, final, original.received_at, original.status)
    if not still_in_inbox(ctx, bank_code, data.name):
        return None  # this very upload was answered and cleared by a concurrent run meanwhile
    with ctx.engine.begin() as conn:
        dup_id = conn.execute(
            insert(etl_file)
            .values({**row, "status": "duplicate", "duplicate_of": original.file_id, "processed_at": now()})
            .returning(etl_file.c.file_id)
        ).scalar_one()
    return Registered(dup_id, sha, data.size, final, row["received_at"], "duplicate")


def _name_facts(name: str) -> tuple[str | None, dt.date | None]:
    try:
        fn = parse_file_name(name)
    except BankInputError:
        return None, None
    return fn.dataset.value, fn.business_date


def check_envelope(
    ctx: Context, bank_code: str, name: str, ok: RemoteFile, reg: Registered
) -> tuple[FileName, int | None]:
    """Name, contract and control file; the ``.ok`` row count is checked after reading."""
    fname = parse_file_name(name)
    if fname.bank_code != bank_code:
        raise BankInputError("BANK_MISMATCH", message("BANK_MISMATCH"), f"{fname.bank_code} ≠ {bank_code}")
    if bank_code not in ctx.contracts:
        raise BankInputError("NO_CONTRACT", message("NO_CONTRACT"), bank_code)
    if fname.dataset not in ctx.contracts[bank_code].feeds:
        raise BankInputError("NO_CONTRACT", NO_FEED_MESSAGE.format(dataset=fname.dataset))
    try:
        control = parse_ok(ctx.landing.read_small(bank_code, ok.name))
    except EntryChanged:  # swapped for a link or another file: left for the next run
        raise
    except (FileNotFoundError, TransientError):
        if still_in_inbox(ctx, bank_code, name):
            raise
        raise ClaimedElsewhere(reg.file_id) from None  # answered and cleared by a concurrent run
    if control.sha256 and control.sha256 != reg.sha256:
        raise BankInputError("OK_SHA256_MISMATCH", message("OK_SHA256_MISMATCH"))
    return fname, control.rows


def sweep_cleared(ctx: Context, bank_code: str, listing: list[RemoteFile]) -> None:
    """Data files left behind by a clearing cut short (their ``.ok`` went, they did not):
    removed when their bytes are those of an answered file of that name. Anything else
    without a ``.ok`` is an upload under way and is left alone."""
    names = {f.name for f in listing}
    alone = [f for f in listing if not f.name.startswith(".") and not f.name.endswith(OK_SUFFIX)
             and f.name + OK_SUFFIX not in names]
    if not alone:
        return
    with ctx.engine.connect() as conn:
        answered = {(r.file_name, r.sha256, r.size_bytes) for r in conn.execute(
            select(etl_file.c.file_name, etl_file.c.sha256, etl_file.c.size_bytes).where(
                etl_file.c.bank_code == bank_code, etl_file.c.answered_at.is_not(None),
                etl_file.c.file_name.in_([f.name for f in alone]),
            )
        )}
    for f in alone:
        if not any(name == f.name and size == f.size for name, _, size in answered):
            continue
        tmp = ctx.archive_dir / ".incoming" / f"{uuid.uuid4().hex}.sweep"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            ctx.landing.fetch(bank_code, f.name, tmp, f.size)
            sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
        except (OSError, TransientError):
            continue  # changing or gone: a later run looks again
        finally:
            tmp.unlink(missing_ok=True)
        if (f.name, sha, f.size) in answered:
            log.info("bank=%s: %s was answered; its clearing was cut short, removed now", bank_code, log_safe(f.name))
            ctx.landing.remove_inbox(bank_code, [f.name])


def count_attempt(ctx: Context, reg: Registered) -> int:
    """How many loads of the file began before; this one is counted in its own committed
    transaction (a load killed by the kernel, out of memory, counts too). A file about
    to be set aside is not counted again."""
    with ctx.engine.begin() as conn:
        before = conn.execute(select(etl_file.c.attempts).where(etl_file.c.file_id == reg.file_id)).scalar_one()
        if before < ctx.max_attempts:
            conn.execute(update(etl_file).where(etl_file.c.file_id == reg.file_id).values(attempts=before + 1))
    return int(before)


def still_as_listed(ctx: Context, data: RemoteFile, ok: RemoteFile) -> bool:
    """Whether the file and its ``.ok`` are what the listing showed (size and mtime)."""
    now_listed = {f.name: (f.size, f.mtime) for f in ctx.landing.list_inbox(data.bank_code)}
    return all(now_listed.get(f.name) == (f.size, f.mtime) for f in (data, ok))


def forget(ctx: Context, reg: Registered) -> None:
    """Drop the registration of bytes that were a snapshot of a file still being written."""
    with ctx.engine.begin() as conn:
        conn.execute(delete(etl_file).where(etl_file.c.file_id == reg.file_id, etl_file.c.status == "processing"))
