"""Scaling out for real: the CeleryExecutor with two workers, on PostgreSQL and Redis.

``scripts/celery-stack.sh start`` brings up a scheduler, dag-processor, api-server and
two Celery workers (host names govbank-w1 and govbank-w2) on fresh PostgreSQL
databases (Airflow metadata; warehouse) with the demo drop in the landing folder. The
test drives it through the REST API only, as an operator would: trigger govbank_ingest,
unpause it and govbank_marts, wait. Then it checks that the per-bank tasks ran on both
workers, that the ingest's asset event started govbank_marts, and that the warehouse
holds what the demo generator planned. ``stop`` runs at teardown whatever happened;
every process's log, task logs included, stays in test-artifacts/celery/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from govbank.warehouse.db import make_engine
from govbank.warehouse.schema import etl_file, mart_kpi
from govbank_dev.demo import AS_OF, EXPECTED_KPI, build_demo
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "scripts" / "celery-stack.sh"
ARTIFACTS = ROOT / "test-artifacts" / "celery"
KEY = "celery-test-pseudonym-key-0123456789abcdef"
WORKERS = {"govbank-w1", "govbank-w2"}
INGEST_WAIT = 8 * 60  # bounds, not expectations: a loaded 2-core machine is slow
MARTS_WAIT = 4 * 60
TERMINAL = {"success", "failed"}
# one api-server process serves the UI's API and the workers' execution API; on a busy
# machine its first execution request (lazy imports) has kept it for 30 s
TIMEOUT = 120


class Api:
    """The stack's REST API with a token of the simple auth manager's admin."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        self.http = requests.Session()
        resp = self.http.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=TIMEOUT)
        resp.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def get(self, path: str, **params: Any) -> Any:
        resp = self.http.get(f"{self.base}/api/v2/{path}", params=params, timeout=TIMEOUT)
        resp.raise_for_status()
        return resp.json()

    def send(self, method: str, path: str, body: dict) -> Any:
        resp = self.http.request(method, f"{self.base}/api/v2/{path}", json=body, timeout=TIMEOUT)
        assert resp.ok, f"{method} {path}: {resp.status_code} {resp.text[:500]}"
        return resp.json()

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100)["task_instances"]


