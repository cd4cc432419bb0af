"""Late banks: the readiness rule behind the wait sensor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from govbank.config.contracts import load_contracts
from govbank.orchestration.readiness import check_bank
from govbank.transport.local import LocalLanding
from govbank.warehouse.db import make_engine
from govbank.warehouse.schema import etl_file
from tests.conftest import ROOT, drop_file

TZ = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2023, 6, 15)


@pytest.fixture
def setup(tmp_path: Path, warehouse_url: str):  # type: ignore[no-untyped-def]
    landing = LocalLanding(tmp_path / "landing")
    (tmp_path / "landing" / "WZB" / "inbox").mkdir(parents=True)
    return landing, make_engine(warehouse_url), load_contracts(ROOT / "include" / "contracts")


def _loaded(engine, bank: str, day: dt.date) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(insert(etl_file).values(
            file_name=f"ELIC_{bank}_{day:%Y%m%d}.txt", bank_code=bank, dataset="ELIC", business_date=day,
            sha256=f"{bank}{day}".ljust(64, "0"), size_bytes=1, received_at=dt.datetime.now(TZ), status="accepted",
        ))


def test_waits_before_the_deadline_and_is_late_after(setup) -> None:  # type: ignore[no-untyped-def]
    landing, engine, contracts = setup
    morning = dt.datetime(2023, 6, 15, 9, tzinfo=TZ)
    night = dt.datetime(2023, 6, 15, 21, tzinfo=TZ)
    r = check_bank(landing, engine, contracts["WZB"], "WZB", DAY, morning)
    assert (r.ready, r.late) == (False, False)
    r = check_bank(landing, engine, contracts["WZB"], "WZB", DAY, night)
    assert (r.ready, r.late) == (True, True) and "WZB is late" in r.message
    # a file that arrives is ready at once, deadline or not
    drop_file(landing.root / "WZB" / "inbox", "ELIC_WZB_20230615.txt", b"x")
    r = check_bank(landing, engine, contracts["WZB"], "WZB", DAY, night)
    assert (r.ready, r.late) == (True, False)


def test_weekly_bank_within_its_cadence_is_not_late(setup) -> None:  # type: ignore[no-untyped-def]
    landing, engine, contracts = setup
    night = dt.datetime(2023, 6, 15, 21, tzinfo=TZ)
    _loaded(engine, "ICBCOH", dt.date(2023, 6, 12))
    r = check_bank(landing, engine, contracts["ICBCOH"], "ICBCOH", DAY, night)
    assert (r.ready, r.late) == (True, False)
    _loaded(engine, "WZB", dt.date(2023, 6, 12))
    assert check_bank(landing, engine, contracts["WZB"], "WZB", DAY, night).late

