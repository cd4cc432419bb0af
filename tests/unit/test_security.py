"""Issue 8, security: no personal data where a dashboard reads, a keyed pseudonym, no
secrets or personal data in logs, receipts, rejects or Data Docs, SQL only with bound
parameters, and contracts that cannot smuggle anything into SQL.

The demo drop goes through the package (``process_bank`` for every bank, then
``build_marts``), no Airflow; the Airflow side is covered by the e2e and SFTP tests.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, inspect, select

from govbank.config.contracts import load_contracts
from govbank.config.settings import Settings
from govbank.domain.datasets import PERSONAL_FIELDS, Dataset
from govbank.domain.errors import ConfigError
from govbank.ingest.run import process_bank
from govbank.orchestration.runtime import build_context, build_marts
from govbank.warehouse.db import upgrade
from govbank.warehouse.schema import DASHBOARD_TABLES, etl_reject, fact_elicense_biz, metadata
from govbank_dev.demo import build_demo, write_drop
from tests.conftest import PSEUDONYM_KEY, ROOT, drop_file
from tests.corpus import SQL_CELL, elic_row, outlet_row, render, resident_id

RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9X](?![0-9A-Za-z])")
MOBILE = re.compile(r"(?<![0-9.])1[3-9][0-9]{9}(?![0-9.])")


def _settings(tmp: Path) -> Settings:
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    upgrade(url)
    return Settings.from_env({"GOVBANK_LOCAL_DIR": str(tmp), "GOVBANK_WAREHOUSE_URL": url})


def _cells(engine: Engine, table: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(metadata.tables[table])).all()
    return [str(v) for row in rows for v in row if v is not None]


@dataclass
class Demo:
    engine: Engine
    ids: set[str]
    names: set[str]
    refused_ids: set[str]  # sent in rows refused for their ID: in etl_reject, masked


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, validator):  # type: ignore[no-untyped-def]
    settings = _settings(tmp_path_factory.mktemp("security_demo"))
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validator
    drop = build_demo()
    write_drop(drop, settings.landing_dir)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(validator, "data_docs_dir", None)  # pages are checked in the small run below
        for bank in drop.banks:
            process_bank(ctx, bank)
    build_marts(settings, drop.as_of)
    records = [r for b in drop.banks.values() for r in b.elic_records]
    ids = {r["legal_rep_id"] for r in records if r.get("legal_rep_id")}
    names = {r["legal_rep_name"] for r in records if r.get("legal_rep_name")}
    refused = {r["legal_rep_id"] for r in records if r["reject_reason"] == "INVALID_RESIDENT_ID"}
    assert len(ids) > 100 and len(names) > 100 and refused  # the demo carries personal data
    yield Demo(ctx.engine, ids, names, refused)
    ctx.engine.dispose()


def test_dashboard_tables_hold_no_personal_data(demo: Demo) -> None:
    assert set(DASHBOARD_TABLES) <= set(inspect(demo.engine).get_table_names())
    found: list[tuple[str, str]] = []
    seen_cells = 0
    for table in DASHBOARD_TABLES:
        cells = _cells(demo.engine, table)
        seen_cells += len(cells)
        for cell in cells:
            if RESIDENT_ID.search(cell) or MOBILE.search(cell):
                found.append((table, cell))
            elif any(name in cell for name in demo.names):
                found.append((table, cell))
    assert seen_cells > 1000  # the scan looked at real marts, not empty tables
    assert not found, found[:10]


def test_no_table_holds_a_raw_id_or_a_name(demo: Demo) -> None:
    """Not only the dashboard's: the facts, the rejects and the file log neither."""
    for table in metadata.tables:
        for cell in _cells(demo.engine, table):
            assert cell not in demo.names, (table, cell)
            for match in RESIDENT_ID.findall(cell):
                assert match not in demo.ids, (table, cell)


def test_rejects_mask_personal_fields(demo: Demo) -> None:
    with demo.engine.connect() as conn:
        rows = conn.execute(
            select(etl_reject.c.field, etl_reject.c.value).where(etl_reject.c.field.in_(PERSONAL_FIELDS))
        ).all()
    assert ("legal_rep_id",) in [(f,) for f, _ in rows]  # the refused ID is on record...
    for field, value in rows:
        assert value is None or ("*" in value and value not in demo.ids), (field, value)
    rejects = "\n".join(_cells(demo.engine, "etl_reject"))
    assert not [i for i in demo.refused_ids if i in rejects]  # ...but not readable


def test_pseudonym_is_keyed_and_not_a_plain_hash(demo: Demo) -> None:
    with demo.engine.connect() as conn:
        keys = set(conn.execute(select(fact_elicense_biz.c.legal_rep_key)).scalars()) - {None}
    assert len(keys) > 100

    def keyed(key: bytes) -> set[str]:
        return {hmac.new(key, i.encode(), hashlib.sha256).hexdigest() for i in demo.ids}

    assert keys <= keyed(PSEUDONYM_KEY)
    assert not keys & keyed(b"another-key-of-the-same-length-0123456789")
    plain = {
        h(i.encode()).hexdigest()
        for i in demo.ids
        for h in (hashlib.sha256, hashlib.sha1, hashlib.md5, hashlib.sha512)
    }
    for table in metadata.tables:
        assert not plain & set(_cells(demo.engine, table)), table


