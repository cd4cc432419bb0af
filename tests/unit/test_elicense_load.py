"""Incremental load of the usage records: watermark, all-or-nothing runs, version replacement.

Over real HTTP against the reference server, into a real SQLite warehouse (and PostgreSQL
when $GOVBANK_TEST_POSTGRES_URL is set).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from govbank.elicense.client import (
    ApiUnavailableError,
    ElicenseClient,
    MalformedPageError,
    UsageRecord,
)
from govbank.elicense.pull import (
    DEFAULT_OVERLAP,
    pull_usages,
    read_watermark,
    upsert_usages,
    write_watermark,
)
from govbank.warehouse.schema import etl_watermark
from govbank_dev.elicense_data import usages_from_bank_records
from tests.apiserver import RefServer, bank_records, fresh_warehouse, usage_rows
from tests.conftest import ROOT

NOW = dt.datetime(2024, 9, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def generated():
    return usages_from_bank_records(bank_records(60, seed=11), seed=5, now=NOW)


@pytest.fixture(scope="module")
def api(generated):
    with RefServer(generated.usages) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_server(api):
    api.reset()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    eng = fresh_warehouse(request.param, tmp_path)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path):
    eng = fresh_warehouse("sqlite", tmp_path)
    yield eng
    eng.dispose()


def pull(api, engine, tmp_path, run_id="run-1", validator=None, **config):
    with ElicenseClient(api.client_config(**config)) as client:
        return pull_usages(engine, client, tmp_path / "runs", run_id, validator)


def watermark(engine):
    with engine.connect() as conn:
        return read_watermark(conn)


@pytest.fixture(scope="module")
def baseline(api, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baseline")
    eng = fresh_warehouse("sqlite", tmp)
    api.reset()
    pull(api, eng, tmp)
    rows = usage_rows(eng)
    eng.dispose()
    return rows


@pytest.fixture(scope="module")
def midpoint(generated):
    """A server clock between the first and a later version (withdrawn or corrected) of
    some usages, and those usages with their last version's (status, enterprise_name)."""
    versions: dict[str, list[tuple[dt.datetime, str, str]]] = {}
    for rec in generated.usages:
        stamp = dt.datetime.fromisoformat(rec["updated_at"])
        versions.setdefault(rec["usage_id"], []).append(
            (stamp, rec["status"], rec["enterprise_name"])
        )
    stamps = sorted(v[0] for vs in versions.values() for v in vs)
    median = stamps[len(stamps) // 2]
    # the first version of the withdrawn usage nearest the middle of the feed
    withdrawn = [min(vs)[0] for vs in versions.values() if max(vs)[1] == "撤销" and len(vs) > 1]
    t1 = min(withdrawn, key=lambda t: abs(t - median))
    straddling = {
        u: max(vs)[1:]
        for u, vs in versions.items()
        if len(vs) > 1 and min(vs)[0] <= t1 < max(vs)[0]
    }
    assert any(last[0] == "撤销" for last in straddling.values()), "a withdrawal after run 1"
    return t1, straddling


def test_incremental_runs_end_like_one_full_run(api, engine, tmp_path, baseline, midpoint):
    t1, straddling = midpoint
    api.set_clock(t1)
    first = pull(api, engine, tmp_path, run_id="run-1")
    early = {r[0]: r for r in usage_rows(engine)}
    assert first.watermark_after is not None and first.watermark_after <= t1
    assert all(early[u][8] == "有效" for u in straddling)
    assert all((early[u][8], early[u][2]) != last for u, last in straddling.items())

    api.set_clock(None)
    second = pull(api, engine, tmp_path, run_id="run-2")
    assert second.updated_since == first.watermark_after - DEFAULT_OVERLAP
    assert second.records < len(baseline), "the second run only pulls what changed"
    assert usage_rows(engine) == baseline
    final = {r[0]: r for r in usage_rows(engine)}
    assert all((final[u][8], final[u][2]) == last for u, last in straddling.items()), (
        "the later version replaced the first"
    )

    third = pull(api, engine, tmp_path, run_id="run-3")  # nothing new: the same table
    assert third.watermark_after == second.watermark_after
    assert usage_rows(engine) == baseline


CHILD = """
import json, os
from pathlib import Path
from govbank.warehouse.db import make_engine
from govbank.elicense.client import ClientConfig, ElicenseClient
from govbank.elicense.pull import pull_usages
cfg = json.loads(os.environ["ELICENSE_CHILD"])
engine = make_engine(cfg.pop("warehouse"))
raw = Path(cfg.pop("raw_dir"))
with ElicenseClient(ClientConfig(**cfg)) as client:
    pull_usages(engine, client, raw, "killed")
"""


def test_run_killed_between_pages_loses_and_duplicates_nothing(
    api, sqlite_engine, tmp_path, baseline, midpoint
):
    engine = sqlite_engine
    api.set_clock(midpoint[0])
    pull(api, engine, tmp_path, run_id="before")
    before_rows, before_mark = usage_rows(engine), watermark(engine)
    api.set_clock(None)

    # the third page hangs; the process is SIGKILLed while it waits
    api.inject("slow", delay=30, after=2)
    config = api.client_config(read_timeout=60)
    child_cfg = {
        **{k: getattr(config, k) for k in config.__dataclass_fields__},
        "warehouse": str(engine.url),
        "raw_dir": str(tmp_path / "runs"),
    }
    env = {
        **os.environ,
        "ELICENSE_CHILD": json.dumps(child_cfg),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT)]),
    }
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env)
    try:
        deadline = time.monotonic() + 30
        while len([c for c in api.calls() if c["fault"] == "slow"]) == 0:
            assert child.poll() is None, "the child ended before it was killed"
            assert time.monotonic() < deadline, "the child never reached the third page"
            time.sleep(0.05)
        assert (tmp_path / "runs" / "killed" / "page-0002.json").exists()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    assert usage_rows(engine) == before_rows, "nothing of the killed run is loaded"
    assert watermark(engine) == before_mark
    api.reset()
    pull(api, engine, tmp_path, run_id="again")
    assert usage_rows(engine) == baseline


