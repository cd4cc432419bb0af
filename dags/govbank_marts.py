"""
### govbank_marts: rebuild the marts dashboards read

Runs whenever **govbank_ingest** publishes new bank files (Asset `bank_files`) or the
e-licence pull loads usage records (Asset `fact_elicense_usage`); also on demand.
Rebuilds `mart_kpi`, `mart_outlets_by_town`, `mart_elicense_monthly`,
`mart_bank_freshness` and the reconciliation marts in one transaction, so dashboards
see the old or the new figures, never half.

`as_of` (the business day the year-to-date figures and bank freshness are computed for):

1. a run started by asset events has no logical date; the producers put the business day
   of their data into each event's extra, `{"as_of": "YYYY-MM-DD"}` (govbank_ingest: its
   run's logical date; govbank_elicense: the day its watermark reached), and the run
   takes the **latest** `as_of` among the events it consumed;
2. else the run's logical date (`airflow dags test govbank_marts 2023-06-15`);
3. else today in Asia/Shanghai.

The choice is `govbank.marts.asof.as_of_for`; the task logs it, and the `marts` Asset event it
emits carries the same `{"as_of": ...}`.

**write_reports** then writes the work report (`python -m govbank report`) of the month and
of the half-year `as_of` falls in, each up to `as_of`, as xlsx and docx into
`$GOVBANK_LOCAL_DIR/reports/` (or `$GOVBANK_REPORTS_DIR`), e.g.
`govbank_report_2023-06.xlsx` and `govbank_report_2023H1.docx`; a rerun replaces them.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

from govbank.config.settings import ASSET_BANK_FILES, ASSET_ELICENSE_USAGE, ASSET_MARTS
from govbank.orchestration.notify import failure_notifier

MARTS = Asset(ASSET_MARTS)


@dag(
    dag_id="govbank_marts",
    schedule=(Asset(ASSET_BANK_FILES) | Asset(ASSET_ELICENSE_USAGE)),
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=2),
    doc_md=__doc__,
    tags=["govbank", "marts"],
    default_args={
        "owner": "govbank-data",
        "retries": 2, "retry_delay": pendulum.duration(minutes=1),
        "on_failure_callback": failure_notifier,
    },
)
def govbank_marts():
    @task(outlets=[MARTS], execution_timeout=pendulum.duration(hours=1))
    def build_marts(  # type: ignore[no-untyped-def]
        logical_date=None, triggering_asset_events=None, outlet_events=None
    ) -> dict:
        from govbank.marts.asof import as_of_extra, as_of_for, event_extras
        from govbank.orchestration.airflow_support import settings
        from govbank.orchestration.runtime import build_marts as rebuild

        extras = event_extras(triggering_asset_events)
        as_of = as_of_for(logical_date, extras)
        print(f"as_of {as_of} (logical date {logical_date}, triggering event extras {extras})")
        figures = rebuild(settings(), as_of)
        for metric, value in figures.items():
            print(f"{metric}: {value}")
        if outlet_events is not None:  # the marts' own event says which day they are as of
            outlet_events[MARTS].extra = as_of_extra(as_of)
        return {**{k: str(v) for k, v in figures.items()}, "as_of": as_of.isoformat()}

    @task(execution_timeout=pendulum.duration(minutes=15))
    def write_reports(figures: dict) -> list[str]:  # type: ignore[no-untyped-def]
        import datetime as dt

        from govbank.orchestration.airflow_support import settings
        from govbank.report import write_reports as write
        from govbank.report.write import reports_dir

        as_of = dt.date.fromisoformat(figures["as_of"])
        written = write(settings().warehouse_url, as_of, reports_dir())
        for path in written:
            print(f"report: {path}")
        return [str(p) for p in written]

    write_reports(build_marts())


govbank_marts()
