"""Has a bank sent what its contract says, by its deadline? The rule behind the wait sensor.

A late bank fails the sensor; the sensor's failure goes to the operators through the
DAG's notifier (``orchestration.notify``) and the lateness shows in ``mart_bank_freshness``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from govbank.config.contracts import BankContract
from govbank.ingest.discover import complete_files
from govbank.marts.build import counts_as_received
from govbank.transport import Landing
from govbank.warehouse.schema import etl_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    bank_code: str
    ready: bool  # complete files wait in the inbox
    late: bool  # past the deadline, nothing waiting, and the last file is older than the cadence
    message: str


def check_bank(
    landing: Landing,
    engine: Engine,
    contract: BankContract | None,
    bank_code: str,
    business_date: dt.date,
    now: dt.datetime,
) -> Readiness:
    """Has the bank sent what its contract says it sends, by the contract's deadline?"""
    pending = complete_files(landing.list_inbox(bank_code))
    if pending:
        return Readiness(bank_code, True, False, f"{len(pending)} complete file(s) waiting")
    if contract is None or not contract.feeds:
        return Readiness(bank_code, True, False, "no contract: nothing expected")
    deadline_hour = min(f.deadline_hour for f in contract.feeds.values())
    deadline = dt.datetime.combine(business_date, dt.time(deadline_hour), tzinfo=now.tzinfo)
    if now < deadline:
        return Readiness(bank_code, False, False, f"waiting until {deadline.isoformat()}")
    with engine.connect() as conn:
        last = conn.execute(
            select(func.max(etl_file.c.business_date)).where(
                etl_file.c.bank_code == bank_code, counts_as_received()
            )
        ).scalar()
    every = min(f.expected_every_days for f in contract.feeds.values())
    if last is not None and (business_date - last).days < every:
        return Readiness(bank_code, True, False, f"last file {last}, within its {every}-day cadence")
    since = f"last file {last}" if last else "no file ever received"
    return Readiness(
        bank_code, True, True,
        f"bank {bank_code} is late: nothing for {business_date} by {deadline:%H:%M} ({since}, "
        f"expected every {every} day(s))",
    )

