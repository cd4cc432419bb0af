"""
### govbank_ingest: bank files → warehouse

Daily (08:00 Asia/Shanghai) and on demand. For **each bank** (a mapped task group,
one instance per bank) `wait_for_files` waits in reschedule mode (no worker slot held)
until complete files are in the bank's inbox or the contract's deadline passes; a bank
that is past its deadline and its cadence fails that sensor, which alerts the operators (every task's failure goes through
the Apprise notifier of the `govbank_alerts` connection) and shows in `mart_bank_freshness`,
without holding the other banks back. `ingest_bank` then takes every complete file
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
one bank failed; the asset event's extra carries the run's business day,
`{"as_of": "YYYY-MM-DD"}` (its logical date in Asia/Shanghai; a run without one: the day
it was started), which the marts are then rebuilt as of. `all_banks_ingested` turns the run red, naming the banks,
if any bank was late (its sensor failed) or its ingest failed; `publish` and the marts run
all the same.

Configuration: landing folder `GOVBANK_LANDING_DIR` or SFTP connection
`GOVBANK_SFTP_CONN_ID`; warehouse connection `govbank_warehouse` (or
`GOVBANK_WAREHOUSE_URL`); pseudonym key connection `govbank_pseudonym` (or
`GOVBANK_PSEUDONYM_KEY`); contracts folder `GOVBANK_CONTRACTS_DIR`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, PokeReturnValue, dag, task, task_group

from govbank.config.settings import ASSET_BANK_FILES
from govbank.orchestration.notify import failure_notifier

BANK_FILES = Asset(ASSET_BANK_FILES)


@dag(
    dag_id="govbank_ingest",
    schedule="0 8 * * *",
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=2,
    # the sensors may wait a day for a late bank; past that the run is stuck, not late
    dagrun_timeout=pendulum.duration(hours=26),
    doc_md=__doc__,
    tags=["govbank", "ingest", "bank-files"],
    default_args={
        "owner": "govbank-data",
        "retries": 2, "retry_delay": pendulum.duration(minutes=1),
        "on_failure_callback": failure_notifier,
    },
)
def govbank_ingest():
    @task(execution_timeout=pendulum.duration(minutes=10))
    def banks() -> list[str]:
        """Every bank with a contract or a folder on the landing."""
        from govbank.orchestration.airflow_support import settings
        from govbank.orchestration.runtime import contracts_and_problems
        from govbank.transport import open_landing

        s = settings()
        good, broken = contracts_and_problems(s)  # a broken contract's bank still gets its task
        landing = open_landing(s.landing_dir, s.sftp_conn_id)
        try:
            return sorted(set(good) | set(broken) | set(landing.bank_codes()))
        finally:
            landing.close()

    @task_group
    def bank(bank_code: str):  # type: ignore[no-untyped-def]
        @task.sensor(
            mode="reschedule",
            poke_interval=600,
            timeout=24 * 3600,
            retries=0,
            execution_timeout=pendulum.duration(minutes=10),
            map_index_template="{{ bank_code }}",
        )
        def wait_for_files(bank_code: str, logical_date=None) -> PokeReturnValue:  # type: ignore[no-untyped-def]
            """Free the worker slot between pokes; fail (and alert) only past the deadline."""
            from airflow.sdk import get_current_context
            from airflow.sdk.exceptions import AirflowSensorTimeout

            from govbank.orchestration.airflow_support import settings
            from govbank.orchestration.readiness import check_bank
            from govbank.orchestration.runtime import contracts_and_problems
            from govbank.transport import open_landing
            from govbank.warehouse.db import make_engine

            get_current_context()["bank_code"] = bank_code  # what map_index_template names
            s = settings()
            landing = open_landing(s.landing_dir, s.sftp_conn_id)
            engine = make_engine(s.warehouse_url)
            now = pendulum.now("Asia/Shanghai")
            day = pendulum.instance(logical_date or now).in_tz("Asia/Shanghai").date()
            try:
                state = check_bank(
                    landing, engine, contracts_and_problems(s)[0].get(bank_code), bank_code, day, now
                )
            finally:
                landing.close()
                engine.dispose()
            print(state.message)
            if state.late:
                raise AirflowSensorTimeout(state.message)
            return PokeReturnValue(is_done=state.ready)

        @task(
            trigger_rule="all_done",
            map_index_template="{{ bank_code }}",
            execution_timeout=pendulum.duration(hours=2),
        )
        def ingest_bank(bank_code: str) -> dict:
            """Runs after the wait even when the bank is late: whatever did arrive is answered."""
            from airflow.sdk import get_current_context
            from airflow.sdk.exceptions import AirflowFailException

            from govbank.domain.errors import ConfigError
            from govbank.ingest.run import process_bank
            from govbank.orchestration.airflow_support import pseudonym_key, settings
            from govbank.orchestration.runtime import build_context, contracts_and_problems

            get_current_context()["bank_code"] = bank_code
            s = settings()
            broken = contracts_and_problems(s)[1].get(bank_code)
            if broken is not None:  # its files wait in the inbox until the contract is fixed
                raise AirflowFailException(f"contract {broken.file} is broken: {broken.error}")
            try:
                ctx = build_context(s, pseudonym_key())
            except ConfigError as exc:  # retrying will not fix a missing key
                raise AirflowFailException(str(exc)) from exc
            try:
                outcomes = process_bank(ctx, bank_code)
            except ConfigError as exc:  # a landing folder that is a link: an operator must look
                raise AirflowFailException(str(exc)) from exc
            finally:
                ctx.landing.close()
                ctx.engine.dispose()
            return {
                "bank_code": bank_code,
                "files": len(outcomes),
                "by_status": {st: sum(o.status == st for o in outcomes) for st in {o.status for o in outcomes}},
                # a file loaded by an earlier, interrupted run and only answered now is not counted again
                "rows_loaded": sum(o.rows_loaded for o in outcomes if o.loaded_now),
                "rows_rejected": sum(o.rows_rejected for o in outcomes if o.loaded_now),
            }

        wait_for_files(bank_code) >> ingest_bank(bank_code)

    @task(trigger_rule="all_done", outlets=[BANK_FILES], execution_timeout=pendulum.duration(minutes=5))
    def publish(logical_date=None, dag_run=None, outlet_events=None) -> dict:  # type: ignore[no-untyped-def]
        """Tell the marts DAG the warehouse changed, even if one bank's task failed.

        The event carries the business day this run ingested for, ``{"as_of": "YYYY-MM-DD"}``
        (the logical date in Asia/Shanghai; a run without one: when it was started).
        """
        from govbank.marts.asof import as_of_extra

        extra = as_of_extra(logical_date or getattr(dag_run, "run_after", None))
        outlet_events[BANK_FILES].extra = extra
        print(f"{BANK_FILES.uri}: {extra}")
        return extra

    @task(trigger_rule="all_done", execution_timeout=pendulum.duration(minutes=5))
    def all_banks_ingested(bank_codes: list[str], dag_run=None, ti=None) -> None:  # type: ignore[no-untyped-def]
        """Fails, naming the banks, when any bank was late or its ingest failed: the run turns red."""
        from airflow.sdk.exceptions import AirflowFailException

        from govbank.orchestration.run_state import banks_needing_attention

        states = ti.get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id], task_group_id="bank")
        attention = banks_needing_attention(bank_codes, states.get(dag_run.run_id, {}))
        print(attention.message())
        if attention:
            raise AirflowFailException(attention.message())

    codes = banks()
    per_bank = bank.expand(bank_code=codes)
    per_bank >> [publish(), all_banks_ingested(codes)]


govbank_ingest()