def test_secrets_and_personal_data_stay_out_of_logs_receipts_and_docs(
    tmp_path: Path, validator, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    secret_key = ("pseudonym-" + secrets.token_hex(16)).encode()
    settings = _settings(tmp_path)
    ctx = build_context(settings, secret_key)
    ctx.validator_factory = lambda: validator
    inbox = settings.landing_dir / "WZB" / "inbox"
    drop_file(inbox, "OUTLET_WZB_20230601.txt", render("WZB", Dataset.OUTLET, [outlet_row("WZB", n) for n in (1, 2)]))
    rows = [elic_row("secret", i, "WZB-O01") for i in range(30)]
    bad_id = resident_id("secret/bad")[:17]
    bad_id += "0" if bad_id + "0" != resident_id("secret/bad") else "1"
    rows[3]["legal_rep_id"] = bad_id  # refused: its value must still not leak
    rows[4]["enterprise_name"] = SQL_CELL
    drop_file(inbox, "ELIC_WZB_20230602.txt", render("WZB", Dataset.ELIC, rows))
    personal = {str(r[k]) for r in rows for k in ("legal_rep_id", "legal_rep_name")}
    assert bad_id in personal

    caplog.set_level(logging.DEBUG)  # everything, and SQLAlchemy's statements, parameters
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # and rows (it defaults to WARN)
    outcomes = process_bank(ctx, "WZB")
    assert [o.status for o in outcomes] == ["accepted", "partially_accepted"]
    assert any(r.levelno == logging.INFO and r.name.startswith("govbank") for r in caplog.records)
    assert any(r.name.startswith("sqlalchemy.engine") for r in caplog.records)  # with parameters

    logged = caplog.text + "\n".join(f"{r.msg!r} {r.args!r}" for r in caplog.records)
    outbox = sorted((settings.landing_dir / "WZB" / "outbox").iterdir())
    assert len(outbox) == 3  # two receipts and one rejects CSV
    docs = [p for p in Path(validator.data_docs_dir).rglob("*") if p.is_file()]
    assert [p for p in docs if "ELIC_WZB_20230602" in str(p)]  # this run's pages are there
    places = {"log": logged}
    places.update({f"outbox/{p.name}": p.read_bytes().decode("utf-8-sig") for p in outbox})
    places.update({f"docs/{p.name}": p.read_bytes().decode("utf-8", "replace") for p in docs})
    for table in metadata.tables:
        places[f"table {table}"] = "\n".join(_cells(ctx.engine, table))
    for secret in (secret_key.decode(), secret_key.hex()):
        assert not [where for where, text in places.items() if secret in text]
    for value in personal:
        leaks = [where for where, text in places.items() if value in text]
        assert not leaks, (value, leaks)

    # the SQL in a cell was data: stored verbatim, every table still there
    with ctx.engine.connect() as conn:
        stored = conn.execute(
            select(fact_elicense_biz.c.enterprise_name).where(fact_elicense_biz.c.biz_id == "secret-004")
        ).scalar_one()
    assert stored == SQL_CELL
    assert set(metadata.tables) <= set(inspect(ctx.engine).get_table_names())
    ctx.engine.dispose()


# --------------------------------------------------------------------------- contracts


def _contract(**changes: object) -> dict:
    doc: dict = {
        "bank_code": "TESTB",
        "bank_name": "测试银行",
        "joined_on": "2023-01-01",
        "feeds": {"ELIC": {"delimiter": ",", "headers": {"biz_id": "交易编号"}}, "OUTLET": {}},
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = doc
        for p in parents:
            node = node[p]
        node[last] = value
    return doc


def test_a_clean_contract_loads(tmp_path: Path) -> None:
    (tmp_path / "TESTB.yaml").write_text(yaml.safe_dump(_contract(), allow_unicode=True), encoding="utf-8")
    assert load_contracts(tmp_path)["TESTB"].feeds["ELIC"].headers == {"biz_id": "交易编号"}
    assert load_contracts(ROOT / "include" / "contracts")  # the shipped ones too


@pytest.mark.parametrize(
    ("doc", "file_stem"),
    [
        pytest.param(_contract(feeds__ELIC__headers={"drop_table": "x"}), "TESTB", id="unknown-canonical-field"),
        pytest.param(_contract(feeds__ELIC__headers={"biz_id": "x'; DROP TABLE dim_bank; --"}), "TESTB", id="sql-in-header"),
        pytest.param(_contract(feeds__ELIC__headers={"biz_id": 'id" FROM etl_file --'}), "TESTB", id="quote-in-header"),
        pytest.param(_contract(feeds__ELIC__headers={"biz_id": "编号\n状态"}), "TESTB", id="newline-in-header"),
        pytest.param(_contract(feeds__ELIC__headers={"biz_id": "=HYPERLINK(1)"}), "TESTB", id="formula-header"),
        pytest.param(_contract(feeds__ELIC__headers={"biz_id": "编号/*x*/"}), "TESTB", id="comment-in-header"),
        pytest.param(_contract(bank_code="testb"), "testb", id="code-lower-case"),
        pytest.param(_contract(bank_code="TESTB; DROP"), "TESTB; DROP", id="code-with-sql"),
        pytest.param(_contract(bank_code="../TESTB"), "TESTB", id="code-traversal"),
        pytest.param(_contract(bank_code="T"), "T", id="code-too-short"),
        pytest.param(_contract(bank_code="A" * 17), "A" * 17, id="code-too-long"),
        pytest.param(_contract(bank_code="OTHER"), "TESTB", id="code-not-file-name"),
        pytest.param(_contract(sql="DROP TABLE etl_file"), "TESTB", id="extra-top-level-key"),
        pytest.param(_contract(feeds__ELIC__table="dim_bank"), "TESTB", id="extra-feed-key"),
        pytest.param(_contract(feeds__USERS={}), "TESTB", id="unknown-dataset"),
        pytest.param(_contract(feeds__ELIC__delimiter="';'"), "TESTB", id="odd-delimiter"),
        pytest.param(_contract(feeds__ELIC__reject_threshold=2), "TESTB", id="threshold-out-of-range"),
    ],
)
def test_a_contract_that_tries_anything_else_is_refused(tmp_path: Path, doc: dict, file_stem: str) -> None:
    (tmp_path / f"{file_stem}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError):
        load_contracts(tmp_path)


def test_a_contract_cannot_run_code(tmp_path: Path) -> None:
    (tmp_path / "TESTB.yaml").write_text(
        "bank_code: !!python/object/apply:os.system ['touch pwned']\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError):
        load_contracts(tmp_path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


# --------------------------------------------------------------------------- SQL


SQL_CALLS = {"text", "execute", "exec_driver_sql", "executescript", "executemany"}
# the only values interpolated into SQL text: constants of the code, never input
ALLOWED_NAMES = {"PG_SCHEMA", "table", "persistence"}


def _dynamic_sql(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name not in SQL_CALLS:
            continue
        arg = node.args[0]
        if isinstance(arg, ast.JoinedStr):
            names = {n.id for v in arg.values if isinstance(v, ast.FormattedValue) for n in ast.walk(v.value) if isinstance(n, ast.Name)}
            if names - ALLOWED_NAMES:
                found.append((node.lineno, f"f-string with {sorted(names - ALLOWED_NAMES)}"))
        elif isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod | ast.Add):
            found.append((node.lineno, "string built with % or +"))
        elif isinstance(arg, ast.Call) and getattr(arg.func, "attr", "") == "format" and isinstance(getattr(arg.func, "value", None), ast.Constant):
            found.append((node.lineno, "str.format"))
    return found


def test_sql_is_never_built_from_values() -> None:
    """Every statement of the package is SQLAlchemy Core or text with bound parameters:
    no SQL string is formatted from a runtime value (identifiers in DDL come from
    constants of the code, and COPY uses psycopg's ``sql.Identifier``)."""
    offenders = []
    for path in sorted((ROOT / "include" / "govbank").rglob("*.py")):
        for line, what in _dynamic_sql(ast.parse(path.read_text(encoding="utf-8"))):
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not offenders, offenders
    # the check itself catches what it looks for
    assert _dynamic_sql(ast.parse("conn.execute(text(f'SELECT * FROM t WHERE x = {value}'))"))
    assert _dynamic_sql(ast.parse("cur.execute('DELETE FROM t WHERE id = %s' % bank)"))


@pytest.mark.parametrize("key_len", [16, 64, 65, 200])  # below, at and above SHA-256's block
def test_column_pseudonyms_are_the_rfc_2104_hmac(key_len: int) -> None:
    import pyarrow as pa

    from govbank.domain.pseudonym import pseudonymise, pseudonymise_column, pseudonymise_many

    key = secrets.token_bytes(key_len)
    ids = ["330302199001011234", " 33030219900101123x ", None, "330302199001011234", "王"]
    want = [None if i is None else hmac.new(key, i.strip().upper().encode(), hashlib.sha256).hexdigest()
            for i in ids]
    assert pseudonymise_many(key, ids) == want == [pseudonymise(key, i) for i in ids]
    assert pseudonymise_column(key, pa.array(ids, pa.string())).to_pylist() == want
    assert pseudonymise_column(key, pa.chunked_array([ids[:2], ids[2:]], pa.string())).to_pylist() == want
    assert want[0] == want[3] != want[1]  # a repeated ID keeps its pseudonym
