"""The stages together, without Airflow: receipts, rejects, archive, duplicates, idempotence."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from govbank.config.settings import Settings
from govbank.ingest.run import process_bank
from govbank.orchestration.runtime import build_context
from govbank.warehouse.schema import etl_file, etl_reject, fact_elicense_biz
from tests.conftest import PSEUDONYM_KEY, ROOT, drop_file

OUTLET = (
    "网点编号|网点名称|网点类型|所属镇街|地址|经度|纬度|启用日期|状态\n"
    "W1|温州银行瓯海支行|政务服务超市|景山街道|府东路1号|120.62|27.99|2023-01-05|正常\n"
    "W2|温州银行梧田支行|普通网点|330304002|梧田大道2号|||2020-01-01|正常\n"
)
ELIC_HEAD = "业务流水号|办理网点编号|业务类型|统一社会信用代码|企业名称|法定代表人|法定代表人证件号|业务日期|授信金额|用信金额|贷款产品|状态\n"
GOOD_ID = "11010519491231002X"


def _elic_rows(n: int) -> str:
    return "".join(
        f"B{i}|W1|一照贷款|91350100M000100Y43|温州某某鞋业有限公司{i}|张三|{GOOD_ID}|2023-06-01|1,000,000.00|800000|创业贷|有效\n"
        for i in range(n)
    )


@pytest.fixture
def env(tmp_path: Path, warehouse_url: str, validator):  # type: ignore[no-untyped-def]
    settings = Settings.from_env(
        {"GOVBANK_LOCAL_DIR": str(tmp_path), "GOVBANK_WAREHOUSE_URL": warehouse_url}
    )
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    return ctx, tmp_path / "landing"


def _count(ctx, table, *where) -> int:  # type: ignore[no-untyped-def]
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_accepted_partial_duplicate_and_traceable_rejects(env) -> None:  # type: ignore[no-untyped-def]
    ctx, landing = env
    inbox = landing / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"), rows=2)
    bad = (
        "BX1|W1|一照贷款|91350100M000100Y44|坏校验位公司|李四||2023-06-01|100|200|x|有效\n"
        'BX2|W9|一照开户|91350100M000100Y43|"=HYPERLINK(""http://x"")"|王五|110105194912310021|2023-06-01||||有效\n'
    )
    elic = (ELIC_HEAD + _elic_rows(40) + bad).encode("gb18030")
    drop_file(inbox, "ELIC_WZB_20230601.txt", elic, rows=42)
    outcomes = process_bank(ctx, "WZB")
    assert [(o.status, o.rows_total, o.rows_loaded, o.rows_rejected) for o in outcomes] == [
        ("accepted", 2, 2, 0),
        ("partially_accepted", 42, 40, 2),
    ]
    outbox = landing / "WZB" / "outbox"
    receipt = json.loads(
        (outbox / "ELIC_WZB_20230601.txt.receipt.json").read_text(encoding="utf-8")
    )
    assert receipt["status"] == "partially_accepted"
    assert receipt["sha256"] == hashlib.sha256(elic).hexdigest()
    reasons = {(e["line"], e["reason_code"]) for e in receipt["errors"]}
    assert {
        (42, "INVALID_USCC"),
        (42, "DRAWN_EXCEEDS_CREDIT"),
        (43, "UNKNOWN_OUTLET"),
        (43, "INVALID_RESIDENT_ID"),
    } <= reasons
    # the rejects file opens in Excel: BOM, Chinese messages, no live formula
    raw = (outbox / "ELIC_WZB_20230601.txt.rejects.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    cells = [c for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"))) for c in row]
    assert "用信金额大于授信金额" in cells
    assert not any(c.startswith(("=", "+", "-", "@")) for c in cells)
    # the inbox is empty; raw bytes are archived unchanged
    assert list(inbox.iterdir()) == []
    with ctx.engine.connect() as conn:
        archived = conn.execute(select(etl_file.c.archive_path, etl_file.c.sha256)).all()
    for path, sha in archived:
        assert hashlib.sha256((ctx.archive_dir / path).read_bytes()).hexdigest() == sha
    # no raw ID and no name in the fact table; the key is keyed, not a plain hash
    with ctx.engine.connect() as conn:
        keys = set(conn.execute(select(fact_elicense_biz.c.legal_rep_key)).scalars())
        dump = " ".join(str(v) for row in conn.execute(select(fact_elicense_biz)) for v in row)
    assert GOOD_ID not in dump and "张三" not in dump
    assert keys == {__import__("hmac").new(PSEUDONYM_KEY, GOOD_ID.encode(), "sha256").hexdigest()}
    assert hashlib.sha256(GOOD_ID.encode()).hexdigest() not in keys
    # etl_reject masks personal fields
    with ctx.engine.connect() as conn:
        values = list(conn.execute(select(etl_reject.c.value)).scalars())
    assert "110105194912310021" not in values

    # the same bytes again, under the same name: a duplicate, nothing new loaded
    before = _count(ctx, fact_elicense_biz)
    drop_file(inbox, "ELIC_WZB_20230601.txt", elic, rows=42)
    # and under another name
    drop_file(inbox, "ELIC_WZB_20230601_02.txt", elic, rows=42)
    again = process_bank(ctx, "WZB")
    assert [o.status for o in again] == ["duplicate", "duplicate"]
    assert _count(ctx, fact_elicense_biz) == before
    dup = json.loads((outbox / "ELIC_WZB_20230601_02.txt.receipt.json").read_text(encoding="utf-8"))
    assert (
        dup["status"] == "duplicate" and dup["duplicate_of"]["file_name"] == "ELIC_WZB_20230601.txt"
    )
    with ctx.engine.connect() as conn:
        for total, loaded, rejected in conn.execute(
            select(etl_file.c.rows_total, etl_file.c.rows_loaded, etl_file.c.rows_rejected)
        ):
            assert total == loaded + rejected


@pytest.mark.parametrize(
    ("name", "ok", "code"),
    [
        ("ELIC_WZB_20230601.txt", "sha256=" + "0" * 64, "OK_SHA256_MISMATCH"),
        ("ELIC_WZB_20230601.txt", "rows=3", "OK_ROWS_MISMATCH"),
        ("ELIC_ICBC_20230601.txt", "", "BANK_MISMATCH"),
        ("ELIC-WZB-20230601.txt", "", "FILE_NAME_INVALID"),
    ],
)
def test_file_level_rejections(env, name: str, ok: str, code: str) -> None:  # type: ignore[no-untyped-def]
    ctx, landing = env
    inbox = landing / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"), rows=2)
    data = (ELIC_HEAD + _elic_rows(2)).encode("gb18030")
    (inbox / name).write_bytes(data)
    (inbox / f"{name}.ok").write_text(ok)
    outcomes = {o.file_name: o for o in process_bank(ctx, "WZB")}
    assert outcomes[name].status == "rejected"
    receipt = json.loads(
        (landing / "WZB" / "outbox" / f"{name}.receipt.json").read_text(encoding="utf-8")
    )
    assert code in {e["reason_code"] for e in receipt["errors"]}
    assert receipt["rows_loaded"] == 0
    assert _count(ctx, fact_elicense_biz) == 0


def test_bank_without_contract_is_rejected_and_kept(env) -> None:  # type: ignore[no-untyped-def]
    ctx, landing = env
    data = (ELIC_HEAD + _elic_rows(1)).encode()
    drop_file(landing / "NEWBANK" / "inbox", "ELIC_NEWBANK_20230601.csv", data)
    [outcome] = process_bank(ctx, "NEWBANK")
    assert outcome.status == "rejected" and outcome.top_reasons[0][0] == "NO_CONTRACT"
    with ctx.engine.connect() as conn:
        path = conn.execute(select(etl_file.c.archive_path)).scalar_one()
    assert (ctx.archive_dir / path).read_bytes() == data


def test_each_validation_batch_logs_its_progress(env, caplog) -> None:  # type: ignore[no-untyped-def]
    """An operator watching a large file sees rows done, rows/s and refusals so far."""
    ctx, landing = env
    ctx.chunk_rows, ctx.gx_rows = 10, 20  # 43 rows: batches of 10 (the first is one chunk), 20, 13
    ctx.fast_reader = False  # the exact reader cuts chunks of exactly chunk_rows
    inbox = landing / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"))
    bad = "".join(f"Z{i}|W1|一照开户|BADUSCC|公司|||2023-06-01||||有效\n" for i in range(3))
    drop_file(inbox, "ELIC_WZB_20230601.txt", (ELIC_HEAD + _elic_rows(40) + bad).encode("gb18030"))
    with caplog.at_level(logging.INFO, logger="govbank.ingest.checks"):
        process_bank(ctx, "WZB")
    lines = [r.getMessage() for r in caplog.records if "ELIC_WZB_20230601.txt checked" in r.getMessage()]
    assert [ln.split(" checked ")[1].split(" rows")[0] for ln in lines] == ["10", "30", "43"]
    assert lines[-1].endswith("3 refused so far") and "rows/s" in lines[-1]


def test_a_file_loaded_but_not_answered_is_answered_without_counting_its_rows_again(env) -> None:  # type: ignore[no-untyped-def]
    """A run killed after the commit and before the receipt: the next run only answers."""
    ctx, landing = env
    inbox = landing / "WZB" / "inbox"
    outlet = OUTLET.encode("gb18030")
    drop_file(inbox, "OUTLET_WZB_20230601.txt", outlet)
    (first,) = process_bank(ctx, "WZB")
    assert (first.status, first.rows_loaded, first.loaded_now) == ("accepted", 2, True)
    with ctx.engine.begin() as conn:  # as if killed before the answer reached the outbox
        conn.execute(update(etl_file).values(answered_at=None))
    (landing / "WZB" / "outbox" / "OUTLET_WZB_20230601.txt.receipt.json").unlink()
    drop_file(inbox, "OUTLET_WZB_20230601.txt", outlet)  # the bank's file is still there
    (again,) = process_bank(ctx, "WZB")
    assert (again.status, again.rows_loaded, again.loaded_now) == ("accepted", 2, False)
    assert (landing / "WZB" / "outbox" / "OUTLET_WZB_20230601.txt.receipt.json").exists()
    assert _count(ctx, etl_file) == 1


def test_too_many_invalid_rows_rejects_the_file(env) -> None:  # type: ignore[no-untyped-def]
    ctx, landing = env
    inbox = landing / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"))
    rows = _elic_rows(5) + "".join(
        f"Z{i}|W1|一照开户|BADUSCC|公司|||2023-06-01||||有效\n" for i in range(3)
    )
    drop_file(inbox, "ELIC_WZB_20230601.txt", (ELIC_HEAD + rows).encode("gb18030"))
    outcomes = process_bank(ctx, "WZB")
    assert (outcomes[1].status, outcomes[1].rows_total, outcomes[1].rows_rejected) == (
        "rejected",
        8,
        8,
    )
    assert _count(ctx, fact_elicense_biz) == 0
    assert _count(ctx, etl_reject, etl_reject.c.reason_code == "TOO_MANY_INVALID") == 1


def test_contracts_shipped_are_valid() -> None:
    from govbank.config.contracts import load_contracts

    contracts = load_contracts(ROOT / "include" / "contracts")
    assert {"WZB", "OHRCB", "CCBOH", "ABCOH", "ICBCOH"} <= set(contracts)


def test_header_only_is_valid_and_unknown_headers_are_warned(env) -> None:  # type: ignore[no-untyped-def]
    ctx, landing = env
    inbox = landing / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.replace("状态\n", "状态|备注\n", 1)
              .replace("|正常\n", "|正常|x\n").encode("gb18030"))
    drop_file(inbox, "ELIC_WZB_20230601.txt", ELIC_HEAD.encode("gb18030"), rows=0)
    outcomes = process_bank(ctx, "WZB")
    assert [(o.status, o.rows_total) for o in outcomes] == [("accepted", 2), ("accepted", 0)]
    receipt = json.loads((landing / "WZB" / "outbox" / "OUTLET_WZB_20230601.txt.receipt.json").read_text("utf-8"))
    assert receipt["warnings"] == ["未识别的表头已忽略：备注"]


def _chunked_elic() -> str:
    """Bad rows, a key twice in one chunk and a key twice across GX batches."""
    rows = _elic_rows(200).splitlines(keepends=True)
    rows[4] = rows[4].replace(f"|{GOOD_ID}|", "|110105194912310021|")  # bad ID
    rows[13] = rows[13].replace("|800000|", "|2000000|")  # drawn > credit, a chunk's last line
    rows[14] = rows[14].replace("|91350100M000100Y43|", "|91350100M000100Y44|")  # and next first
    rows[12] = rows[11]  # B11 twice in the chunk of lines 9-15
    rows.append(rows[1])  # B1 again at the end, another GX batch
    rows[15] = rows[15].replace("|W1|", "|W9|")  # unknown outlet
    return ELIC_HEAD + "".join(rows)


def _load_once(root: Path, url: str, validator, elic: bytes, chunk_rows: int, gx_rows: int, **seams):  # type: ignore[no-untyped-def]
    """OUTLET + one ELIC file through ``process_bank``; (statuses, receipt errors, fact
    rows). ``seams`` are set on the context. The warehouse is emptied afterwards, so the
    next setting starts alike."""
    settings = Settings.from_env({
        "GOVBANK_LOCAL_DIR": str(root), "GOVBANK_WAREHOUSE_URL": url,
        "GOVBANK_CHUNK_ROWS": str(chunk_rows), "GOVBANK_GX_ROWS": str(gx_rows),
    })
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    for name, value in seams.items():
        setattr(ctx, name, value)
    assert (ctx.chunk_rows, ctx.gx_rows) == (chunk_rows, gx_rows)
    inbox = root / "landing" / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"))
    drop_file(inbox, "ELIC_WZB_20230601.txt", elic)
    outcomes = process_bank(ctx, "WZB")
    receipt = json.loads(
        (root / "landing" / "WZB" / "outbox" / "ELIC_WZB_20230601.txt.receipt.json").read_text("utf-8")
    )
    f = fact_elicense_biz.c
    with ctx.engine.begin() as conn:
        facts = sorted(conn.execute(select(f.biz_id, f.source_line, f.enterprise_name, f.legal_rep_key)).all())
        for table in (fact_elicense_biz, etl_reject, etl_file):
            conn.execute(table.delete())
    errors = sorted((e["line"], e["field"], e["reason_code"]) for e in receipt["errors"])
    return [(o.status, o.rows_total, o.rows_loaded) for o in outcomes], errors, facts


def check_chunking_changes_nothing(root: Path, url: str, validator) -> None:  # type: ignore[no-untyped-def]
    """Chunks of 7 rows validated in GX batches of 30 give what one chunk gives.

    The exact reader cuts chunks of exactly ``chunk_rows`` (Arrow's reader hands out
    blocks of a MiB, so a small file is one chunk there).
    """
    seen = [
        _load_once(
            root / f"c{chunk_rows}", url, validator, _chunked_elic().encode("gb18030"), chunk_rows, gx_rows,
            fast_reader=False,
        )
        for chunk_rows, gx_rows in ((7, 30), (1000, 1000))
    ]
    assert seen[0] == seen[1]
    statuses, errors, facts = seen[0]
    assert statuses == [("accepted", 2, 2), ("partially_accepted", 201, 193)]
    assert {(e[0], e[2]) for e in errors} == {
        (6, "INVALID_RESIDENT_ID"), (15, "DRAWN_EXCEEDS_CREDIT"), (16, "INVALID_USCC"),
        (17, "UNKNOWN_OUTLET"),
        (13, "DUPLICATE_KEY"), (14, "DUPLICATE_KEY"), (3, "DUPLICATE_KEY"), (202, "DUPLICATE_KEY"),
    }
    assert len(facts) == 193 and not {"B1", "B11"} & {f[0] for f in facts}


def test_chunking_changes_nothing(tmp_path: Path, warehouse_url: str, validator) -> None:  # type: ignore[no-untyped-def]
    check_chunking_changes_nothing(tmp_path, warehouse_url, validator)


def _early_file(rows: list[tuple[str, str]], bad: set[int] = frozenset()) -> bytes:  # type: ignore[assignment]
    """ELIC rows of (biz_id, enterprise name); rows at the ``bad`` indexes get an invalid
    resident ID."""
    return (ELIC_HEAD + "".join(
        f"{key}|W1|一照贷款|91350100M000100Y43|{name}|张三|{'110105194912310021' if i in bad else GOOD_ID}"
        "|2023-06-01|1,000,000.00|800000|创业贷|有效\n"
        for i, (key, name) in enumerate(rows)
    )).encode("gb18030")


def _record_early() -> tuple:  # type: ignore[no-untyped-def]
    """A factory for ``Context.early_insert``, and the EarlyInsert objects it will have
    made (PostgreSQL loads only)."""
    from govbank.ingest.stage import EarlyInsert

    used: list = []

    def recorded(*args, **kwargs) -> EarlyInsert:  # type: ignore[no-untyped-def]
        used.append(EarlyInsert(*args, **kwargs))
        return used[-1]

    return recorded, used


def _early_context(root: Path, url: str, validator) -> tuple:  # type: ignore[no-untyped-def]
    """Exact reader, chunks of 5 in GX batches of 10; the EarlyInsert objects used."""
    recorded, used = _record_early()
    settings = Settings.from_env({
        "GOVBANK_LOCAL_DIR": str(root), "GOVBANK_WAREHOUSE_URL": url,
        "GOVBANK_CHUNK_ROWS": "5", "GOVBANK_GX_ROWS": "10",
    })
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    ctx.fast_reader, ctx.early_insert = False, recorded
    inbox = root / "landing" / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", OUTLET.encode("gb18030"))
    return ctx, inbox, used


def _facts(ctx) -> dict[str, tuple]:  # type: ignore[no-untyped-def]
    f = fact_elicense_biz.c
    with ctx.engine.begin() as conn:
        return {r.biz_id: tuple(r)[1:] for r in conn.execute(select(f.biz_id, f.enterprise_name, f.source_file, f.source_line))}


def _receipt_errors(root: Path, name: str) -> list[tuple[int, str]]:
    receipt = json.loads((root / "landing" / "WZB" / "outbox" / f"{name}.receipt.json").read_text("utf-8"))
    return sorted((e["line"], e["reason_code"]) for e in receipt["errors"])


def check_early_inserts(root: Path, url: str, validator) -> list:  # type: ignore[no-untyped-def]
    """A second file in GX batches of 10 (lines 2-11, 12-21, ...): new keys, one invalid
    row, an updated and an unchanged record, a key twice in different batches. The
    outcome is the one merge's, whichever batches reach the table early (PostgreSQL);
    returns the ``EarlyInsert`` objects the load used."""
    ctx, inbox, used = _early_context(root, url, validator)
    drop_file(inbox, "ELIC_WZB_20230601.txt", _early_file([(f"B{i}", f"一号{i}") for i in range(10)]))
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted", "accepted"]
    second = [(f"N{i}", f"二号{i}") for i in range(100)]  # N3 (line 5): invalid, never inserted
    second[11] = ("D1", "二号D1")  # line 13, batch 2 (all new keys: inserted early)
    second[23] = ("B5", "一号5改")  # line 25, batch 3: an update
    second[24] = ("B7", "一号7")  # line 26, batch 3: unchanged, keeps its provenance
    second[38] = ("D1", "二号D1再")  # line 40, batch 5: D1 again, both refused
    drop_file(inbox, "ELIC_WZB_20230602.txt", _early_file(second, bad={3}))
    outcomes = process_bank(ctx, "WZB")
    assert [(o.status, o.rows_total, o.rows_loaded) for o in outcomes] == [("partially_accepted", 100, 97)]
    assert _receipt_errors(root, "ELIC_WZB_20230602.txt") == [
        (5, "INVALID_RESIDENT_ID"), (13, "DUPLICATE_KEY"), (40, "DUPLICATE_KEY"),
    ]
    want = {f"B{i}": (f"一号{i}", "ELIC_WZB_20230601.txt", i + 2) for i in range(10)}
    want["B5"] = ("一号5改", "ELIC_WZB_20230602.txt", 25)
    want |= {k: (n, "ELIC_WZB_20230602.txt", i + 2) for i, (k, n) in enumerate(second) if k.startswith("N")}
    del want["N3"]
    assert _facts(ctx) == want
    return used


def check_repeats_with_refused_rows(root: Path, url: str, validator) -> list:  # type: ignore[no-untyped-def]
    """Keys repeated only alongside refused rows: every valid row is new and distinct
    (on PostgreSQL all go in early, and the duplicate check looks at the refused lines'
    keys only); every occurrence of a repeated key is refused all the same."""
    ctx, inbox, used = _early_context(root, url, validator)
    rows = [(f"N{i}", f"三号{i}") for i in range(120)]
    rows[25] = ("N4", "三号4再")  # line 27, valid; N4 at line 6 has a bad ID
    rows[18] = rows[19] = ("N10", "三号10再")  # lines 20, 21, bad IDs; N10 valid at line 12
    drop_file(inbox, "ELIC_WZB_20230601.txt", _early_file(rows, bad={4, 18, 19}))
    outcomes = process_bank(ctx, "WZB")
    assert [(o.status, o.rows_total, o.rows_loaded) for o in outcomes][1:] == [("partially_accepted", 120, 115)]
    assert _receipt_errors(root, "ELIC_WZB_20230601.txt") == [
        (6, "DUPLICATE_KEY"), (6, "INVALID_RESIDENT_ID"), (12, "DUPLICATE_KEY"),
        (20, "DUPLICATE_KEY"), (20, "INVALID_RESIDENT_ID"), (21, "DUPLICATE_KEY"),
        (21, "INVALID_RESIDENT_ID"), (27, "DUPLICATE_KEY"),
    ]
    want = {k: (n, "ELIC_WZB_20230601.txt", i + 2) for i, (k, n) in enumerate(rows) if k not in ("N4", "N10")}
    assert len(want) == 115 and _facts(ctx) == want
    return used


def check_known_and_repeated_keys(root: Path, url: str, validator) -> list:  # type: ignore[no-untyped-def]
    """A key repeated in two batches of new keys (the first went in early, the second is
    refused by the key index), then a known key repeated: both are refused in every
    occurrence, and the known record stays as it was."""
    ctx, inbox, used = _early_context(root, url, validator)
    drop_file(inbox, "ELIC_WZB_20230601.txt", _early_file([(f"B{i}", f"一号{i}") for i in range(10)]))
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted", "accepted"]
    second = [(f"M{i}", f"二号{i}") for i in range(50)]
    second[1] = second[13] = ("D7", "二号D7")  # lines 3 and 15: batches 1 and 2
    third = [(f"P{i}", f"三号{i}") for i in range(50)]
    third[2] = third[25] = ("B3", "一号3改")  # lines 4 and 27 (batches 1 and 4): B3 is in the table
    drop_file(inbox, "ELIC_WZB_20230602.txt", _early_file(second))
    drop_file(inbox, "ELIC_WZB_20230603.txt", _early_file(third))
    outcomes = process_bank(ctx, "WZB")
    assert [(o.status, o.rows_total, o.rows_loaded) for o in outcomes] == [
        ("partially_accepted", 50, 48), ("partially_accepted", 50, 48),
    ]
    assert _receipt_errors(root, "ELIC_WZB_20230602.txt") == [(3, "DUPLICATE_KEY"), (15, "DUPLICATE_KEY")]
    assert _receipt_errors(root, "ELIC_WZB_20230603.txt") == [(4, "DUPLICATE_KEY"), (27, "DUPLICATE_KEY")]
    want = {f"B{i}": (f"一号{i}", "ELIC_WZB_20230601.txt", i + 2) for i in range(10)}
    for name, rows in (("ELIC_WZB_20230602.txt", second), ("ELIC_WZB_20230603.txt", third)):
        want |= {k: (n, name, i + 2) for i, (k, n) in enumerate(rows) if k not in ("D7", "B3")}
    assert _facts(ctx) == want
    return used


def test_known_and_repeated_keys_on_sqlite(tmp_path: Path, warehouse_url: str, validator) -> None:  # type: ignore[no-untyped-def]
    assert check_known_and_repeated_keys(tmp_path, warehouse_url, validator) == []


def test_early_inserts_change_nothing_on_sqlite(tmp_path: Path, warehouse_url: str, validator) -> None:  # type: ignore[no-untyped-def]
    assert check_early_inserts(tmp_path, warehouse_url, validator) == []  # SQLite: one merge


def test_repeats_with_refused_rows_on_sqlite(tmp_path: Path, warehouse_url: str, validator) -> None:  # type: ignore[no-untyped-def]
    assert check_repeats_with_refused_rows(tmp_path, warehouse_url, validator) == []


def test_prefetch_hands_over_items_errors_and_stops() -> None:
    from govbank.util.concurrency import Prefetch

    assert list(Prefetch(iter(range(5)), lambda i: i * 10)) == [0, 10, 20, 30, 40]

    def failing():  # type: ignore[no-untyped-def]
        yield 1
        yield 2
        raise ValueError("bad bytes on line 4")

    got = []
    with pytest.raises(ValueError, match="line 4"):
        for item in Prefetch(failing(), lambda i: i):
            got.append(item)
    assert got == [1, 2]  # what came before the error was handed over first

    closed = []

    def endless():  # type: ignore[no-untyped-def]
        try:
            n = 0
            while True:
                n += 1
                yield n
        finally:
            closed.append(n)

    reader = Prefetch(endless(), lambda i: i)
    assert next(iter(reader)) == 1
    reader.close()  # the consumer failed: the reader thread stops and closes its source
    assert closed and closed[0] <= 4


def check_late_fallback_changes_nothing(root: Path, url: str, validator, caplog) -> None:  # type: ignore[no-untyped-def]
    """A quote across lines near the end of a file of several MiB-blocks: the columnar
    reader has handed out (and the pipeline validated and staged) chunks before it gives
    up; the exact reader's second pass must give what it gives alone."""
    import logging

    n = 30_000  # ≈ 3.9 MB: Arrow hands out two 1 MiB blocks before it meets the quote
    rows = _elic_rows(n).splitlines(keepends=True)
    rows[n - 10] = rows[n - 10].replace(f"|温州某某鞋业有限公司{n - 10}|", '|"温州某某\n鞋业有限公司"|')
    data = (ELIC_HEAD + "".join(rows)).encode("gb18030")
    staged = []

    def counting(point: str, file_name: str, rows: int) -> None:
        if point == "staged" and file_name.startswith("ELIC"):
            staged.append(rows)

    seen = []
    for exact_only in (False, True):
        staged.clear()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="govbank.ingest.run"):
            seen.append(_load_once(
                root / f"exact{exact_only}", url, validator, data, 1000, 3000,
                fast_reader=not exact_only, hook=counting,
            ))
        fell_back = "read again by the exact reader" in caplog.text
        assert fell_back is not exact_only
        # the first attempt validated and staged its chunks before giving up
        assert (sum(staged) > n + 2) is not exact_only
    assert seen[0] == seen[1]
    statuses, _, facts = seen[0]
    assert statuses[1][1] == n and len(facts) == statuses[1][2] >= n - 1


