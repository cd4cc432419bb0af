"""Operators reprocess a file from the raw archive, through today's contract and suites.

A replay is the archived bytes handed to the same stages as a new drop (``run.process_file``):
a :class:`ReplayLanding` lists and fetches them from the archive, writes the receipt to
the bank's real outbox and leaves the inbox alone. The earlier outcome stays in
``etl_file`` as it was; the replay is a new row whose ``replay_of`` names it. That row
is registered here, before the intake runs, so the intake finds it as the bytes' latest,
unfinished outcome and takes it over (as it takes over a file a run died on) instead of
answering ``duplicate``: asking for a replay is what makes the same bytes new again.

Idempotent: the merges skip records that did not change, so replaying an accepted file
changes no fact or dimension row. What cannot be replayed says why: bytes purged past
retention, or a file a run is still on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, insert, select

from govbank.domain.errors import TransientError
from govbank.domain.statuses import DUPLICATE, PROCESSING
from govbank.ingest.answer import FileOutcome, rejects_csv
from govbank.ingest.context import Context
from govbank.ingest.discover import processing_order
from govbank.ingest.merge import sync_banks
from govbank.ingest.run import process_file
from govbank.transport import Landing, RemoteFile
from govbank.util.clock import ZONE, iso, now
from govbank.warehouse.schema import etl_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """Which files: one by name or by digest, or every file of a status since a day."""

    bank_code: str
    file_name: str | None = None
    sha256: str | None = None
    status: str | None = None
    since: dt.date | None = None  # received on or after this day (Asia/Shanghai)


@dataclass(frozen=True)
class Candidate:
    """The latest outcome of one set of bytes: what a replay would replace."""

    file_id: int
    bank_code: str
    file_name: str
    dataset: str | None
    business_date: dt.date | None
    sha256: str
    size_bytes: int
    received_at: dt.datetime
    processed_at: dt.datetime | None
    status: str
    rows_rejected: int
    archive_path: str | None
    archive_purged_at: dt.datetime | None
    replay_of: int | None

    def refusal(self, archive_dir: Path) -> str | None:
        """Why these bytes cannot be replayed now; None when they can."""
        if self.archive_purged_at is not None:
            return (
                f"raw bytes purged from the archive on {iso(self.archive_purged_at)[:10]} "
                "(past retention): nothing to replay; the bank must send the file again"
            )
        if self.status == PROCESSING and self.replay_of is None:
            return "a run is still on this file (status processing): the next ingest finishes it"
        if not self.archive_path or not (archive_dir / self.archive_path).is_file():
            return f"archived bytes missing ({self.archive_path}): nothing to replay"
        return None

    def line(self) -> str:
        return (
            f"file_id={self.file_id} bank={self.bank_code} file={self.file_name} "
            f"sha256={self.sha256[:12]}… status={self.status} received={iso(self.received_at)}"
        )


@dataclass(frozen=True)
class Replayed:
    candidate: Candidate
    outcome: FileOutcome | None  # None: not replayed (dry run, or refused)
    refused: str | None = None


def _local_day(value: dt.datetime) -> dt.date:
    if value.tzinfo is None:  # SQLite: stored as Asia/Shanghai
        value = value.replace(tzinfo=ZONE)
    return value.astimezone(ZONE).date()


def candidates(engine: Engine, sel: Selection) -> list[Candidate]:
    """The latest outcome per digest of the bank's files that match, in processing order.

    Duplicates are not outcomes of their own: a replay reprocesses the bytes they repeat.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(etl_file)
            .where(etl_file.c.bank_code == sel.bank_code, etl_file.c.status != DUPLICATE)
            .order_by(etl_file.c.file_id)
        ).all()
    latest = {r.sha256: r for r in rows}  # the highest file_id per digest wins
    fields = [f.name for f in dataclasses.fields(Candidate)]
    found = [
        Candidate(**{k: getattr(r, k) for k in fields})
        for r in latest.values()
        if (sel.file_name is None or r.file_name == sel.file_name)
        and (sel.sha256 is None or r.sha256 == sel.sha256.lower())
        and (sel.status is None or r.status == sel.status)
        and (sel.since is None or _local_day(r.received_at) >= sel.since)
    ]
    return sorted(found, key=lambda c: (processing_order(c.file_name), c.file_id))


