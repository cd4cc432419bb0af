"""Incremental, all-or-nothing load of the usage records into ``fact_elicense_usage``.

A run (1) reads the watermark of source ``elicense_usage`` (the last ``updated_at`` fully
loaded), (2) fetches every page updated since the watermark minus a small overlap, writing
each raw page under ``raw_dir/<run_id>/`` and checking it (structure here, the Great
Expectations suite when a validator is given), and (3) only when every page is in and
valid, upserts the records from those files and moves the watermark in one transaction.

So a run that dies anywhere before the commit leaves the warehouse as it was, and the next
run fetches the same records again: nothing skipped. The upsert keys on ``usage_id`` and
only lets a newer ``updated_at`` replace a row: nothing double-counted, and a withdrawn
version replaces the earlier one. The overlap re-reads records near the watermark that
the platform may have committed late; they upsert to the same rows.

Times are stored in UTC (on SQLite, as naive UTC text, since SQLite has no time zones).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, select

from govbank.elicense.client import (
    ElicenseClient,
    MalformedPageError,
    Page,
    UsageRecord,
    parse_page,
)
from govbank.util.private import private_dir, write_private
from govbank.warehouse.dialect import dialect_insert
from govbank.warehouse.schema import etl_watermark, fact_elicense_usage

log = logging.getLogger(__name__)

SOURCE = "elicense_usage"
DEFAULT_OVERLAP = dt.timedelta(minutes=10)
# business on the platform starts in 2019 (bank-files.md: biz_date not before 2019-01-01)
DEFAULT_START = dt.datetime(2019, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))
UPDATABLE = (
    "uscc", "enterprise_name", "scene", "bank_code", "outlet_code",
    "authorized_at", "updated_at", "status", "source_run", "loaded_at",
)  # fmt: skip


class Validator(Protocol):
    """What :class:`govbank.validate.Validator` offers (the USAGE suite in expectations/)."""

    def validate(self, dataset: str, frame: Any, *, run_name: str, **options: Any) -> Any: ...


@dataclass(frozen=True)
class PullResult:
    """What one run did; small enough for XCom (``as_dict``)."""

    run_id: str
    pages: int
    records: int  # records received, over all pages
    usage_ids: int  # distinct usage_id among them
    watermark_before: dt.datetime | None
    watermark_after: dt.datetime | None
    updated_since: dt.datetime
    run_dir: Path
    page_files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pages": self.pages,
            "records": self.records,
            "usage_ids": self.usage_ids,
            "watermark_before": _iso(self.watermark_before),
            "watermark_after": _iso(self.watermark_after),
            "updated_since": _iso(self.updated_since),
            "run_dir": str(self.run_dir),
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def read_watermark(conn: Connection, source: str = SOURCE) -> dt.datetime | None:
    """The last ``updated_at`` fully loaded (aware, UTC), or None before the first run."""
    value = conn.execute(
        select(etl_watermark.c.watermark).where(etl_watermark.c.source == source)
    ).scalar_one_or_none()
    return _utc(value) if value is not None else None



def write_watermark(conn: Connection, value: dt.datetime, source: str = SOURCE) -> None:
    """Move the watermark forward (never back), in the caller's transaction."""
    stmt = dialect_insert(conn, etl_watermark).values(
        source=source, watermark=_utc(value), updated_at=dt.datetime.now(dt.UTC)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[etl_watermark.c.source],
        set_={"watermark": stmt.excluded.watermark, "updated_at": stmt.excluded.updated_at},
        where=stmt.excluded.watermark > etl_watermark.c.watermark,
    )
    conn.execute(stmt)


def upsert_usages(conn: Connection, records: list[UsageRecord], run_id: str) -> None:
    """One executemany INSERT ... ON CONFLICT DO UPDATE; a newer ``updated_at`` wins."""
    if not records:
        return
    newest: dict[str, UsageRecord] = {}
    for rec in records:  # one row per key per statement (PostgreSQL refuses two)
        kept = newest.get(rec.usage_id)
        if kept is None or rec.updated_at >= kept.updated_at:
            newest[rec.usage_id] = rec
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "usage_id": r.usage_id,
            "uscc": r.uscc,
            "enterprise_name": r.enterprise_name,
            "scene": r.scene,
            "bank_code": r.bank_code,
            "outlet_code": r.outlet_code,
            "authorized_at": _utc(r.authorized_at),
            "updated_at": _utc(r.updated_at),
            "status": r.status,
            "source_run": run_id[:64],
            "loaded_at": now,
        }
        for r in newest.values()
    ]
    stmt = dialect_insert(conn, fact_elicense_usage)
    stmt = stmt.on_conflict_do_update(
        index_elements=[fact_elicense_usage.c.usage_id],
        set_={name: stmt.excluded[name] for name in UPDATABLE},
        where=stmt.excluded.updated_at > fact_elicense_usage.c.updated_at,
    )
    conn.execute(stmt, rows)


