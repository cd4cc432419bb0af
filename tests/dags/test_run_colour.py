"""A late bank, or a bank whose contract is broken, turns the ingest run red through Airflow;
the other banks are processed and publish still lets the marts rebuild."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from govbank_dev.demo import DemoDrop, build_demo, write_drop
from tests import background
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _airflow(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"source scripts/env.sh && {script}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=500,
    )


def _json(out: str) -> list[dict]:
    """The CLI's JSON, after whatever warnings Airflow printed first."""
    return json.loads(next(line for line in out.splitlines() if line.startswith("[")))


def test_late_bank_makes_the_run_failed_and_the_marts_rebuild() -> None:
    background.result(late_bank_run)


@background.job
def late_bank_run(tmp_path: Path) -> None:
    """The Airflow runs and the checks of their states, logs and inboxes (started early,
    see tests/background.py)."""
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    for bank in ("ICBCOH", "WZB"):  # both expect files weekly
        shutil.copy(ROOT / "include" / "contracts" / f"{bank}.yaml", contracts)
    (tmp_path / "landing" / "ICBCOH" / "inbox").mkdir(parents=True)  # ICBCOH sent none
    # CCBOH sent its files, but its contract was broken by an edit: only CCBOH stops
    broken = (ROOT / "include" / "contracts" / "CCBOH.yaml").read_text(encoding="utf-8")
    broken = broken.replace("joined_on: ", "joined_on: 2023-02-30  # was ", 1)
    (contracts / "CCBOH.yaml").write_text(broken, encoding="utf-8")
    drop = build_demo()
    drop = DemoDrop(drop.seed, drop.as_of, {b: drop.banks[b] for b in ("WZB", "CCBOH")})
    write_drop(drop, tmp_path / "landing")  # WZB and CCBOH sent their files
    env = {
        **background.environ(),
        "GOVBANK_LOCAL_DIR": str(tmp_path),
        "GOVBANK_CONTRACTS_DIR": str(contracts),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "GOVBANK_PSEUDONYM_KEY": "run-colour-test-key-0123456789",
    }
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    setup = _airflow("python -m govbank migrate >/dev/null && airflow db migrate >/dev/null", env)
    assert setup.returncode == 0, setup.stderr[-3000:]
    _airflow("airflow dags test govbank_ingest 2023-06-15 > $AIRFLOW_HOME/ingest.log 2>&1", env)
    runs = _airflow("airflow dags list-runs govbank_ingest -o json", env)
    (run,) = _json(runs.stdout)
    assert run["state"] == "failed"
    states = _airflow(f"airflow tasks states-for-dag-run govbank_ingest '{run['run_id']}' -o json", env)
    assert states.returncode == 0, states.stderr[-3000:]
    by_task = {(t["task_id"], str(t.get("map_index") or "")): t["state"] for t in _json(states.stdout)}
    assert by_task.get(("bank.wait_for_files", "1")) == "failed", by_task  # ICBCOH: late
    assert by_task[("bank.ingest_bank", "1")] == "success"  # whatever came is still answered
    # banks in code order: CCBOH 0, ICBCOH 1, WZB 2
    assert by_task.get(("bank.ingest_bank", "0")) == "failed", by_task  # CCBOH: broken contract
    assert by_task[("bank.wait_for_files", "2")] == "success", by_task  # WZB: on time
    assert by_task[("bank.ingest_bank", "2")] == "success"
    assert by_task.get(("all_banks_ingested", "")) == "failed", by_task
    assert by_task[("publish", "")] == "success"
    log = (tmp_path / "airflow" / "ingest.log").read_text(encoding="utf-8", errors="replace")
    assert "late (no complete files by the deadline): ICBCOH" in log
    verdict = log.split("late (no complete files by the deadline):")[1].splitlines()[0]
    assert "WZB" not in verdict and "ingest failed: CCBOH" in verdict
    assert "contract CCBOH.yaml is broken" in log and "joined_on" in log
    assert not list((tmp_path / "landing" / "WZB" / "inbox").iterdir())  # every WZB file answered
    assert len(list((tmp_path / "landing" / "CCBOH" / "inbox").iterdir())) == 2 * len(drop.banks["CCBOH"].files)

    marts = _airflow("airflow dags test govbank_marts 2023-06-15 > $AIRFLOW_HOME/marts.log 2>&1", env)
    assert marts.returncode == 0, (tmp_path / "airflow" / "marts.log").read_text()[-3000:]
    runs = _airflow("airflow dags list-runs govbank_marts -o json", env)
    assert _json(runs.stdout)[0]["state"] == "success"