def check_late_fallback_takes_early_rows_back(root: Path, url: str, validator) -> list:  # type: ignore[no-untyped-def]
    """Batches of the columnar reader's attempt went into the fact table early (PostgreSQL)
    before it met a quote across lines: the exact reader's pass starts from nothing, so
    B5, sent twice, is refused in both occurrences. Returns the EarlyInsert objects used."""

    recorded, used = _record_early()
    n = 60_000
    rows = _elic_rows(n).splitlines(keepends=True)
    rows[n - 10] = rows[n - 10].replace(f"|温州某某鞋业有限公司{n - 10}|", '|"温州某某\n鞋业有限公司"|')
    rows[n - 20] = rows[5].replace("温州某某鞋业有限公司5", "温州某某鞋业有限公司5再")  # B5, line 59,982
    data = (ELIC_HEAD + "".join(rows)).encode("gb18030")
    statuses, errors, facts = _load_once(root, url, validator, data, 1000, 3000, early_insert=recorded)
    assert statuses[1][:2] == ("partially_accepted", n)
    assert [(e[0], e[2]) for e in errors if e[2] == "DUPLICATE_KEY"] == [(7, "DUPLICATE_KEY"), (n - 18, "DUPLICATE_KEY")]
    assert "B5" not in {f[0] for f in facts} and len(facts) == statuses[1][2]
    return used


def test_late_fallback_takes_early_rows_back_on_sqlite(tmp_path: Path, warehouse_url: str, validator) -> None:  # type: ignore[no-untyped-def]
    assert check_late_fallback_takes_early_rows_back(tmp_path, warehouse_url, validator) == []


def test_late_fallback_changes_nothing(tmp_path: Path, warehouse_url: str, validator, caplog) -> None:  # type: ignore[no-untyped-def]
    check_late_fallback_changes_nothing(tmp_path, warehouse_url, validator, caplog)
