"""Reconciliation of bank ELIC records with e-licence usages, computed in SQL.

Crafted cases pin the rule (7 days, Shanghai dates, ties, a record two could claim);
a property test checks the SQL rounds against a plain greedy pass; the end-to-end test
pulls the generator's usages over HTTP and finds the counts the generator intended.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from govbank.elicense.client import ElicenseClient, UsageRecord
from govbank.elicense.pull import pull_usages, upsert_usages
from govbank.marts.reconcile import rebuild_reconciliation
from govbank.warehouse.schema import (
    fact_elicense_biz,
    fact_elicense_usage,
    mart_reconciliation_detail,
)
from govbank_dev.elicense_data import usages_from_bank_records
from tests.apiserver import (
    RefServer,
    bank_records,
    fresh_warehouse,
    insert_bank_records,
    make_uscc,
    reconciliation_rows,
)

SH = dt.timezone(dt.timedelta(hours=8))
_rng = random.Random(4)
A, B, C = (make_uscc(_rng) for _ in range(3))
OPEN, LOAN = "一照开户", "一照贷款"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    eng = fresh_warehouse(request.param, tmp_path)
    yield eng
    eng.dispose()


def bank(biz_id, uscc, day, scene=OPEN, bank_code="WZB", status="有效"):
    return {
        "bank_code": bank_code,
        "biz_id": biz_id,
        "uscc": uscc,
        "enterprise_name": f"企业{uscc[-4:]}",
        "biz_type": scene,
        "biz_date": dt.date.fromisoformat(day),
        "outlet_code": f"{bank_code}-OH-001",
        "status": status,
    }


def usage(usage_id, uscc, at, scene=OPEN, bank_code="WZB", status="有效"):
    when = dt.datetime.fromisoformat(at)
    when = when if when.tzinfo else when.replace(tzinfo=SH)
    return UsageRecord.model_validate(
        {
            "usage_id": usage_id,
            "uscc": uscc,
            "enterprise_name": f"企业{uscc[-4:]}",
            "scene": scene,
            "bank_code": bank_code,
            "outlet_code": f"{bank_code}-OH-001",
            "authorized_at": when,
            "updated_at": when + dt.timedelta(seconds=5),
            "status": status,
        }
    )


def load(engine, banks, usages):
    with engine.begin() as conn:
        conn.execute(delete(fact_elicense_biz))
        conn.execute(delete(fact_elicense_usage))
    if banks:
        insert_bank_records(engine, banks)
    with engine.begin() as conn:
        upsert_usages(conn, usages, "test")


def rebuild(engine):
    with engine.begin() as conn:
        rebuild_reconciliation(conn)


def detail(engine):
    d = mart_reconciliation_detail
    with engine.connect() as conn:
        rows = conn.execute(select(d.c.side, d.c.record_id, d.c.record_date, d.c.month))
        return sorted((r.side, r.record_id, str(r.record_date), r.month) for r in rows)


def counts(engine):
    return {
        (r["bank_code"], r["month"], r["scene"]): (r["matched"], r["bank_only"], r["gov_only"])
        for r in reconciliation_rows(engine)
    }


def test_crafted_cases(engine):
    banks = [
        bank("b-same-day", A, "2024-06-03"),
        bank("b-7-days", A, "2024-06-20"),  # usage 7 days later: still a match
        bank("b-8-days", B, "2024-06-10"),  # usage 8 days later (Shanghai date): no match
        bank("b-tie", C, "2024-06-12"),  # two usages 2 days either side: smaller usage_id
        bank("b-loan", A, "2024-06-03", scene=LOAN),  # other scene than the usage
        bank("b-other-bank", A, "2024-06-03", bank_code="OHRCB"),
        bank("b-withdrawn", C, "2024-06-25", status="撤销"),  # takes no part at all
    ]
    usages = [
        usage("U01", A, "2024-06-03T10:00:00"),
        usage("U02", A, "2024-06-27T16:00:00"),
        # 2024-06-18 07:00 in Shanghai is still 06-17 in UTC: 8 days, not 7
        usage("U03", B, "2024-06-18T07:00:00"),
        usage("U05", C, "2024-06-14T09:00:00"),
        usage("U04", C, "2024-06-10T09:00:00"),
        usage("U06", C, "2024-06-25T09:00:00", status="撤销"),  # withdrawn: no part
        usage("U07", A, "2024-06-04T10:00:00", bank_code="OHRCB"),
        # 2024-07-01 05:00 in Shanghai (06-30 in UTC): gov_only in July
        usage("U08", B, "2024-07-01T05:00:00", scene=LOAN),
    ]
    load(engine, banks, usages)
    rebuild(engine)

    assert detail(engine) == [
        ("bank_only", "b-8-days", "2024-06-10", "2024-06"),
        ("bank_only", "b-loan", "2024-06-03", "2024-06"),
        ("gov_only", "U03", "2024-06-18", "2024-06"),
        ("gov_only", "U05", "2024-06-14", "2024-06"),
        ("gov_only", "U08", "2024-07-01", "2024-07"),
    ]
    assert counts(engine) == {
        ("OHRCB", "2024-06", OPEN): (1, 0, 0),
        ("WZB", "2024-06", OPEN): (3, 1, 2),
        ("WZB", "2024-06", LOAN): (0, 1, 0),
        ("WZB", "2024-07", LOAN): (0, 0, 1),
    }


def test_nearest_first_one_to_one(engine):
    # X (06-01), Y (06-05) against U1 (06-04), U2 (06-11): Y-U1 (1 day) pairs first, so X,
    # whose only candidate was U1, stays bank_only and U2 (10 days from X) gov_only, although
    # X-U1 and Y-U2 would have paired both. Nearest first is the rule, not most pairs.
    banks = [bank("X", A, "2024-06-01"), bank("Y", A, "2024-06-05")]
    usages = [usage("U1", A, "2024-06-04T09:00:00"), usage("U2", A, "2024-06-11T09:00:00")]
    load(engine, banks, usages)
    rebuild(engine)
    assert detail(engine) == [
        ("bank_only", "X", "2024-06-01", "2024-06"),
        ("gov_only", "U2", "2024-06-11", "2024-06"),
    ]

    # a second round: after Y-U1, X still reaches U2 at 7 days; Z's two usages tie at 1 day
    banks += [bank("Z", A, "2024-06-30")]
    usages = [
        usage("U1", A, "2024-06-04T09:00:00"),
        usage("U2", A, "2024-06-08T09:00:00"),
        usage("U3", A, "2024-06-29T09:00:00"),
        usage("U4", A, "2024-07-01T09:00:00"),
    ]
    load(engine, banks, usages)
    rebuild(engine)
    assert detail(engine) == [("gov_only", "U4", "2024-07-01", "2024-07")]
    assert counts(engine) == {
        ("WZB", "2024-06", OPEN): (3, 0, 0),
        ("WZB", "2024-07", OPEN): (0, 0, 1),
    }


def test_a_record_two_could_claim_goes_to_the_nearer(engine):
    # one usage within 7 days of two bank records: the nearer one gets it
    banks = [bank("far", A, "2024-06-01"), bank("near", A, "2024-06-06")]
    load(engine, banks, [usage("U1", A, "2024-06-05T09:00:00")])
    rebuild(engine)
    assert detail(engine) == [("bank_only", "far", "2024-06-01", "2024-06")]

    # equally near: the smaller biz_id gets it
    banks = [bank("b2", A, "2024-06-03"), bank("b1", A, "2024-06-07")]
    load(engine, banks, [usage("U1", A, "2024-06-05T09:00:00")])
    rebuild(engine)
    assert detail(engine) == [("bank_only", "b2", "2024-06-03", "2024-06")]


def test_rebuild_replaces_and_is_idempotent(engine):
    load(engine, [bank("b1", A, "2024-06-01")], [usage("U1", B, "2024-06-01T09:00:00")])
    rebuild(engine)
    rebuild(engine)
    assert counts(engine) == {("WZB", "2024-06", OPEN): (0, 1, 1)}
    load(engine, [bank("b1", A, "2024-06-01")], [usage("U1", A, "2024-06-01T09:00:00")])
    rebuild(engine)
    assert counts(engine) == {("WZB", "2024-06", OPEN): (1, 0, 0)}
    assert detail(engine) == []


def greedy(banks, usages):
    """The rule as a plain greedy pass: pairs by (distance, biz_id, usage_id), both free."""
    edges = []
    for b in banks:
        for u in usages:
            if (b["uscc"], b["bank_code"], b["biz_type"]) != (u.uscc, u.bank_code, u.scene):
                continue
            if b["status"] != "有效" or u.status != "有效":
                continue
            distance = abs((b["biz_date"] - u.authorized_at.astimezone(SH).date()).days)
            if distance <= 7:
                edges.append((distance, b["biz_id"], u.usage_id))
    taken_b, taken_u = set(), set()
    for _, biz_id, usage_id in sorted(edges):
        if biz_id not in taken_b and usage_id not in taken_u:
            taken_b.add(biz_id)
            taken_u.add(usage_id)
    return taken_b, taken_u


@st.composite
def scenarios(draw):
    day0 = dt.date(2024, 6, 1)
    usccs = [A, B]
    banks = [
        bank(f"b{i:02d}", draw(st.sampled_from(usccs)), str(day0 + dt.timedelta(draw(st.integers(0, 20)))),
             status=draw(st.sampled_from(["有效", "有效", "有效", "撤销"])))
        for i in range(draw(st.integers(0, 8)))
    ]  # fmt: skip
    usages = [
        usage(
            f"U{i:02d}",
            draw(st.sampled_from(usccs)),
            (dt.datetime(2024, 6, 1, tzinfo=dt.UTC) + dt.timedelta(hours=draw(st.integers(0, 24 * 21)))).isoformat(),
            status=draw(st.sampled_from(["有效", "有效", "有效", "撤销"])),
        )
        for i in range(draw(st.integers(0, 8)))
    ]  # fmt: skip
    return banks, usages


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory):
    eng = fresh_warehouse("sqlite", tmp_path_factory.mktemp("prop"))
    yield eng
    eng.dispose()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenarios())
def test_sql_rounds_equal_the_greedy_pass(sqlite_engine, scenario):
    banks, usages = scenario
    load(sqlite_engine, banks, usages)
    rebuild(sqlite_engine)
    matched_b, matched_u = greedy(banks, usages)
    rows = detail(sqlite_engine)
    assert {r[1] for r in rows if r[0] == "bank_only"} == {
        b["biz_id"] for b in banks if b["status"] == "有效" and b["biz_id"] not in matched_b
    }
    assert {r[1] for r in rows if r[0] == "gov_only"} == {
        u.usage_id for u in usages if u.status == "有效" and u.usage_id not in matched_u
    }
    assert sum(c[0] for c in counts(sqlite_engine).values()) == len(matched_b)


def test_demo_flow_gives_the_counts_the_generator_intended(engine, tmp_path):
    records = bank_records(240, seed=21)
    generated = usages_from_bank_records(records, seed=7)
    totals = generated.totals()
    assert totals["matched"] > totals["bank_only"] > 0 and totals["gov_only"] > 0
    insert_bank_records(engine, records)
    with RefServer(generated.usages) as api:
        with ElicenseClient(api.client_config(page_limit=100)) as client:
            pull_usages(engine, client, tmp_path / "runs", "demo")
    rebuild(engine)
    assert reconciliation_rows(engine) == generated.expected_rows()


def test_generator_is_deterministic_by_seed():
    records = bank_records(50, seed=3)
    now = dt.datetime(2024, 9, 1, tzinfo=dt.UTC)
    first = usages_from_bank_records(records, seed=1, now=now)
    assert first == usages_from_bank_records(list(reversed(records)), seed=1, now=now)
    assert first.usages != usages_from_bank_records(records, seed=2, now=now).usages
    assert all(dt.datetime.fromisoformat(u["updated_at"]) <= now for u in first.usages)
