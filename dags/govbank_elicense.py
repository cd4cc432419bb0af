"""
### govbank_elicense: the government's e-licence usage records → warehouse

Hourly and on demand. Pulls the usage records of the e-licence platform
(`elicense-api.md` v1) updated since the watermark in `etl_watermark`, following
`next_cursor` to the end. Every raw page is kept under
`$GOVBANK_ELICENSE_RUNS_DIR/<run>/` (default `.local/elicense_runs`) for inspection, every page is checked against
the schema and the Great Expectations suite `expectations/elicense_usage.json`, and only
when all pages are good are the records upserted into `fact_elicense_usage` (a newer
version of a record replaces the older one) and the watermark moved, in one transaction.
A run that fails half-way loads nothing and the next run starts from the same watermark.

Transient faults (429 with Retry-After, 5xx, resets, timeouts) are retried inside the
client with bounded exponential backoff, then by Airflow. A 400/403/404, bad credentials
or a malformed page fail the task without retries.

Connection: `govbank_elicense_api` (type http: host = base URL, login = client_id,
password = client_secret). Updates the Asset `fact_elicense_usage`, which starts
**govbank_marts** (reconciliation with the banks' records). The asset event's extra
carries the day the records are pulled up to, `{"as_of": "YYYY-MM-DD"}`: the watermark
after the run (newest `updated_at` seen), as an Asia/Shanghai date; empty while nothing
was ever pulled. The marts are rebuilt as of the latest such day among their events.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from govbank.config.settings import ASSET_ELICENSE_USAGE
from govbank.orchestration.notify import failure_notifier

ELICENSE_USAGE = Asset(ASSET_ELICENSE_USAGE)


@dag(
    dag_id="govbank_elicense",
    schedule="15 * * * *",
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    # hourly: a run still going after 55 minutes would collide with the next
    dagrun_timeout=pendulum.duration(minutes=55),
    doc_md=__doc__,
    tags=["govbank", "elicense", "api"],
    default_args={
        "owner": "govbank-data",
        "retries": 3, "retry_delay": pendulum.duration(minutes=2),
        "on_failure_callback": failure_notifier,
    },
)
def govbank_elicense():
    @task(outlets=[ELICENSE_USAGE], execution_timeout=pendulum.duration(minutes=40))
    def pull_usages(run_id=None, outlet_events=None) -> dict:  # type: ignore[no-untyped-def]
        import re

        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowFailException

        from govbank.config.connections import ELICENSE_API_CONN_ID
        from govbank.domain.errors import ConfigError
        from govbank.elicense import ElicenseClient, MalformedPageError, config_from_connection
        from govbank.elicense import pull_usages as pull
        from govbank.marts.asof import as_of_extra
        from govbank.orchestration.airflow_support import settings
        from govbank.orchestration.warm import validator
        from govbank.warehouse.db import make_engine

        s = settings()
        engine = make_engine(s.warehouse_url)
        safe_run = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id or "manual")
        try:
            config = config_from_connection(Connection.get(ELICENSE_API_CONN_ID))
            with ElicenseClient(config) as client:
                result = pull(
                    engine,
                    client,
                    s.runs_dir,
                    safe_run,
                    validator(s.expectations_dir, s.data_docs_dir),  # a warm worker's if it has one
                )
        except (ConfigError, MalformedPageError) as exc:  # retrying cannot fix these
            raise AirflowFailException(str(exc)) from exc
        finally:
            engine.dispose()
        summary = result.as_dict()
        # the records are complete up to the watermark: that day is what the marts are as of
        outlet_events[ELICENSE_USAGE].extra = as_of_extra(summary.get("watermark_after"))
        print(summary, outlet_events[ELICENSE_USAGE].extra)
        return summary

    pull_usages()


govbank_elicense()
