"""DAG policy: every DAG imports cleanly and carries docs, tags, an owner and retries."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}, "\n".join(
        f"{k}: {v}" for k, v in dagbag.import_errors.items()
    )
    assert {"govbank_ingest", "govbank_marts", "govbank_elicense"} <= set(dagbag.dag_ids)


def test_every_dag_follows_the_policy(dagbag) -> None:  # type: ignore[no-untyped-def]
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if not dag.doc_md or len(dag.doc_md.strip()) < 80:
            problems.append(f"{dag_id}: doc_md missing or too short")
        if "govbank" not in dag.tags:
            problems.append(f"{dag_id}: no 'govbank' tag")
        if dag.catchup:
            problems.append(f"{dag_id}: catchup must be False")
        for task in dag.tasks:
            if task.owner in (None, "", "airflow"):
                problems.append(f"{dag_id}.{task.task_id}: no owner")
            is_sensor = "BaseSensorOperator" in {c.__name__ for c in type(task).__mro__}
            kwargs = getattr(task, "partial_kwargs", None)
            timeout = kwargs.get("timeout") if kwargs is not None else getattr(task, "timeout", None)
            if is_sensor and not timeout:
                problems.append(f"{dag_id}.{task.task_id}: a sensor needs a timeout")
            if not is_sensor and (task.retries or 0) < 1:
                problems.append(f"{dag_id}.{task.task_id}: no retries")
    assert not problems, "\n".join(problems)


def test_ingest_is_mapped_per_bank_and_feeds_the_marts(dagbag) -> None:  # type: ignore[no-untyped-def]
    ingest = dagbag.dags["govbank_ingest"]
    for task_id in ("bank.wait_for_files", "bank.ingest_bank"):
        # one instance per bank: the task group is mapped over the bank codes
        assert type(ingest.get_task(task_id).task_group).__name__ == "MappedTaskGroup"
    published = {o.uri for o in ingest.get_task("publish").outlets}
    condition = dagbag.dags["govbank_marts"].timetable.asset_condition
    listened = {a.uri for a in condition.objects}
    assert published == {"govbank://warehouse/bank_files"}
    assert published <= listened


@pytest.mark.parametrize("dag_file", sorted(p.name for p in (ROOT / "dags").glob("*.py")))
def test_dag_files_do_no_heavy_imports(dag_file: str) -> None:
    """Parsing a DAG file must not pull in Great Expectations, pandas or a database driver."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        "heavy = [m for m in ('great_expectations', 'pandas', 'psycopg', 'paramiko') if m in sys.modules];"
        "print('HEAVY=' + ','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "dags" / dag_file)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    [line] = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert line == "HEAVY=", f"{dag_file} imports {line[6:]} at parse time"
