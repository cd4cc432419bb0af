"""Replay from the raw archive, on the real stages: a contract fix, a contract that did not
exist yet, an accepted file that changes nothing; and a re-sent snapshot counted as sent."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from govbank.config.settings import Settings
from govbank.domain.reasons import REPLAY_MESSAGE
from govbank.ingest.replay import Selection, replay
from govbank.ingest.run import process_bank
from govbank.marts.build import rebuild_bank_freshness
from govbank.orchestration.readiness import check_bank
from govbank.orchestration.runtime import build_context
from govbank.warehouse.schema import dim_bank, dim_outlet, etl_file, fact_elicense_biz
from tests.conftest import PSEUDONYM_KEY, ROOT, drop_file
from tests.unit.test_pipeline import ELIC_HEAD, OUTLET, _elic_rows

WZB = (ROOT / "include" / "contracts" / "WZB.yaml").read_text(encoding="utf-8")
# the ELIC feed's dates as the bank does not write them: every row is rejected
WRONG_DATES = WZB.replace('  ELIC:\n    delimiter: "|"', '  ELIC:\n    delimiter: "|"\n    date_formats: ["%Y%m%d"]')
TZ = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture
def stack(tmp_path: Path, warehouse_url: str, validator):  # type: ignore[no-untyped-def]
    return _stack(tmp_path, warehouse_url, validator)


def _stack(tmp_path: Path, warehouse_url: str, validator):  # type: ignore[no-untyped-def]
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    env = {
        "GOVBANK_LOCAL_DIR": str(tmp_path),
        "GOVBANK_WAREHOUSE_URL": warehouse_url,
        "GOVBANK_CONTRACTS_DIR": str(contracts),
    }

    def context():  # type: ignore[no-untyped-def]
        """A context as a run builds it: the contracts as they are on disk now."""
        ctx = build_context(Settings.from_env(env), PSEUDONYM_KEY)
        ctx.validator_factory = lambda: validator
        return ctx

    return context, contracts, tmp_path / "landing", env


def _receipt(landing: Path, bank: str, name: str) -> dict:
    return json.loads((landing / bank / "outbox" / f"{name}.receipt.json").read_text(encoding="utf-8"))


def _dump(ctx) -> dict:  # type: ignore[no-untyped-def]
    with ctx.engine.connect() as conn:
        return {
            t.name: sorted(tuple(map(str, r)) for r in conn.execute(select(t)))
            for t in (dim_bank, dim_outlet, fact_elicense_biz)
        }


def _files(ctx) -> list[tuple]:  # type: ignore[no-untyped-def]
    with ctx.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(etl_file.c.file_id, etl_file.c.file_name, etl_file.c.status, etl_file.c.replay_of)
                .order_by(etl_file.c.file_id)
            )
        ]


def test_replay_after_a_contract_fix_accepts_the_rejected_file(stack) -> None:  # type: ignore[no-untyped-def]
    check_replay_after_a_contract_fix(stack)


@pytest.mark.integration
def test_replay_after_a_contract_fix_on_postgres(tmp_path: Path, validator) -> None:  # type: ignore[no-untyped-def]
    import os

    from tests.integration.test_postgres import PG_ENV, fresh_pg

    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"set {PG_ENV} to run the replay on PostgreSQL")
    fresh_pg(url).dispose()
    check_replay_after_a_contract_fix(_stack(tmp_path, url, validator))


def check_replay_after_a_contract_fix(stack) -> None:  # type: ignore[no-untyped-def]
    context, contracts, landing, _ = stack
    (contracts / "WZB.yaml").write_text(WRONG_DATES, encoding="utf-8")
    inbox = landing / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"), rows=2)
    drop_file(inbox, "ELIC_WZB_20230601.txt", (ELIC_HEAD + _elic_rows(5)).encode("gb18030"), rows=5)
    ctx = context()
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted", "rejected"]
    before = _receipt(landing, "WZB", "ELIC_WZB_20230601.txt")
    assert before["status"] == "rejected" and before["replay_of"] is None
    assert (landing / "WZB" / "outbox" / "ELIC_WZB_20230601.txt.rejects.csv").is_file()

    # the bank re-sending the same bytes is still a duplicate: only an operator replays
    drop_file(inbox, "ELIC_WZB_20230601.txt", (ELIC_HEAD + _elic_rows(5)).encode("gb18030"), rows=5)
    assert [o.status for o in process_bank(ctx, "WZB")] == ["duplicate"]

    (contracts / "WZB.yaml").write_text(WZB, encoding="utf-8")  # the fix
    ctx = context()
    dry = replay(ctx, Selection("WZB", status="rejected", since=dt.date(2000, 1, 1)), dry_run=True)
    assert [(r.candidate.file_name, r.outcome) for r in dry] == [("ELIC_WZB_20230601.txt", None)]
    files_before = _files(ctx)
    [done] = replay(ctx, Selection("WZB", status="rejected", since=dt.date(2000, 1, 1)))
    assert done.outcome is not None
    assert (done.outcome.status, done.outcome.rows_loaded, done.outcome.rows_rejected) == ("accepted", 5, 0)
    with ctx.engine.connect() as conn:
        loaded = sorted(conn.execute(select(fact_elicense_biz.c.biz_id, fact_elicense_biz.c.biz_date)))
    assert loaded == [(f"B{i}", dt.date(2023, 6, 1)) for i in range(5)]
    # the earlier outcome is kept, the replay links to it
    rejected_id = files_before[1][0]
    assert _files(ctx)[: len(files_before)] == files_before
    assert _files(ctx)[-1][1:] == ("ELIC_WZB_20230601.txt", "accepted", rejected_id)
    receipt = _receipt(landing, "WZB", "ELIC_WZB_20230601.txt")
    assert receipt["status"] == "accepted" and receipt["rows_loaded"] == 5
    assert receipt["replay_of"]["status"] == "rejected"
    assert receipt["replay_of"]["file_name"] == "ELIC_WZB_20230601.txt"
    assert receipt["replay_of"]["processed_at"] == before["processed_at"]
    assert receipt["replay_of"]["message"] == REPLAY_MESSAGE
    # the earlier rejects no longer stand beside the new receipt
    rejects = (landing / "WZB" / "outbox" / "ELIC_WZB_20230601.txt.rejects.csv").read_bytes()
    assert rejects.decode("utf-8-sig").strip().count("\n") == 0
    assert list(inbox.iterdir()) == []  # nothing was put in, nothing taken from the inbox

    # replaying the accepted file changes no table; a re-send is a duplicate of the replay
    tables = _dump(ctx)
    [again] = replay(ctx, Selection("WZB", file_name="ELIC_WZB_20230601.txt"))
    assert again.outcome is not None and again.outcome.status == "accepted"
    assert _dump(ctx) == tables
    drop_file(inbox, "ELIC_WZB_20230601.txt", (ELIC_HEAD + _elic_rows(5)).encode("gb18030"), rows=5)
    assert [o.status for o in process_bank(ctx, "WZB")] == ["duplicate"]
    dup = _receipt(landing, "WZB", "ELIC_WZB_20230601.txt")
    assert dup["duplicate_of"]["status"] == "accepted"


def test_no_contract_file_replays_once_its_contract_exists(stack, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """Through the command line, as an operator runs it."""
    from govbank.__main__ import main

    context, contracts, landing, env = stack
    data = OUTLET.encode("gb18030")
    drop_file(landing / "NEWBANK" / "inbox", "OUTLET_NEWBANK_20230601.txt", data, rows=2)
    ctx = context()
    [outcome] = process_bank(ctx, "NEWBANK")
    assert outcome.status == "rejected" and outcome.top_reasons[0][0] == "NO_CONTRACT"
    receipt = _receipt(landing, "NEWBANK", "OUTLET_NEWBANK_20230601.txt")
    assert "原始档案" in receipt["errors"][0]["message"] and "重新处理" in receipt["errors"][0]["message"]
    sha = receipt["sha256"]

    for key, value in {**env, "GOVBANK_PSEUDONYM_KEY": PSEUDONYM_KEY.decode()}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("GOVBANK_EXPECTATIONS_DIR", str(ROOT / "expectations"))
    # still no contract: a replay answers NO_CONTRACT again
    assert main(["replay", "--bank", "NEWBANK", "--sha256", sha]) == 0
    assert _receipt(landing, "NEWBANK", "OUTLET_NEWBANK_20230601.txt")["status"] == "rejected"

    (contracts / "NEWBANK.yaml").write_text(
        WZB.replace("bank_code: WZB", "bank_code: NEWBANK").replace("bank_name: 温州银行", "bank_name: 新银行"),
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["replay", "--bank", "NEWBANK", "--sha256", sha, "--dry-run"]) == 0
    assert "would replay" in capsys.readouterr().out
    assert _receipt(landing, "NEWBANK", "OUTLET_NEWBANK_20230601.txt")["status"] == "rejected"
    assert main(["replay", "--bank", "NEWBANK", "--sha256", sha]) == 0
    receipt = _receipt(landing, "NEWBANK", "OUTLET_NEWBANK_20230601.txt")
    assert (receipt["status"], receipt["rows_loaded"]) == ("accepted", 2)
    assert receipt["replay_of"]["status"] == "rejected"
    with ctx.engine.connect() as conn:
        outlets = sorted(conn.execute(select(dim_outlet.c.outlet_code).where(dim_outlet.c.bank_code == "NEWBANK")))
        chain = [tuple(r) for r in conn.execute(
            select(etl_file.c.status, etl_file.c.replay_of).order_by(etl_file.c.file_id)
        )]
    assert outlets == [("W1",), ("W2",)]
    assert chain == [("rejected", None), ("rejected", 1), ("accepted", 2)]
    out = capsys.readouterr().out
    assert "status=accepted" in out and "service_supermarkets" in out  # the marts were rebuilt
    assert main(["replay", "--bank", "NEWBANK", "--file", "NO_SUCH_FILE.txt"]) == 1


def test_a_resent_snapshot_counts_as_sent_for_its_day(stack) -> None:  # type: ignore[no-untyped-def]
    context, contracts, landing, _ = stack
    shutil.copy(ROOT / "include" / "contracts" / "WZB.yaml", contracts / "WZB.yaml")
    ctx = context()
    inbox = landing / "WZB" / "inbox"
    day1, day2 = dt.date(2023, 6, 1), dt.date(2023, 6, 2)
    after_deadline = dt.datetime(2023, 6, 2, 21, 0, tzinfo=TZ)
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"), rows=2)
    drop_file(inbox, "ELIC_WZB_20230601.txt", (ELIC_HEAD + _elic_rows(2)).encode("gb18030"), rows=2)
    process_bank(ctx, "WZB")
    assert check_bank(ctx.landing, ctx.engine, ctx.contracts["WZB"], "WZB", day2, after_deadline).late
    # the same outlets, byte for byte, under the next day's name
    drop_file(inbox, "OUTLET_WZB_20230602.txt", OUTLET.encode("gb18030"), rows=2)
    [dup] = process_bank(ctx, "WZB")
    assert dup.status == "duplicate"
    receipt = _receipt(landing, "WZB", "OUTLET_WZB_20230602.txt")
    assert receipt["duplicate_of"]["file_name"] == "OUTLET_WZB_20230601.txt"
    state = check_bank(ctx.landing, ctx.engine, ctx.contracts["WZB"], "WZB", day2, after_deadline)
    assert not state.late, state.message
    with ctx.engine.begin() as conn:
        rows = {r["dataset"]: r for r in rebuild_bank_freshness(conn, ctx.contracts, day2)}
    assert rows["OUTLET"]["last_business_date"] == day2 and not rows["OUTLET"]["is_late"]
    assert rows["ELIC"]["last_business_date"] == day1
