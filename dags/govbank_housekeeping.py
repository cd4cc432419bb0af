"""
### govbank_housekeeping: personal data kept no longer than needed

Daily (03:30 Asia/Shanghai). Purges past `GOVBANK_RETENTION_DAYS` (default 180):

- raw bank files in the archive (`GOVBANK_ARCHIVE_DIR`) whose every `etl_file` row
  (original, duplicates, replays) is final (accepted, partially accepted, rejected,
  duplicate) **and** answered, and was received before the cutoff; a file still
  `processing` or unanswered is kept. The rows stay, dated `archive_purged_at`; a replay
  of purged bytes says they are gone;
- raw e-licence API pages (`GOVBANK_ELICENSE_RUNS_DIR/<run>/`) in which nothing changed
  since the cutoff.

Same as `python -m govbank housekeeping [--dry-run]`; see docs/operations.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from govbank.orchestration.notify import failure_notifier


@dag(
    dag_id="govbank_housekeeping",
    schedule="30 3 * * *",
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=2),
    doc_md=__doc__,
    tags=["govbank", "operations"],
    default_args={
        "owner": "govbank-data",
        "retries": 2, "retry_delay": pendulum.duration(minutes=5),
        "on_failure_callback": failure_notifier,
    },
)
def govbank_housekeeping():
    @task(execution_timeout=pendulum.duration(hours=1))
    def purge_past_retention() -> dict:
        """Safe to retry: what was purged is dated, what is left is looked at again."""
        from govbank.orchestration.airflow_support import settings
        from govbank.orchestration.housekeeping import housekeeping

        result = housekeeping(settings())
        print(result.report())
        return {
            "archive_files": len(result.archive_files),
            "api_runs": len(result.api_runs),
            "kept_unfinished": len(result.kept_unfinished),
        }

    purge_past_retention()


govbank_housekeeping()