def _poll(what: str, seconds: float, probe) -> Any:  # type: ignore[no-untyped-def]
    """Call probe until it returns something truthy; None once the bound has passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if found := probe():
                return found
        except requests.Timeout:  # a slow answer is not an answer; the deadline decides
            pass
        time.sleep(3)
    print(f"gave up waiting for {what} after {seconds:.0f} s")
    return None


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if m := re.fullmatch(r"export (\w+)='?(.*?)'?", line):
            env[m[1]] = m[2]
    return env


def _script(action: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    for tool in ("psql", "redis-cli", "unshare"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (scripts/system-deps.sh)")
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    state = tmp_path_factory.mktemp("celery")
    # nothing of the test session's own Airflow or warehouse settings leaks into the stack
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith("AIRFLOW")
        and not (k.startswith("GOVBANK_") and not k.startswith(("GOVBANK_PG_", "GOVBANK_REDIS_", "GOVBANK_CELERY_")))
    }
    env.update(GOVBANK_CELERY_DIR=str(state), GOVBANK_CELERY_LOGS=str(ARTIFACTS), GOVBANK_PSEUDONYM_KEY=KEY)
    try:
        started = _script("start", env)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "start.log").write_text(started.stdout + started.stderr)
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        stack_env = _read_env(state / "stack.env")
        password = json.loads(Path(stack_env["GOVBANK_CELERY_PASSWORDS"]).read_text())["admin"]
        yield _drive(Api(stack_env["GOVBANK_CELERY_API_URL"], password), stack_env)
    finally:
        stopped = _script("stop", env)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "stop.log").write_text(stopped.stdout + stopped.stderr)
        assert stopped.returncode == 0, stopped.stdout[-2000:] + stopped.stderr[-2000:]


def _drive(api: Api, stack_env: dict[str, str]) -> dict[str, Any]:
    """What an operator does: trigger the ingest, let the scheduler do the rest."""
    dag = _poll("the dag-processor to parse the DAGs", 180, lambda: _known(api))
    assert dag, "govbank_ingest and govbank_marts never appeared in the API"
    # The run the scheduler would start on unpausing, started now through the API: with
    # the same logical date the scheduler finds it exists and does not add a second one.
    run = api.send("POST", "dags/govbank_ingest/dagRuns", {"logical_date": dag["next_dagrun_logical_date"]})
    for dag_id in ("govbank_marts", "govbank_ingest"):
        api.send("PATCH", f"dags/{dag_id}", {"is_paused": False})
    run_id = run["dag_run_id"]
    state = _poll("govbank_ingest", INGEST_WAIT, lambda: _state(api, "govbank_ingest", run_id))
    out: dict[str, Any] = {"api": api, "env": stack_env, "ingest_run": run_id, "ingest_state": state}
    out["ingest_tis"] = api.task_instances("govbank_ingest", run_id)
    if state != "success":
        return out

    # the demo's business date, for the figures of the seed report
    manual = api.send(
        "POST", "dags/govbank_marts/dagRuns", {"logical_date": f"{AS_OF.isoformat()}T00:00:00+08:00"}
    )

    def marts_done() -> list[dict] | None:
        runs = api.get("dags/govbank_marts/dagRuns", limit=100)["dag_runs"]
        kinds = {r["run_type"] for r in runs}
        if {"asset_triggered", "manual"} <= kinds and all(r["state"] in TERMINAL for r in runs):
            return runs
        return None

    out["marts_runs"] = _poll("govbank_marts", MARTS_WAIT, marts_done) or api.get(
        "dags/govbank_marts/dagRuns", limit=100
    )["dag_runs"]
    out["marts_manual_run"] = manual["dag_run_id"]
    out["ingest_runs"] = api.get("dags/govbank_ingest/dagRuns", limit=100)["dag_runs"]
    return out


def _known(api: Api) -> dict | None:
    dags = {d["dag_id"]: d for d in api.get("dags", limit=100)["dags"]}
    if {"govbank_ingest", "govbank_marts"} <= set(dags) and dags["govbank_ingest"]["next_dagrun_logical_date"]:
        return dags["govbank_ingest"]
    return None


def _state(api: Api, dag_id: str, run_id: str) -> str | None:
    state = api.get(f"dags/{dag_id}/dagRuns/{run_id}")["state"]
    return state if state in TERMINAL else None


def _summary(tis: list[dict]) -> str:
    return "\n".join(
        f"{t['task_id']}[{t['map_index']}] {t['state']} on {t['hostname']}" for t in tis
    )


def test_ingest_through_the_api_succeeds_once(stack: dict[str, Any]) -> None:
    assert stack["ingest_state"] == "success", (
        f"govbank_ingest ended {stack['ingest_state']}:\n{_summary(stack['ingest_tis'])}\n"
        f"logs in {ARTIFACTS}"
    )
    # unpausing did not add a scheduled run beside ours
    assert [r["dag_run_id"] for r in stack["ingest_runs"]] == [stack["ingest_run"]]


def test_per_bank_tasks_ran_on_both_workers(stack: dict[str, Any]) -> None:
    ingest = [t for t in stack["ingest_tis"] if t["task_id"] == "bank.ingest_bank"]
    assert sorted(t["map_index"] for t in ingest) == list(range(len(build_demo().banks)))
    assert all(t["state"] == "success" and t["queue"] == "default" for t in ingest), _summary(ingest)
    assert {t["hostname"] for t in ingest} == WORKERS, _summary(ingest)
    # and every task of the run ran on one of the two workers, none anywhere else
    assert {t["hostname"] for t in stack["ingest_tis"]} <= WORKERS, _summary(stack["ingest_tis"])


def test_ingest_tasks_found_great_expectations_preloaded(stack: dict[str, Any]) -> None:
    """Each worker warmed up before forking (govbank.orchestration.workers.CELERY_CONFIG):
    every ingest task reused its worker's validator instead of importing GX."""
    for n in (1, 2):
        log = (ARTIFACTS / f"worker-w{n}.log").read_text(errors="replace")
        assert "govbank warm-up: great_expectations" in log, f"worker w{n} did not warm up"
    run_dir = ARTIFACTS / "tasks" / "dag_id=govbank_ingest" / f"run_id={stack['ingest_run']}"
    logs = sorted(run_dir.glob("task_id=bank.ingest_bank/map_index=*/attempt=*.log"))
    assert len(logs) >= len(build_demo().banks), logs
    for path in logs:
        text = path.read_text(errors="replace")
        assert "great_expectations preloaded: yes (validator reused)" in text, path


def test_asset_event_started_the_marts(stack: dict[str, Any]) -> None:
    api: Api = stack["api"]
    runs = stack.get("marts_runs", [])
    triggered = [r for r in runs if r["run_type"] == "asset_triggered"]
    assert len(triggered) == 1, runs
    run = triggered[0]
    tis = api.task_instances("govbank_marts", run["dag_run_id"])
    assert run["state"] == "success", _summary(tis)
    assert {t["hostname"] for t in tis} <= WORKERS
    events = api.get(f"dags/govbank_marts/dagRuns/{run['dag_run_id']}/upstreamAssetEvents")["asset_events"]
    assert [(e["source_dag_id"], e["source_run_id"]) for e in events] == [("govbank_ingest", stack["ingest_run"])]


def test_warehouse_holds_the_planned_figures(stack: dict[str, Any]) -> None:
    manual = [r for r in stack.get("marts_runs", []) if r["dag_run_id"] == stack.get("marts_manual_run")]
    assert manual and manual[0]["state"] == "success", manual
    drop = build_demo()
    expected = drop.expected()
    engine = make_engine(stack["env"]["GOVBANK_WAREHOUSE_URL"])
    try:
        with engine.connect() as conn:
            kpi = conn.execute(
                select(mart_kpi.c.metric, mart_kpi.c.value).where(mart_kpi.c.as_of == AS_OF)
            ).all()
            files = conn.execute(
                select(etl_file.c.file_name, etl_file.c.status, etl_file.c.rows_loaded, etl_file.c.rows_rejected)
            ).all()
    finally:
        engine.dispose()
    assert {m: Decimal(str(v)) for m, v in kpi} == EXPECTED_KPI
    assert sorted(files) == sorted(
        (name, e.status, e.rows_loaded, e.rows_rejected) for name, e in expected.items()
    )
