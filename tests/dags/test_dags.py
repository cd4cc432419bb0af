"""DAG policy: every DAG imports cleanly and carries docs, tags, an owner, retries and timeouts."""

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


def test_every_dag_serialises(dagbag) -> None:  # type: ignore[no-untyped-def]
    """The scheduler and `airflow dags test` store DAGs serialised: a parse is not enough."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag_id, dag in dagbag.dags.items():
        assert DagSerialization.to_dict(dag)["dag"]["dag_id"] == dag_id


def test_every_dag_follows_the_policy(dagbag) -> None:  # type: ignore[no-untyped-def]
    problems = []
    for dag_id, dag in dagbag.dags.items():
        if not dag.doc_md or len(dag.doc_md.strip()) < 80:
            problems.append(f"{dag_id}: doc_md missing or too short")
        if "govbank" not in dag.tags:
            problems.append(f"{dag_id}: no 'govbank' tag")
        if dag.catchup:
            problems.append(f"{dag_id}: catchup must be False")
        if not dag.dagrun_timeout:
            problems.append(f"{dag_id}: no dagrun_timeout")
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
            if not task.execution_timeout:
                problems.append(f"{dag_id}.{task.task_id}: no execution_timeout")
            mapped = type(task.task_group).__name__ == "MappedTaskGroup" or type(task).__name__ == "MappedOperator"
            if mapped and not getattr(task, "map_index_template", None):
                problems.append(f"{dag_id}.{task.task_id}: mapped without a map_index_template")
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


# --- the business day travels on the asset events: producers emit it, govbank_marts reads it ---


def _asset_event(uri: str, extra: dict):  # type: ignore[no-untyped-def]
    """A triggering asset event as the task SDK hands it to the consumer's context."""
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    return AssetEventDagRunReferenceResult(
        asset={"name": uri, "uri": uri, "extra": {}},
        extra=extra,
        source_task_id="publish",
        source_dag_id="producer",
        source_run_id="manual__1",
        source_map_index=-1,
        source_aliases=[],
        timestamp="2026-03-01T00:00:00+00:00",
    )


def test_marts_take_the_latest_as_of_of_their_triggering_events(dagbag, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt
    import types

    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import (
        OutletEventAccessors,
        TriggeringAssetEventsAccessor,
    )

    import govbank.orchestration.airflow_support
    from govbank.config.settings import ASSET_BANK_FILES, ASSET_ELICENSE_USAGE, ASSET_MARTS

    calls: list[object] = []
    fake_runtime = types.ModuleType("govbank.orchestration.runtime")  # no warehouse, no pipeline import
    fake_runtime.build_marts = lambda settings, as_of: calls.append(as_of) or {"biz": 1}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "govbank.orchestration.runtime", fake_runtime)
    monkeypatch.setattr(govbank.orchestration.airflow_support, "settings", lambda: None)
    build = dagbag.dags["govbank_marts"].get_task("build_marts").python_callable

    events = TriggeringAssetEventsAccessor.build(
        [
            _asset_event(ASSET_BANK_FILES, {"as_of": "2023-06-15"}),
            _asset_event(ASSET_ELICENSE_USAGE, {"as_of": "2023-06-14"}),
            _asset_event(ASSET_BANK_FILES, {}),
        ]
    )
    outlets = OutletEventAccessors()
    build(logical_date=None, triggering_asset_events=events, outlet_events=outlets)
    assert calls == [dt.date(2023, 6, 15)]
    assert outlets[Asset(ASSET_MARTS)].extra == {"as_of": "2023-06-15"}

    # a manual run: no events, a logical date (08:00 Shanghai is 00:00 UTC)
    logical = dt.datetime(2023, 6, 15, 0, 0, tzinfo=dt.UTC)
    build(logical_date=logical, triggering_asset_events=TriggeringAssetEventsAccessor.build([]))
    assert calls[-1] == dt.date(2023, 6, 15)


def test_ingest_publish_emits_its_business_day(dagbag) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt
    from types import SimpleNamespace

    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from govbank.config.settings import ASSET_BANK_FILES

    publish = dagbag.dags["govbank_ingest"].get_task("publish").python_callable
    outlets = OutletEventAccessors()
    # the 08:00 Asia/Shanghai schedule: logical date 2023-06-15T00:00Z
    publish(logical_date=dt.datetime(2023, 6, 15, tzinfo=dt.UTC), dag_run=None, outlet_events=outlets)
    assert outlets[Asset(ASSET_BANK_FILES)].extra == {"as_of": "2023-06-15"}

    outlets = OutletEventAccessors()  # a run without a logical date: the day it was started
    run = SimpleNamespace(run_after=dt.datetime(2023, 6, 14, 16, 30, tzinfo=dt.UTC))
    publish(logical_date=None, dag_run=run, outlet_events=outlets)
    assert outlets[Asset(ASSET_BANK_FILES)].extra == {"as_of": "2023-06-15"}


def test_elicense_pull_emits_the_day_of_its_watermark(dagbag, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import contextlib
    from types import SimpleNamespace

    import airflow.sdk
    from airflow.sdk import Asset
    from airflow.sdk.execution_time.context import OutletEventAccessors

    import govbank.elicense
    import govbank.orchestration.airflow_support
    from govbank.config.settings import ASSET_ELICENSE_USAGE

    summary = {"records": 3, "watermark_after": "2023-06-14T17:05:00+00:00"}
    import govbank.validate

    monkeypatch.setattr(govbank.validate, "Validator", lambda *a, **k: None)  # no Great Expectations here
    monkeypatch.setattr(
        govbank.orchestration.airflow_support,
        "settings",
        lambda: SimpleNamespace(
            warehouse_url=f"sqlite:///{tmp_path / 'w.db'}",
            runs_dir=tmp_path,
            expectations_dir=tmp_path,
            data_docs_dir=tmp_path,
        ),
    )
    monkeypatch.setattr(airflow.sdk.Connection, "get", lambda *a, **k: None)
    monkeypatch.setattr(govbank.elicense, "config_from_connection", lambda conn: None)
    monkeypatch.setattr(govbank.elicense, "ElicenseClient", lambda config: contextlib.nullcontext())
    monkeypatch.setattr(
        govbank.elicense, "pull_usages", lambda *a, **k: SimpleNamespace(as_dict=lambda: dict(summary))
    )
    pull = dagbag.dags["govbank_elicense"].get_task("pull_usages").python_callable

    outlets = OutletEventAccessors()
    pull(run_id="scheduled__x", outlet_events=outlets)
    assert outlets[Asset(ASSET_ELICENSE_USAGE)].extra == {"as_of": "2023-06-15"}  # 01:05 in Shanghai

    summary["watermark_after"] = None  # nothing was ever pulled: no day to claim
    outlets = OutletEventAccessors()
    pull(run_id="scheduled__y", outlet_events=outlets)
    assert outlets[Asset(ASSET_ELICENSE_USAGE)].extra == {}
