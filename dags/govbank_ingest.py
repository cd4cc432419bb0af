"""
### govbank_ingest: bank files → warehouse

Daily (21:00 Asia/Shanghai) and on demand. For **each bank** (one mapped task
instance per bank, named after its code in the grid) it takes every complete file
from the bank's `inbox/` (a data file counts once its `.ok` exists), in business-date
order, OUTLET before ELIC of the same day, and runs the stages of the `govbank`
package: register by sha256 (re-sent bytes get a `duplicate` receipt), archive the raw
bytes, read (UTF-8/GB18030, gzip, csv/txt/xlsx, streamed in chunks), map headers through
the bank's contract, normalise, validate with Great Expectations (Data Docs per file),
pseudonymise legal representatives' IDs, load set-based and atomically, then answer the
bank with `<file>.receipt.json` (and `<file>.rejects.csv`) in its `outbox/`.

What a bank sent wrong ends in its receipt and does not fail the task; what broke on
our side (database, network) fails the task and Airflow retries it: a retry is safe.
`publish` updates the `bank_files` Asset, which starts **govbank_marts**, even when
one bank failed; `all_banks_ingested` turns the run red if any bank's task failed.

Configuration: landing folder `GOVBANK_LANDING_DIR` or SFTP connection
`GOVBANK_SFTP_CONN_ID`; warehouse connection `govbank_warehouse` (or
`GOVBANK_WAREHOUSE_URL`); pseudonym key connection `govbank_pseudonym` (or
`GOVBANK_PSEUDONYM_KEY`); contracts folder `GOVBANK_CONTRACTS_DIR`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from govbank.settings import ASSET_BANK_FILES

BANK_FILES = Asset(ASSET_BANK_FILES)


@dag(
    dag_id="govbank_ingest",
    schedule="0 21 * * *",
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["govbank", "ingest", "bank-files"],
    default_args={"owner": "govbank-data", "retries": 2, "retry_delay": pendulum.duration(minutes=1)},
)
def govbank_ingest():
    @task
    def banks() -> list[str]:
        """Every bank with a contract or a folder on the landing."""
        from govbank.airflow_support import settings
        from govbank.contracts import load_contracts
        from govbank.transport import open_landing

        s = settings()
        landing = open_landing(s.landing_dir, s.sftp_conn_id)
        try:
            return sorted(set(load_contracts(s.contracts_dir)) | set(landing.bank_codes()))
        finally:
            landing.close()

    @task(map_index_template="{{ bank_code }}")
    def ingest_bank(bank_code: str) -> dict:
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException

        from govbank.airflow_support import pseudonym_key, settings
        from govbank.errors import ConfigError
        from govbank.pipeline import process_bank
        from govbank.runtime import build_context

        get_current_context()["bank_code"] = bank_code
        try:
            ctx = build_context(settings(), pseudonym_key())
        except ConfigError as exc:  # retrying will not fix a bad contract or a missing key
            raise AirflowFailException(str(exc)) from exc
        try:
            outcomes = process_bank(ctx, bank_code)
        finally:
            ctx.landing.close()
            ctx.engine.dispose()
        return {
            "bank_code": bank_code,
            "files": len(outcomes),
            "by_status": {s: sum(o.status == s for o in outcomes) for s in {o.status for o in outcomes}},
            "rows_loaded": sum(o.rows_loaded for o in outcomes),
            "rows_rejected": sum(o.rows_rejected for o in outcomes),
        }

    @task(trigger_rule="all_done", outlets=[BANK_FILES])
    def publish() -> None:
        """Tell the marts DAG the warehouse changed, even if one bank's task failed."""

    @task
    def all_banks_ingested() -> None:
        """Runs only when every bank's task succeeded, so a failed bank turns the run red."""

    per_bank = ingest_bank.expand(bank_code=banks())
    per_bank >> [publish(), all_banks_ingested()]

govbank_ingest()
