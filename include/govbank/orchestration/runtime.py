"""Assemble a pipeline ``Context`` from settings; the DAGs and the CLI both use this."""

from __future__ import annotations

import datetime as dt
import logging

from govbank.config.contracts import BankContract, ContractProblem, load_contracts_report
from govbank.config.settings import Settings
from govbank.ingest.context import Context
from govbank.marts.build import rebuild_all
from govbank.orchestration import warm
from govbank.orchestration.notify import operator_alert
from govbank.transport import Landing, open_landing
from govbank.util.arrow_memory import use_preferred_pool
from govbank.util.clock import today
from govbank.warehouse.db import make_engine

log = logging.getLogger(__name__)


def contracts_and_problems(settings: Settings) -> tuple[dict[str, BankContract], dict[str, ContractProblem]]:
    """The good contracts, and each broken one by bank code: a broken contract stops its own
    bank only (its task fails and alerts), never the others."""
    good, problems = load_contracts_report(settings.contracts_dir)
    for p in problems:
        log.error("contract %s is broken, bank %s is not processed: %s", p.file, p.bank_code, p.error)
    return good, {p.bank_code: p for p in problems}


def build_context(
    settings: Settings, pseudonym_key: bytes, landing: Landing | None = None
) -> Context:
    use_preferred_pool()  # Arrow's buffers from jemalloc: flat peak memory (util/arrow_memory)

    def validator():  # type: ignore[no-untyped-def]
        # a warm worker's, else built here (great_expectations: seconds to import)
        return warm.validator(settings.expectations_dir, settings.data_docs_dir)

    return Context(
        engine=make_engine(settings.warehouse_url),
        landing=landing or open_landing(settings.landing_dir, settings.sftp_conn_id),
        contracts=contracts_and_problems(settings)[0],
        archive_dir=settings.archive_dir,
        pseudonym_key=pseudonym_key,
        validator_factory=validator,
        chunk_rows=settings.chunk_rows,
        gx_rows=settings.gx_rows,
        max_decompressed=settings.max_decompressed_bytes,
        alert=operator_alert,
        max_attempts=settings.max_attempts,
        max_reject_rows=settings.max_reject_rows,
    )


def build_marts(settings: Settings, as_of: dt.date | None = None) -> dict[str, object]:
    """Rebuild every mart in one transaction; ``as_of`` defaults to today in Asia/Shanghai."""
    as_of = as_of or today()
    engine = make_engine(settings.warehouse_url)
    contracts, _ = contracts_and_problems(settings)
    try:
        with engine.begin() as conn:
            return rebuild_all(conn, contracts, as_of)
    finally:
        engine.dispose()
