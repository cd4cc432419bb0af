"""
### govbank_marts: rebuild the marts dashboards read

Runs whenever **govbank_ingest** publishes new bank files (Asset `bank_files`) or the
e-licence pull loads usage records (Asset `fact_elicense_usage`); also on demand.
Rebuilds `mart_kpi`, `mart_outlets_by_town`, `mart_elicense_monthly`,
`mart_bank_freshness` and the reconciliation marts in one transaction, so dashboards
see the old or the new figures, never half.

`as_of` is the run's logical date when it has one (`airflow dags test govbank_marts
2023-06-15`), else today in Asia/Shanghai.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from govbank.settings import ASSET_BANK_FILES, ASSET_ELICENSE_USAGE, ASSET_MARTS


@dag(
    dag_id="govbank_marts",
    schedule=(Asset(ASSET_BANK_FILES) | Asset(ASSET_ELICENSE_USAGE)),
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["govbank", "marts"],
    default_args={"owner": "govbank-data", "retries": 2, "retry_delay": pendulum.duration(minutes=1)},
)
def govbank_marts():
    @task(outlets=[Asset(ASSET_MARTS)])
    def build_marts(logical_date=None) -> dict:  # type: ignore[no-untyped-def]
        from govbank.airflow_support import settings
        from govbank.runtime import build_marts as rebuild

        as_of = pendulum.instance(logical_date).in_tz("Asia/Shanghai").date() if logical_date else None
        figures = rebuild(settings(), as_of)
        for metric, value in figures.items():
            print(f"{metric}: {value}")
        return {k: str(v) for k, v in figures.items()}

    build_marts()


govbank_marts()
