"""
### govbank_replay: reprocess archived bank files, on demand

Trigger it from the UI form (or `airflow dags trigger govbank_replay --conf '{...}'`)
after fixing what made files fail: a contract that was wrong (a date format, a header),
a bank that had no contract yet (`NO_CONTRACT`), a poison file fixed on our side.
Name the files by **bank** and one of **file** (the name the bank sent), **sha256**
(the digest in the receipt) or **status** (`rejected`, ...) with **since** (received on
or after that day). **dry_run** only lists what would be replayed.

`replay` takes the raw bytes from the archive (`GOVBANK_ARCHIVE_DIR`) and runs them
through today's contract and suites exactly as a new drop; the earlier outcome stays in
`etl_file` and the new row's `replay_of` points at it. The bank gets a new receipt in
its outbox whose `replay_of` names the earlier outcome. Replaying an accepted file
changes no table. Bytes purged past retention (`GOVBANK_RETENTION_DAYS`) cannot be
replayed, and the task fails saying so. `rebuild_marts` then refreshes the marts (skipped
on a dry run). Same as `python -m govbank replay`; see docs/operations.md.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, Param, dag, task

from govbank.config.settings import ASSET_MARTS
from govbank.orchestration.notify import failure_notifier

MARTS = Asset(ASSET_MARTS)


@dag(
    dag_id="govbank_replay",
    schedule=None,
    start_date=pendulum.datetime(2023, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=4),
    doc_md=__doc__,
    tags=["govbank", "ingest", "operations"],
    params={
        "bank": Param("", type="string", title="Bank code", description="the bank code, e.g. WZB"),
        "file": Param(
            None, type=["null", "string"], title="File name",
            description="the name the bank sent, e.g. ELIC_WZB_20230601.txt",
        ),
        "sha256": Param(
            None, type=["null", "string"], title="sha256",
            description="the digest of the bytes, as in the receipt",
        ),
        "status": Param(
            None, type=["null", "string"], enum=[None, "rejected", "partially_accepted", "accepted"],
            title="Status", description="every file of the bank whose latest outcome has this status",
        ),
        "since": Param(
            None, type=["null", "string"], format="date", title="Since",
            description="with status: received on or after this day (YYYY-MM-DD)",
        ),
        "dry_run": Param(True, type="boolean", title="Dry run", description="only list what would be replayed"),
    },
    default_args={
        "owner": "govbank-data",
        "retries": 1, "retry_delay": pendulum.duration(minutes=1),
        "on_failure_callback": failure_notifier,
    },
)
def govbank_replay():
    @task(execution_timeout=pendulum.duration(hours=3))
    def replay(params=None) -> dict:  # type: ignore[no-untyped-def]
        """Fails (and alerts) when nothing matched or a file could not be replayed."""
        import datetime as dt

        from airflow.sdk.exceptions import AirflowFailException

        from govbank.ingest.replay import Selection, replay, report
        from govbank.orchestration.airflow_support import pseudonym_key, settings
        from govbank.orchestration.runtime import build_context

        p = params or {}
        chosen = [k for k in ("file", "sha256", "status") if p.get(k)]
        if not p.get("bank") or len(chosen) != 1:
            raise AirflowFailException("give bank and exactly one of file, sha256, status")
        since = dt.date.fromisoformat(p["since"]) if p.get("since") else None
        sel = Selection(p["bank"], p.get("file"), p.get("sha256"), p.get("status"), since)
        ctx = build_context(settings(), pseudonym_key())
        try:
            results = replay(ctx, sel, dry_run=bool(p.get("dry_run")))
        finally:
            ctx.landing.close()
            ctx.engine.dispose()
        text = report(results, bool(p.get("dry_run")))
        print(text)
        if not results or any(r.refused for r in results):
            raise AirflowFailException(text)
        return {
            "dry_run": bool(p.get("dry_run")),
            "files": len(results),
            "by_status": {
                s: sum(r.outcome is not None and r.outcome.status == s for r in results)
                for s in {r.outcome.status for r in results if r.outcome is not None}
            },
        }

    @task(outlets=[MARTS], execution_timeout=pendulum.duration(hours=1))
    def rebuild_marts(summary: dict) -> dict:
        """The replayed rows in the dashboards; a dry run changed nothing to rebuild."""
        from govbank.orchestration.airflow_support import settings
        from govbank.orchestration.runtime import build_marts

        if summary["dry_run"]:
            print("dry run: the marts are unchanged")
            return {}
        return {k: str(v) for k, v in build_marts(settings()).items()}

    rebuild_marts(replay())


govbank_replay()
