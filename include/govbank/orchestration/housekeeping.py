"""Personal data kept no longer than needed: raw bank files and raw API pages past retention.

A raw file in the archive is purged when every ``etl_file`` row that points at it
(the original, its duplicates, its replays) is final (accepted, partially accepted,
rejected or duplicate), answered, and was received more than ``retention_days`` ago.
A file still ``processing`` or not yet answered is never touched, and a replay within
the period restarts its clock: the operators have ``retention_days`` from the last
time the bytes were handled to replay them. The rows stay; ``archive_purged_at`` says
the bytes are gone, and a replay of them says so.

Raw API pages (``GOVBANK_ELICENSE_RUNS_DIR/<run>/``) go once nothing in the run's folder
changed within the period: the usage records are in the warehouse by then.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select, update

from govbank.config.settings import Settings
from govbank.domain.statuses import DUPLICATE, FINAL
from govbank.util.clock import ZONE, now
from govbank.warehouse.db import make_engine
from govbank.warehouse.schema import etl_file

log = logging.getLogger(__name__)


@dataclass
class Purged:
    cutoff: dt.datetime
    dry_run: bool
    archive_files: list[str] = field(default_factory=list)  # relative to the archive
    kept_unfinished: list[str] = field(default_factory=list)  # past retention, not final or unanswered
    api_runs: list[str] = field(default_factory=list)
    partial_uploads: list[str] = field(default_factory=list)

    def report(self) -> str:
        verb = "would purge" if self.dry_run else "purged"
        lines = [
            f"retention cutoff {self.cutoff.isoformat(timespec='seconds')}: {verb} "
            f"{len(self.archive_files)} archived file(s), {len(self.api_runs)} API run folder(s), "
            f"{len(self.partial_uploads)} partial upload(s); "
            f"{len(self.kept_unfinished)} past retention kept (not final or not answered)"
        ]
        lines += [f"  {verb} archive/{p}" for p in self.archive_files]
        lines += [f"  {verb} elicense_runs/{p}" for p in self.api_runs]
        lines += [f"  kept archive/{p}" for p in self.kept_unfinished]
        return "\n".join(lines)


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=ZONE) if value.tzinfo is None else value  # SQLite: Asia/Shanghai


def _mtime(path: Path) -> dt.datetime:
    return dt.datetime.fromtimestamp(path.stat().st_mtime, ZONE)


def purge_archive(engine: Engine, archive_dir: Path, cutoff: dt.datetime, result: Purged) -> None:
    """Raw files whose every row is final, answered and older than the cutoff."""
    by_path: dict[str, list] = defaultdict(list)
    with engine.connect() as conn:
        for r in conn.execute(
            select(
                etl_file.c.archive_path, etl_file.c.status, etl_file.c.answered_at,
                etl_file.c.received_at, etl_file.c.archive_purged_at,
            ).where(etl_file.c.archive_path.is_not(None))
        ):
            by_path[r.archive_path].append(r)
    for path, rows in sorted(by_path.items()):
        if all(r.archive_purged_at is not None for r in rows):
            continue
        if max(_aware(r.received_at) for r in rows) >= cutoff:
            continue
        if not all((r.status in FINAL or r.status == DUPLICATE) and r.answered_at for r in rows):
            result.kept_unfinished.append(path)
            continue
        result.archive_files.append(path)
        if result.dry_run:
            continue
        (archive_dir / path).unlink(missing_ok=True)  # gone first: a row never claims bytes it lacks
        with engine.begin() as conn:
            conn.execute(
                update(etl_file)
                .where(etl_file.c.archive_path == path, etl_file.c.archive_purged_at.is_(None))
                .values(archive_purged_at=now())
            )
    incoming = archive_dir / ".incoming"
    if incoming.is_dir():  # a fetch that died left its partial copy behind
        for part in sorted(incoming.glob("*.part")):
            if _mtime(part) < cutoff:
                result.partial_uploads.append(part.name)
                if not result.dry_run:
                    part.unlink(missing_ok=True)


def purge_api_runs(runs_dir: Path, cutoff: dt.datetime, result: Purged) -> None:
    """Run folders in which nothing changed since the cutoff."""
    if not runs_dir.is_dir():
        return
    for folder in sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        newest = max([_mtime(folder), *(_mtime(p) for p in folder.rglob("*"))])
        if newest < cutoff:
            result.api_runs.append(folder.name)
            if not result.dry_run:
                shutil.rmtree(folder)


def housekeeping(settings: Settings, dry_run: bool = False, at: dt.datetime | None = None) -> Purged:
    """Purge what is past ``settings.retention_days``; ``dry_run`` only lists it."""
    cutoff = (at or now()) - dt.timedelta(days=settings.retention_days)
    result = Purged(cutoff, dry_run)
    engine = make_engine(settings.warehouse_url)
    try:
        purge_archive(engine, settings.archive_dir, cutoff, result)
    finally:
        engine.dispose()
    purge_api_runs(settings.runs_dir, cutoff, result)
    log.info("%s", result.report().splitlines()[0])
    return result
