"""No file stops its bank (issue 17, run side): poison files set aside, a failing file does
not hold back the next, reject details capped with exact counts, the ``.ok`` cleared
first, files that change under the run left for the next one.

Real parts throughout (SQLite warehouse, local landing, Great Expectations); faults come
through the run's seams (``Context.hook``, ``Context.alert``) or a landing subclass.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from govbank.config.settings import Settings
from govbank.domain.errors import FilesFailed, TransientError
from govbank.ingest.run import process_bank
from govbank.orchestration.runtime import build_context
from govbank.transport.local import LocalLanding
from govbank.warehouse.schema import dim_outlet, etl_file, etl_reject
from tests.conftest import PSEUDONYM_KEY, drop_file

HEADER = "网点编号|网点名称|网点类型|所属镇街|地址|经度|纬度|启用日期|状态\n"


def _outlets(codes: range, bad: int = 0) -> bytes:
    good = "".join(f"W{i}|温州银行{i}支行|普通网点|景山街道|府东路{i}号|||2023-01-05|正常\n" for i in codes)
    broken = "".join(f"X{i}|坏网点{i}|不存在的类型|景山街道|府东路{i}号|||2023-13-45|正常\n" for i in range(bad))
    return (HEADER + good + broken).encode("utf-8")


@pytest.fixture
def env(tmp_path: Path, warehouse_url: str, validator):  # type: ignore[no-untyped-def]
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(tmp_path), "GOVBANK_WAREHOUSE_URL": warehouse_url})
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    alerts: list[str] = []
    ctx.alert = alerts.append
    yield ctx, tmp_path / "landing" / "WZB", alerts
    ctx.engine.dispose()


def _files(ctx) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(etl_file.c.file_name, etl_file.c.status, etl_file.c.attempts, etl_file.c.answered_at))
        return {r.file_name: (r.status, r.attempts, r.answered_at is not None) for r in rows}


def _receipt(bank: Path, name: str) -> dict:
    return json.loads((bank / "outbox" / f"{name}.receipt.json").read_text(encoding="utf-8"))


class Boom(Exception):
    """A bug of ours that only this file triggers."""


def test_a_file_failing_on_our_side_is_set_aside_and_the_queue_goes_on(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, alerts = env
    poison, good = "OUTLET_WZB_20230601.txt", "OUTLET_WZB_20230602.txt"
    drop_file(bank / "inbox", poison, _outlets(range(1, 3)))
    drop_file(bank / "inbox", good, _outlets(range(1, 4)))

    def hook(point: str, name: str, rows: int) -> None:
        if point == "registered" and name == poison:
            raise Boom("a bug of ours")

    ctx.hook = hook
    for attempt in range(1, ctx.max_attempts + 1):
        with pytest.raises(FilesFailed, match=poison):
            process_bank(ctx, "WZB")
        assert _files(ctx)[poison] == ("processing", attempt, False)
        # the file behind it was answered in the first run all the same
        assert _files(ctx)[good] == ("accepted", 1, True)
    assert alerts == []
    outcomes = process_bank(ctx, "WZB")  # attempts used up: set aside, no exception
    assert [(o.file_name, o.status) for o in outcomes] == [(poison, "rejected")]
    receipt = _receipt(bank, poison)
    assert receipt["status"] == "rejected"
    assert [e["reason_code"] for e in receipt["errors"]] == ["POISON_FILE"]
    assert "运维" in receipt["errors"][0]["message"] and "存档" in receipt["errors"][0]["message"]
    assert _files(ctx)[poison] == ("rejected", ctx.max_attempts, True)
    assert len(alerts) == 1 and poison in alerts[0] and "POISON_FILE" in alerts[0]
    with ctx.engine.connect() as conn:
        archived = conn.execute(select(etl_file.c.archive_path).where(etl_file.c.file_name == poison)).scalar_one()
    assert (ctx.archive_dir / archived).is_file()
    assert sorted(p.name for p in (bank / "inbox").iterdir()) == []


def test_an_attempt_counts_even_when_the_process_dies(env) -> None:  # type: ignore[no-untyped-def]
    """A kill (out of memory) never returns to Python: a BaseException stands in for it."""
    ctx, bank, _ = env
    name = "OUTLET_WZB_20230601.txt"
    drop_file(bank / "inbox", name, _outlets(range(1, 3)))

    class Killed(BaseException):
        pass

    def hook(point: str, file_name: str, rows: int) -> None:
        if point == "merged":
            raise Killed

    ctx.hook = hook
    for _ in range(ctx.max_attempts):
        with pytest.raises(Killed):
            process_bank(ctx, "WZB")
    assert _files(ctx)[name] == ("processing", ctx.max_attempts, False)
    assert [o.status for o in process_bank(ctx, "WZB")] == ["rejected"]
    with ctx.engine.connect() as conn:
        assert conn.execute(select(dim_outlet)).all() == []  # no kill left half a file


def test_an_outage_still_fails_the_task_for_a_retry(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    drop_file(bank / "inbox", "OUTLET_WZB_20230601.txt", _outlets(range(1, 3)))
    drop_file(bank / "inbox", "OUTLET_WZB_20230602.txt", _outlets(range(1, 3)))

    def hook(point: str, name: str, rows: int) -> None:
        if point == "registered":
            raise TransientError("the warehouse went away")

    ctx.hook = hook
    with pytest.raises(TransientError):
        process_bank(ctx, "WZB")
    assert set(_files(ctx)) == {"OUTLET_WZB_20230601.txt"}  # stopped at the first file


def test_reject_details_are_capped_counts_stay_exact(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    ctx.max_reject_rows = 5
    name = "OUTLET_WZB_20230601.txt"
    drop_file(bank / "inbox", name, _outlets(range(1, 3), bad=40))
    (outcome,) = process_bank(ctx, "WZB")
    assert (outcome.status, outcome.rows_total, outcome.rows_loaded, outcome.rows_rejected) == ("rejected", 42, 0, 42)
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(etl_reject.c.line, etl_reject.c.reason_code, etl_reject.c.occurrences)).all()
    details = [r for r in rows if r.line is not None]
    summaries = {r.reason_code: r.occurrences for r in rows if r.occurrences is not None}
    assert len(details) == 5
    assert summaries and all(n > 0 for n in summaries.values())
    receipt = _receipt(bank, name)
    assert receipt["errors_not_listed"] == sum(summaries.values())
    listed = {s["reason_code"]: s["count"] for s in receipt["error_summary"]}
    # every bad row carries an invalid type and an invalid date: 40 of each, listed or not
    assert listed["INVALID_ENUM"] == 40 and listed["INVALID_DATE"] == 40
    assert "TOO_MANY_INVALID" in listed
    rejects = list(csv.reader(io.StringIO((bank / "outbox" / f"{name}.rejects.csv").read_text("utf-8-sig"))))
    assert len(rejects) == 1 + 5 + len(summaries) + 1  # header, details, summaries, the file's reason
    assert any("未逐条列出" in cell for row in rejects for cell in row)


class KilledBetween(LocalLanding):
    """Dies after the ``.ok`` is removed, before the data file is (once)."""

    armed = True

    def remove_inbox(self, bank_code: str, names: list[str]) -> None:
        if self.armed and not any(n.endswith(".ok") for n in names):
            self.armed = False
            raise KeyboardInterrupt("killed between the .ok and the data file")
        super().remove_inbox(bank_code, names)


def test_a_kill_while_clearing_never_reads_the_next_upload_half_written(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    ctx.landing = KilledBetween(bank.parent)
    name = "OUTLET_WZB_20230601.txt"
    drop_file(bank / "inbox", name, _outlets(range(1, 3)))
    with pytest.raises(KeyboardInterrupt):
        process_bank(ctx, "WZB")
    assert sorted(p.name for p in (bank / "inbox").iterdir()) == [name]  # the .ok went first
    assert _files(ctx)[name] == ("accepted", 1, True)  # and its answer is on record
    assert process_bank(ctx, "WZB") == []  # the next run removes what was left, answers nothing
    assert list((bank / "inbox").iterdir()) == []
    # the bank uploads again under the same name: half-written, no .ok yet
    (bank / "inbox" / name).write_bytes(_outlets(range(1, 9))[:70])
    assert process_bank(ctx, "WZB") == []
    drop_file(bank / "inbox", name, _outlets(range(1, 9)))
    (outcome,) = process_bank(ctx, "WZB")
    assert (outcome.status, outcome.rows_loaded) == ("accepted", 8)


def test_a_file_growing_after_its_ok_is_not_cleared_and_read_again(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    name, other = "OUTLET_WZB_20230601.txt", "OUTLET_WZB_20230602.txt"
    whole = _outlets(range(1, 7))
    drop_file(bank / "inbox", name, whole[:-60], sha=False)  # .ok came early
    drop_file(bank / "inbox", other, _outlets(range(1, 8)))
    growing = [whole[-60:]]

    def hook(point: str, file_name: str, rows: int) -> None:
        if point == "registered" and file_name == name and growing:
            with (bank / "inbox" / name).open("ab") as fh:
                fh.write(growing.pop())

    ctx.hook = hook
    outcomes = process_bank(ctx, "WZB")
    assert [(o.file_name, o.status) for o in outcomes] == [(name, "changed_left_for_next_run"), (other, "accepted")]
    assert (bank / "inbox" / name).read_bytes() == whole  # not cleared
    (outcome,) = process_bank(ctx, "WZB")
    assert (outcome.file_name, outcome.status, outcome.rows_loaded) == (name, "accepted", 6)


def test_a_sha_mismatch_from_a_file_still_written_is_not_a_rejection(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    name = "OUTLET_WZB_20230601.txt"
    whole = _outlets(range(1, 7))
    drop_file(bank / "inbox", name, whole)
    (bank / "inbox" / name).write_bytes(whole[:-60])  # the .ok names the whole file's sha256
    rest = [whole[-60:]]

    def hook(point: str, file_name: str, rows: int) -> None:
        if point == "registered" and rest:
            with (bank / "inbox" / name).open("ab") as fh:
                fh.write(rest.pop())

    ctx.hook = hook
    assert [o.status for o in process_bank(ctx, "WZB")] == ["changed_left_for_next_run"]
    assert not (bank / "outbox").exists() or list((bank / "outbox").iterdir()) == []
    assert _files(ctx) == {}  # the snapshot's registration is dropped
    (outcome,) = process_bank(ctx, "WZB")
    assert (outcome.status, outcome.rows_loaded) == ("accepted", 6)


def test_an_entry_swapped_for_a_link_is_left_and_the_next_file_goes_on(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    first, second = "OUTLET_WZB_20230601.txt", "OUTLET_WZB_20230602.txt"
    drop_file(bank / "inbox", first, _outlets(range(1, 3)))
    drop_file(bank / "inbox", second, _outlets(range(1, 4)))
    elsewhere = tmp_path / "elsewhere.ok"
    elsewhere.write_text("")

    def hook(point: str, name: str, rows: int) -> None:
        ok = bank / "inbox" / f"{first}.ok"
        if point == "registered" and name == first and not ok.is_symlink():
            ok.unlink()
            ok.symlink_to(elsewhere)

    ctx.hook = hook
    outcomes = process_bank(ctx, "WZB")
    assert [(o.file_name, o.status) for o in outcomes] == [
        (first, "changed_left_for_next_run"), (second, "accepted"),
    ]
    assert (bank / "inbox" / first).is_file()


def test_a_long_name_is_answered_under_a_bounded_outbox_name(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    name = "OUTLET_WZB_20230601_" + "九" * 70 + ".txt"  # 230 bytes: a valid path, past MAX_NAME_BYTES
    drop_file(bank / "inbox", name, _outlets(range(1, 3)))
    drop_file(bank / "inbox", "OUTLET_WZB_20230602.txt", _outlets(range(1, 4)))
    outcomes = process_bank(ctx, "WZB")
    assert [o.status for o in outcomes] == ["rejected", "accepted"]
    receipts = [p.name for p in (bank / "outbox").iterdir() if p.name.endswith(".receipt.json")]
    assert all(len(r.encode()) <= 255 for r in receipts) and len(receipts) == 2
    assert any("~" in r for r in receipts)
    with ctx.engine.connect() as conn:
        paths = list(conn.execute(select(etl_file.c.archive_path)).scalars())
    assert all(len(Path(p).name.encode()) <= 255 for p in paths)


def test_a_refused_snapshot_row_keeps_its_outlet_and_the_receipt_says_so(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    drop_file(bank / "inbox", "OUTLET_WZB_20230601.txt", _outlets(range(1, 31)))
    broken = _outlets(range(2, 31)).decode() + "W1|温州银行1支行|不存在的类型|景山街道|府东路1号|||2023-01-05|正常\n"
    drop_file(bank / "inbox", "OUTLET_WZB_20230602.txt", broken.encode())
    outcomes = process_bank(ctx, "WZB")
    assert [o.status for o in outcomes] == ["accepted", "partially_accepted"]
    with ctx.engine.connect() as conn:
        w1 = conn.execute(select(dim_outlet.c.status, dim_outlet.c.is_current).where(dim_outlet.c.outlet_code == "W1")).all()
    assert [tuple(r) for r in w1] == [("正常", True)]  # not closed by the refused row
    warnings = _receipt(bank, "OUTLET_WZB_20230602.txt")["warnings"]
    assert any("1 个编号" in w and "保持原状" in w for w in warnings)


ELIC_HEAD = "业务流水号|办理网点编号|业务类型|统一社会信用代码|企业名称|法定代表人|法定代表人证件号|业务日期|授信金额|用信金额|贷款产品|状态\n"


def _elic(rows: dict[str, int]) -> bytes:
    return (ELIC_HEAD + "".join(
        f"{biz}|W1|一照贷款|91350100M000100Y43|温州某某鞋业有限公司|张三|11010519491231002X|2023-05-20|{credit}|100|创业贷|有效\n"
        for biz, credit in rows.items()
    )).encode("utf-8")


def test_a_late_elic_file_never_rolls_a_record_back(env) -> None:  # type: ignore[no-untyped-def]
    from govbank.warehouse.schema import fact_elicense_biz

    ctx, bank, _ = env
    drop_file(bank / "inbox", "OUTLET_WZB_20230501.txt", _outlets(range(1, 3)))
    drop_file(bank / "inbox", "ELIC_WZB_20230608.txt", _elic({"B0": 8000, "B1": 8000}))
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted", "accepted"]
    # last week's file, fixed and sent again after this week's
    drop_file(bank / "inbox", "ELIC_WZB_20230601.txt", _elic({"B0": 1000, "B9": 1000}))
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted"]
    with ctx.engine.connect() as conn:
        held = dict(conn.execute(select(fact_elicense_biz.c.biz_id, fact_elicense_biz.c.credit_amount_yuan)).all())
    assert {k: int(v) for k, v in held.items()} == {"B0": 8000, "B1": 8000, "B9": 1000}
    warnings = _receipt(bank, "ELIC_WZB_20230601.txt")["warnings"]
    assert any("有 1 行早于已入库的较新数据" in w for w in warnings)
    # a second file of the same later day still updates
    drop_file(bank / "inbox", "ELIC_WZB_20230608_02.txt", _elic({"B0": 9000}))
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted"]
    with ctx.engine.connect() as conn:
        b0 = conn.execute(select(fact_elicense_biz.c.credit_amount_yuan).where(fact_elicense_biz.c.biz_id == "B0")).scalar_one()
    assert int(b0) == 9000


def test_a_late_outlet_snapshot_only_fills_in_history(env) -> None:  # type: ignore[no-untyped-def]
    ctx, bank, _ = env
    drop_file(bank / "inbox", "OUTLET_WZB_20230601.txt", _outlets(range(1, 4)))  # W1-W3
    newer = _outlets(range(1, 3)).decode() + "W4|温州银行4支行|普通网点|景山街道|府东路4号|||2023-01-05|正常\n"
    drop_file(bank / "inbox", "OUTLET_WZB_20230608.txt", newer.encode())  # W3 left out, W4 new
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted", "accepted"]

    def versions() -> set[tuple]:
        with ctx.engine.connect() as conn:
            d = dim_outlet
            return {tuple(r) for r in conn.execute(select(d.c.outlet_code, d.c.valid_from, d.c.valid_to, d.c.is_current, d.c.status))}

    before = versions()
    late = _outlets(range(1, 4)).decode() + "W5|温州银行5支行|普通网点|景山街道|府东路5号|||2023-01-05|正常\n"
    drop_file(bank / "inbox", "OUTLET_WZB_20230605.txt", late.encode())
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted"]
    import datetime as dt

    added = versions() - before
    assert before <= versions()  # nothing the newer snapshot decided changed
    assert added == {("W5", dt.date(2023, 6, 5), dt.date(2023, 6, 8), False, "正常")}
    warnings = _receipt(bank, "OUTLET_WZB_20230605.txt")["warnings"]
    assert any("有 3 行早于已入库的较新数据" in w for w in warnings)