class ReplayLanding:
    """One archived file presented as a fresh drop; receipts still go to the real outbox.

    The bank's ``.ok`` is not archived: the control file served here carries the
    archived bytes' sha256 and no row count, so a replay checks the bytes, not the count.
    """

    def __init__(self, outbox: Landing, archive_dir: Path, cand: Candidate) -> None:
        self.outbox = outbox
        self.cand = cand
        self.path = archive_dir / str(cand.archive_path)
        self.data = RemoteFile(cand.bank_code, cand.file_name, self.path.stat().st_size, 0.0)
        self.ok = RemoteFile(cand.bank_code, f"{cand.file_name}.ok", 0, 0.0)
        # an earlier receipt came with a rejects CSV: a replay without rejects replaces it
        self._stale_rejects = cand.rows_rejected > 0
        self._rejects_written = False

    def bank_codes(self) -> list[str]:
        return [self.cand.bank_code]

    def list_inbox(self, bank_code: str) -> list[RemoteFile]:
        return [self.data, self.ok] if bank_code == self.cand.bank_code else []

    def read_small(self, bank_code: str, name: str, limit: int = 65536) -> bytes:
        if name != self.ok.name:
            raise FileNotFoundError(name)
        return f"sha256={self.cand.sha256}\n".encode()

    def fetch(self, bank_code: str, name: str, dest: Path, expected_size: int) -> None:
        if name != self.data.name:
            raise FileNotFoundError(name)
        shutil.copyfile(self.path, dest)
        if dest.stat().st_size != expected_size:
            raise TransientError(f"archived {name} changed while it was copied")

    def write_outbox(self, bank_code: str, name: str, data: bytes) -> None:
        name_rejects = f"{self.cand.file_name}.rejects.csv"
        if name == name_rejects:
            self._rejects_written = True
        elif name.endswith(".receipt.json") and self._stale_rejects and not self._rejects_written:
            # the earlier rejects CSV must not stand beside the new receipt
            self.outbox.write_outbox(bank_code, name_rejects, rejects_csv(self.cand.file_name, []))
        self.outbox.write_outbox(bank_code, name, data)

    def remove_inbox(self, bank_code: str, names: list[str]) -> None:
        """Nothing to remove: the bytes came from the archive, and the archive keeps them."""

    def close(self) -> None:
        """The real landing belongs to the caller."""


def _register(ctx: Context, cand: Candidate) -> int:
    """The replay's own row, linked to the outcome it replaces; an unfinished replay is reused."""
    if cand.status == PROCESSING and cand.replay_of is not None:
        return cand.file_id  # an earlier replay died: take it over
    with ctx.engine.begin() as conn:
        return conn.execute(
            insert(etl_file)
            .values(
                file_name=cand.file_name,
                bank_code=cand.bank_code,
                dataset=cand.dataset,
                business_date=cand.business_date,
                sha256=cand.sha256,
                size_bytes=cand.size_bytes,
                received_at=now(),
                status=PROCESSING,
                archive_path=cand.archive_path,
                replay_of=cand.file_id,
            )
            .returning(etl_file.c.file_id)
        ).scalar_one()


def replay(ctx: Context, sel: Selection, dry_run: bool = False) -> list[Replayed]:
    """Every matching file through the stages again; ``dry_run`` only lists them."""
    found = candidates(ctx.engine, sel)
    if dry_run:
        return [Replayed(c, None, c.refusal(ctx.archive_dir)) for c in found]
    with ctx.engine.begin() as conn:
        sync_banks(conn, ctx.contracts.values())  # a contract added since counts now
    run = dataclasses.replace(ctx)  # one validator for every file; its landing per file
    done = []
    for cand in found:
        why = cand.refusal(ctx.archive_dir)
        if why is not None:
            log.warning("not replayed: %s: %s", cand.line(), why)
            done.append(Replayed(cand, None, why))
            continue
        replay_id = _register(ctx, cand)
        run.landing = landing = ReplayLanding(ctx.landing, ctx.archive_dir, cand)
        outcome = process_file(run, cand.bank_code, landing.data, landing.ok)
        log.info("replayed file_id=%s as file_id=%s: %s", cand.file_id, replay_id, outcome.log_line())
        done.append(Replayed(cand, outcome))
    return done


def report(results: list[Replayed], dry_run: bool) -> str:
    """What an operator reads: one line per file, what it was and what it is now."""
    if not results:
        return "nothing to replay: no file matches"
    lines = []
    for r in results:
        if r.refused:
            lines.append(f"NOT REPLAYED {r.candidate.line()}: {r.refused}")
        elif dry_run:
            lines.append(f"would replay {r.candidate.line()}")
        else:
            o = r.outcome
            assert o is not None
            lines.append(
                f"replayed {r.candidate.line()} -> status={o.status} rows_in={o.rows_total} "
                f"loaded={o.rows_loaded} rejected={o.rows_rejected}"
            )
    return "\n".join(lines)
