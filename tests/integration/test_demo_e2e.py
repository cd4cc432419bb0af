"""The README's first command, end to end: the demo drop through Airflow, twice.

Runs ``scripts/demo.sh`` (what ``make demo`` runs: ``airflow dags test`` of the ingest
and marts DAGs on SQLite) in a fresh folder, then checks the warehouse, the receipts and
the rejects against what the demo generator planned, and that a second run changes
nothing.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from govbank.warehouse.schema import dim_outlet, etl_file, etl_reject, mart_kpi, metadata
from govbank_dev.demo import EXPECTED_KPI, build_demo
from tests import background
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
VOLATILE = {"loaded_at", "received_at", "processed_at", "answered_at", "last_received_at"}


def _run_demo(local: Path) -> str:
    env = {
        **background.environ(),
        "GOVBANK_LOCAL_DIR": str(local),
        "AIRFLOW_HOME": str(local / "airflow"),
        "GOVBANK_PSEUDONYM_KEY": "e2e-test-key-0123456789abcdef",
    }
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _dump(engine) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    dump = {}
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            if name == "etl_file":
                continue
            cols = [c for c in table.columns if c.name not in VOLATILE]
            dump[name] = sorted(tuple(map(str, r)) for r in conn.execute(select(*cols)))
    return dump


@background.job
def demo_twice(local: Path) -> dict:
    """Both runs of the demo (minutes of Airflow): started early, see tests/background.py."""
    first_out = _run_demo(local)
    engine = create_engine(f"sqlite:///{local / 'warehouse.db'}")
    first = _dump(engine)
    receipts = {
        p.name: p.read_bytes() for p in (local / "landing").glob("*/outbox/*")
    }
    second_out = _run_demo(local)
    second = _dump(engine)
    engine.dispose()
    return {
        "local": local, "first": first, "second": second,
        "first_out": first_out, "second_out": second_out, "receipts": receipts,
    }


@pytest.fixture(scope="module")
def demo():  # type: ignore[no-untyped-def]
    runs = background.result(demo_twice)
    engine = create_engine(f"sqlite:///{runs['local'] / 'warehouse.db'}")
    yield {**runs, "engine": engine}
    engine.dispose()


def test_kpi_matches_the_seed_report(demo) -> None:  # type: ignore[no-untyped-def]
    with demo["engine"].connect() as conn:
        rows = conn.execute(select(mart_kpi.c.as_of, mart_kpi.c.metric, mart_kpi.c.value)).all()
    assert {str(r.as_of) for r in rows} == {"2023-06-15"}
    assert {r.metric: Decimal(str(r.value)) for r in rows} == EXPECTED_KPI
    # the command ends by printing them
    assert "1,187,000,000.00" in demo["first_out"] and "837" in demo["first_out"]


def test_reconciliation_shows_what_the_generator_intended(demo) -> None:  # type: ignore[no-untyped-def]
    from govbank.warehouse.schema import mart_reconciliation as r

    intended = json.loads((demo["local"] / "elicense_expected.json").read_text(encoding="utf-8"))
    with demo["engine"].connect() as conn:
        got = conn.execute(
            select(r.c.bank_code, r.c.month, r.c.scene, r.c.matched, r.c.bank_only, r.c.gov_only)
        ).all()
    as_rows = sorted(tuple(g) for g in got)
    assert as_rows == sorted(
        (i["bank_code"], i["month"], i["scene"], i["matched"], i["bank_only"], i["gov_only"]) for i in intended
    )
    assert sum(g.matched for g in got) > 0 and sum(g.bank_only for g in got) > 0 and sum(g.gov_only for g in got) > 0
    assert "-> match" in demo["first_out"]


def test_every_file_got_the_planned_answer(demo) -> None:  # type: ignore[no-untyped-def]
    drop = build_demo()
    expected = drop.expected()
    with demo["engine"].connect() as conn:
        files = conn.execute(
            select(etl_file).where(etl_file.c.status != "duplicate").order_by(etl_file.c.file_id)
        ).all()
        rejects = conn.execute(select(etl_reject.c.file_name, etl_reject.c.line, etl_reject.c.reason_code)).all()
    assert {f.file_name for f in files} == set(expected)
    for f in files:
        plan = expected[f.file_name]
        assert (f.status, f.rows_total, f.rows_loaded, f.rows_rejected) == (
            plan.status, plan.rows_total, plan.rows_loaded, plan.rows_rejected
        ), f.file_name
        assert f.rows_total == f.rows_loaded + f.rows_rejected
        receipt = json.loads(demo["receipts"][f"{f.file_name}.receipt.json"])
        assert receipt["status"] == plan.status and receipt["sha256"] == f.sha256
        if plan.rows_rejected and plan.status == "partially_accepted":
            assert f"{f.file_name}.rejects.csv" in demo["receipts"]
            got = {(r.line, r.reason_code) for r in rejects if r.file_name == f.file_name and r.line}
            assert set(plan.rejects) <= got, f.file_name
        for reason in plan.reasons:
            assert reason in {e["reason_code"] for e in receipt["errors"]}, f.file_name
    # every inbox is empty: only pending files would stay
    assert not [p for p in (demo["local"] / "landing").glob("*/inbox/*")]


def test_second_snapshot_closes_an_outlet_and_keeps_history(demo) -> None:  # type: ignore[no-untyped-def]
    d = dim_outlet.c
    with demo["engine"].connect() as conn:
        versions = conn.execute(
            select(d.status, d.valid_from, d.valid_to, d.is_current)
            .where(d.bank_code == "WZB", d.outlet_code == "WZB-OH-101")
            .order_by(d.valid_from)
        ).all()
    assert len(versions) == 2
    old, new = versions
    assert old.status == "正常" and not old.is_current and old.valid_to == new.valid_from
    assert new.status == "撤销" and new.is_current and new.valid_to is None


def test_second_run_loads_nothing_new(demo) -> None:  # type: ignore[no-untyped-def]
    assert demo["first"] == demo["second"]
    with demo["engine"].connect() as conn:
        statuses = conn.execute(
            text("SELECT status, count(*) FROM etl_file GROUP BY status")
        ).all()
    counts = dict(statuses)
    planned = len(build_demo().files)
    assert counts["duplicate"] == planned
    assert sum(v for k, v in counts.items() if k != "duplicate") == planned