def page_frame(page: Page) -> Any:
    """The page's records as a pandas DataFrame for the suite: the spec's fields, times
    tz-aware in Asia/Shanghai, and ``source_line`` = the record's position in the page."""
    import pandas as pd

    columns = list(UsageRecord.model_fields)
    frame = pd.DataFrame([r.model_dump() for r in page.items], columns=columns)
    for name in ("authorized_at", "updated_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).dt.tz_convert("Asia/Shanghai")
    frame.insert(0, "source_line", range(1, len(frame) + 1))
    return frame


def _run_validator(validator: Validator, page: Page, run_id: str) -> None:
    """Run the USAGE suite on one page; a failed expectation makes the page malformed.

    An exception from the validator itself (e.g. ConfigError: the suite cannot run) is
    ours to fix, so it propagates as it is.
    """
    outcome = validator.validate(
        "USAGE",
        page_frame(page),
        run_name=f"{run_id}-page-{page.number:04d}",
        build_index=page.next_cursor is None,  # the Data Docs index once, after the last page
    )
    if getattr(outcome, "success", outcome) is not False:
        return
    issues = list(getattr(outcome, "issues", []) or [])
    shown = "; ".join(
        f"record {i.line} ({page.items[i.line - 1].usage_id}) {i.field}: {i.reason_code}"
        if 0 < i.line <= len(page.items)
        else f"{i.field}: {i.reason_code}"
        for i in issues[:5]
    )
    more = f" (+{len(issues) - 5} more)" if len(issues) > 5 else ""
    raise MalformedPageError(
        f"e-licence API page {page.number} failed the USAGE expectation suite"
        + (f": {shown}{more}" if shown else ""),
        page.path,
    )


def run_folder(raw_dir: Path, run_id: str) -> Path:
    """``raw_dir/<run_id>``; pages of an earlier attempt of the same run move to ``attempt-N``."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", run_id).strip(".") or "run"
    folder = Path(raw_dir) / safe
    earlier = sorted(folder.glob("page-*.json")) + sorted(folder.glob("run.json"))
    if earlier:
        n = 1
        while (folder / f"attempt-{n}").exists():
            n += 1
        keep = folder / f"attempt-{n}"
        keep.mkdir(mode=0o700)
        for path in earlier:
            shutil.move(str(path), keep / path.name)
    private_dir(folder, Path(raw_dir))  # raw pages: 0600 files in 0700 folders
    return folder


def pull_usages(
    engine: Engine,
    client: ElicenseClient,
    raw_dir: Path,
    run_id: str,
    validator: Validator | None = None,
    *,
    overlap: dt.timedelta = DEFAULT_OVERLAP,
    start: dt.datetime = DEFAULT_START,
) -> PullResult:
    """Pull every usage record updated since the watermark and load them all, or none."""
    folder = run_folder(Path(raw_dir), run_id)
    with engine.connect() as conn:
        before = read_watermark(conn)
    since = (before - overlap) if before else start
    summary: dict[str, Any] = {
        "run_id": run_id,
        "updated_since": since.isoformat(),
        "status": "failed",
    }
    pages: list[Path] = []
    records = 0
    newest: dt.datetime | None = None
    ids: set[str] = set()
    try:
        for page in client.iter_pages(since, folder):
            if validator is not None:
                _run_validator(validator, page, run_id)
            assert page.path is not None
            pages.append(page.path)
            records += len(page.items)
            for rec in page.items:
                ids.add(rec.usage_id)
                stamp = _utc(rec.updated_at)
                newest = stamp if newest is None or stamp > newest else newest
        after = max(before, newest) if before and newest else (newest or before)
        with engine.begin() as conn:
            for path in pages:  # re-read from disk: memory stays at one page
                upsert_usages(conn, parse_page(path.read_bytes(), 0, path).items, run_id)
            if after is not None and after != before:
                write_watermark(conn, after)
        result = PullResult(
            run_id=run_id,
            pages=len(pages),
            records=records,
            usage_ids=len(ids),
            watermark_before=before,
            watermark_after=after,
            updated_since=since,
            run_dir=folder,
            page_files=[p.name for p in pages],
        )
        summary.update(result.as_dict(), status="loaded")
    except Exception as exc:
        summary["error"] = f"{type(exc).__name__}: {exc}"
        log.error(
            "e-licence pull %s failed after %d page(s); nothing loaded, watermark unchanged: %s",
            run_id, len(pages), exc,
        )  # fmt: skip
        raise
    finally:
        summary["page_files"] = [p.name for p in pages]
        write_private(folder / "run.json", json.dumps(summary, ensure_ascii=False, indent=1).encode())
    log.info(
        "e-licence pull %s: %d page(s), %d record(s), watermark %s -> %s",
        run_id, result.pages, records, _iso(before), _iso(after),
    )  # fmt: skip
    return result
