"""Retention: only what is past it and final goes; a replay of purged bytes says they are gone."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from sqlalchemy import select, update

from govbank.config.settings import Settings
from govbank.ingest.replay import Selection, replay
from govbank.ingest.run import process_bank
from govbank.orchestration.housekeeping import housekeeping
from govbank.orchestration.runtime import build_context
from govbank.util.clock import now
from govbank.warehouse.schema import etl_file
from tests.conftest import PSEUDONYM_KEY, drop_file
from tests.unit.test_pipeline import ELIC_HEAD, OUTLET, _elic_rows


def _age(path: Path, days: int) -> None:
    old = time.time() - days * 86400
    os.utime(path, (old, old))


def test_housekeeping_purges_only_what_is_past_retention_and_final(
    tmp_path: Path, warehouse_url: str, validator
) -> None:
    settings = Settings.from_env(
        {"GOVBANK_LOCAL_DIR": str(tmp_path), "GOVBANK_WAREHOUSE_URL": warehouse_url, "GOVBANK_RETENTION_DAYS": "30"}
    )
    assert settings.retention_days == 30
    assert Settings.from_env({"GOVBANK_LOCAL_DIR": str(tmp_path)}).retention_days == 180
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    inbox = tmp_path / "landing" / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"), rows=2)
    drop_file(inbox, "ELIC_WZB_20230601.txt", (ELIC_HEAD + _elic_rows(3)).encode("gb18030"), rows=3)
    drop_file(inbox, "ELIC_WZB_20230602.txt", (ELIC_HEAD + _elic_rows(4)).encode("gb18030"), rows=4)
    drop_file(inbox, "ELIC_WZB_20230603.txt", (ELIC_HEAD + _elic_rows(5)).encode("gb18030"), rows=5)
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted"] * 4
    old = now() - dt.timedelta(days=31)
    with ctx.engine.begin() as conn:
        ids = dict(conn.execute(select(etl_file.c.file_name, etl_file.c.file_id)).all())
        paths = dict(conn.execute(select(etl_file.c.file_name, etl_file.c.archive_path)).all())
        # past retention: the outlets (final, answered), the 0602 file (a run is still on it),
        # the 0603 file (loaded, its receipt never reached the bank); 0601 ELIC is recent
        for name in ("OUTLET_WZB_20230601.txt", "ELIC_WZB_20230602.txt", "ELIC_WZB_20230603.txt"):
            conn.execute(update(etl_file).where(etl_file.c.file_id == ids[name]).values(received_at=old))
        conn.execute(update(etl_file).where(etl_file.c.file_id == ids["ELIC_WZB_20230602.txt"]).values(status="processing"))
        conn.execute(update(etl_file).where(etl_file.c.file_id == ids["ELIC_WZB_20230603.txt"]).values(answered_at=None))
    runs = settings.runs_dir
    for run, days in (("old_run", 40), ("recent_run", 5)):
        (runs / run).mkdir(parents=True)
        page = runs / run / "page-0001.json"
        page.write_text("{}")
        _age(page, days)
        _age(runs / run, days)

    dry = housekeeping(settings, dry_run=True)
    assert dry.archive_files == [paths["OUTLET_WZB_20230601.txt"]] and dry.api_runs == ["old_run"]
    assert all((settings.archive_dir / p).is_file() for p in paths.values())
    assert (runs / "old_run").is_dir()

    done = housekeeping(settings)
    assert done.archive_files == [paths["OUTLET_WZB_20230601.txt"]]
    assert sorted(done.kept_unfinished) == sorted(paths[n] for n in ("ELIC_WZB_20230602.txt", "ELIC_WZB_20230603.txt"))
    assert not (settings.archive_dir / paths["OUTLET_WZB_20230601.txt"]).exists()
    for name in ("ELIC_WZB_20230601.txt", "ELIC_WZB_20230602.txt", "ELIC_WZB_20230603.txt"):
        assert (settings.archive_dir / paths[name]).is_file(), name
    assert not (runs / "old_run").exists() and (runs / "recent_run").is_dir()
    with ctx.engine.connect() as conn:
        purged = dict(conn.execute(select(etl_file.c.file_name, etl_file.c.archive_purged_at)).all())
    assert [n for n, at in purged.items() if at is not None] == ["OUTLET_WZB_20230601.txt"]
    assert housekeeping(settings).archive_files == []  # done once

    [refused] = replay(ctx, Selection("WZB", file_name="OUTLET_WZB_20230601.txt"))
    assert refused.outcome is None and "purged" in (refused.refused or "")