def test_run_failing_half_way_and_run_again(api, engine, tmp_path, baseline, midpoint):
    api.set_clock(midpoint[0])
    pull(api, engine, tmp_path, run_id="before")
    before_rows, before_mark = usage_rows(engine), watermark(engine)
    api.set_clock(None)
    api.inject("status", status=503, count=2, after=1)  # more than max_retries=1 absorbs
    with pytest.raises(ApiUnavailableError, match="503"):
        pull(api, engine, tmp_path, run_id="fails", max_retries=1)
    assert usage_rows(engine) == before_rows and watermark(engine) == before_mark

    pull(api, engine, tmp_path, run_id="fails")  # Airflow's retry: same run_id
    assert usage_rows(engine) == baseline
    assert (tmp_path / "runs" / "fails" / "attempt-1" / "run.json").exists()


MALFORMED = ["not_json", "truncated", "no_items", "bad_record", "bad_cursor"]


@pytest.mark.parametrize("variant", MALFORMED)
def test_malformed_page_fails_clearly_and_loads_nothing(
    api, sqlite_engine, tmp_path, baseline, variant
):
    engine = sqlite_engine
    api.inject("malformed", variant=variant, after=2)
    with pytest.raises(MalformedPageError, match="page 3 is not the schema") as err:
        pull(api, engine, tmp_path)
    kept = tmp_path / "runs" / "run-1" / "page-0003.json"
    assert err.value.page_path == kept and str(kept) in str(err.value)
    assert kept.exists() and kept.stat().st_size > 0, "the broken page is kept"
    summary = json.loads((tmp_path / "runs" / "run-1" / "run.json").read_text())
    assert summary["status"] == "failed" and "MalformedPageError" in summary["error"]

    assert usage_rows(engine) == [], "pages 1 and 2 were fine, and still nothing is loaded"
    assert watermark(engine) is None

    pull(api, engine, tmp_path, run_id="run-2")
    assert usage_rows(engine) == baseline


def test_the_usage_suite_runs_on_every_page(api, sqlite_engine, tmp_path, baseline, validator):
    result = pull(api, sqlite_engine, tmp_path, validator=validator, page_limit=25)
    assert result.pages >= 2
    assert usage_rows(sqlite_engine) == baseline


def test_a_page_failing_the_suite_loads_nothing(generated, sqlite_engine, tmp_path, validator):
    broken = [dict(r) for r in generated.usages]
    last = max(range(len(broken)), key=lambda i: broken[i]["updated_at"])
    code = broken[last]["uscc"]  # a well-formed code with the wrong check character
    broken[last]["uscc"] = code[:17] + ("0" if code[17] != "0" else "1")
    with RefServer(broken) as api:
        with pytest.raises(
            MalformedPageError,
            match=r"page \d+ failed the USAGE expectation suite: record \d+ \(U\d+\) uscc: INVALID_USCC",
        ):
            pull(api, sqlite_engine, tmp_path, validator=validator, page_limit=25)
    assert usage_rows(sqlite_engine) == []
    with sqlite_engine.connect() as conn:
        assert read_watermark(conn) is None


def _record(usage_id: str, updated: str, status: str) -> UsageRecord:
    return UsageRecord.model_validate(
        {
            "usage_id": usage_id,
            "uscc": "91330304MA2XXXXXX0",
            "enterprise_name": "温州某某鞋业有限公司",
            "scene": "一照开户",
            "bank_code": "WZB",
            "outlet_code": "WZB-OH-001",
            "authorized_at": dt.datetime.fromisoformat("2023-06-15T09:31:02+08:00"),
            "updated_at": dt.datetime.fromisoformat(updated),
            "status": status,
        }
    )


def test_an_older_version_never_replaces_a_newer_one(engine):
    newer = _record("U1", "2023-06-20T10:00:00+08:00", "撤销")
    older = _record("U1", "2023-06-15T09:31:05+08:00", "有效")
    with engine.begin() as conn:
        upsert_usages(conn, [newer], "run-a")
        upsert_usages(conn, [older], "run-b")
        upsert_usages(conn, [older, newer, older], "run-c")  # duplicates within one batch
    rows = usage_rows(engine)
    assert len(rows) == 1 and rows[0][8] == "撤销"


def test_the_watermark_only_moves_forward(engine):
    later = dt.datetime(2024, 6, 1, 8, tzinfo=dt.UTC)
    with engine.begin() as conn:
        write_watermark(conn, later)
        write_watermark(conn, later - dt.timedelta(days=3))
    assert watermark(engine) == later
    with engine.connect() as conn:
        assert conn.execute(select(etl_watermark.c.source)).scalars().all() == ["elicense_usage"]
