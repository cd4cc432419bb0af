"""The warehouse on PostgreSQL, against the embedded SQLite: migrations, column types,
COPY loads giving the same rows, the dashboard role's limits, racing loads.

Needs ``$GOVBANK_TEST_POSTGRES_URL`` (``make test`` sets it), a database whose schema
``govbank`` these tests drop and rebuild. Unset, the tests fail: they never skip.
The group roles ``govbank_writer`` and ``govbank_dashboard`` are created by the
migrations and stay (they belong to the cluster); the login roles made here are dropped.
Each data set runs on SQLite first, then on PostgreSQL; Great Expectations validates
each distinct chunk once (``SharedValidations``), which keeps the module near 2 minutes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import DateTime, Engine, Numeric, func, inspect, make_url, select, text
from sqlalchemy.exc import IntegrityError

from govbank.config.contracts import load_contracts
from govbank.config.settings import DEFAULT_CONTRACTS_DIR, Settings
from govbank.domain.datasets import Dataset
from govbank.ingest.merge import merge_elicense_biz, merge_outlets, sync_banks
from govbank.ingest.run import process_bank
from govbank.orchestration.runtime import build_context, build_marts
from govbank.warehouse.db import DASHBOARD_ROLE, WRITER_ROLE, downgrade, make_engine, upgrade
from govbank.warehouse.schema import (
    DASHBOARD_TABLES,
    PG_SCHEMA,
    dim_outlet,
    dim_town,
    fact_elicense_biz,
    mart_kpi,
    metadata,
    stg_elicense_biz,
    stg_outlet,
)
from govbank_dev import demo
from tests.conftest import PSEUDONYM_KEY, ROOT

pytestmark = pytest.mark.integration

PG_ENV = "GOVBANK_TEST_POSTGRES_URL"
AS_OF = dt.date(2023, 6, 15)
# left out of the comparison: wall-clock times and surrogate keys (and what refers to them)
VOLATILE = {"loaded_at", "received_at", "processed_at", "answered_at", "last_received_at"}
SURROGATE = {"outlet_key", "file_id", "reject_id", "duplicate_of"}
GRANT_SCRIPT = ROOT / "docker" / "grant_dashboard.py"


@pytest.fixture(scope="module")
def pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(f"set {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/govbank_test)")
    return url


def fresh_pg(url: str, revision: str | None = "head") -> Engine:
    """Drop schema govbank, migrate to ``revision`` (None: leave it empty)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{PG_SCHEMA}" CASCADE')
    if revision:
        upgrade(url, revision)
    return engine


def test_resent_unchanged_record_keeps_provenance_on_postgres(pg_url: str) -> None:
    """The PostgreSQL merge (UPDATE of changed rows, then INSERT of new ones) means what
    SQLite's ``INSERT ... ON CONFLICT`` means."""
    from tests.unit.test_load import check_resent_unchanged_keeps_provenance

    fresh_pg(pg_url).dispose()
    check_resent_unchanged_keeps_provenance(pg_url)


def test_chunking_changes_nothing_on_postgres(  # type: ignore[no-untyped-def]
    pg_url: str, tmp_path: Path, validator
) -> None:
    """Several chunks per GX batch, staged by the writer thread a few at a time."""
    from tests.unit.test_pipeline import check_chunking_changes_nothing

    fresh_pg(pg_url).dispose()
    check_chunking_changes_nothing(tmp_path, pg_url, validator)


def test_late_fallback_changes_nothing_on_postgres(  # type: ignore[no-untyped-def]
    pg_url: str, tmp_path: Path, validator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Chunks staged by the writer thread before the columnar reader gives up are not merged."""
    from tests.unit.test_pipeline import check_late_fallback_changes_nothing

    fresh_pg(pg_url).dispose()
    check_late_fallback_changes_nothing(tmp_path, pg_url, validator, caplog)


def test_early_inserts_change_nothing_on_postgres(  # type: ignore[no-untyped-def]
    pg_url: str, tmp_path: Path, validator
) -> None:
    """Rows of new keys reach the fact table while the file is checked; rows of known
    keys (an update, a key seen earlier in the file) wait for the merge; an early row
    whose key turns out twice in the file is taken back."""
    from tests.unit.test_pipeline import check_early_inserts

    fresh_pg(pg_url).dispose()
    first, second = check_early_inserts(tmp_path, pg_url, validator)
    assert (first.rows, first.refused, first.staged) == (10, 0, 0)
    # batches 1-2 (lines 2-6, 7-16: the first is one chunk) go in by plain INSERTs (14
    # rows: N3 is invalid; D1 among them); the index refuses batch 3 (B5, B7 known), so
    # from there known keys are set aside first: B5 and B7, then D1 again in batch 5, are
    # left to the merge; every other row goes in early
    counts = (second.savepoints, second.refused, second.staged, second.rows)
    assert counts == (3, 1, 3, 96) and not second.complete, counts


def test_repeats_with_refused_rows_on_postgres(  # type: ignore[no-untyped-def]
    pg_url: str, tmp_path: Path, validator
) -> None:
    """All valid rows go in early, so the duplicate check looks only at the keys of
    refused lines: it still refuses every occurrence, as SQLite's full grouping does."""
    from tests.unit.test_pipeline import check_repeats_with_refused_rows

    fresh_pg(pg_url).dispose()
    (early,) = check_repeats_with_refused_rows(tmp_path, pg_url, validator)
    # 120 rows: 3 bad IDs (lines 6, 20, 21); the first GX batch is one chunk (lines 2-6),
    # so N10 of line 12 is in another batch than its bad repeats: it went in early and
    # was taken back, as was N4 of line 27 (its bad twin is line 6)
    assert early.complete and early.rows == 117


def test_known_and_repeated_keys_on_postgres(  # type: ignore[no-untyped-def]
    pg_url: str, tmp_path: Path, validator
) -> None:
    """An early row whose key comes back in a later batch is taken back (the full
    duplicate check runs: a batch was refused); taking back early rows never touches a
    record loaded before."""
    from tests.unit.test_pipeline import check_known_and_repeated_keys

    fresh_pg(pg_url).dispose()
    first, second, third = check_known_and_repeated_keys(tmp_path, pg_url, validator)
    # D7 of batch 1 went in early (then taken back); its return in batch 2 was staged
    assert (second.refused, second.staged, second.rows) == (1, 1, 49) and not second.complete
    # B3 is known: both occurrences staged (batches 1 and 4), the other 48 rows early
    assert (third.refused, third.staged, third.rows) == (1, 2, 48) and not third.complete


def test_key_repeated_within_a_batch_without_gx_unique_rule_on_postgres(  # type: ignore[no-untyped-def]
    pg_url: str, tmp_path: Path
) -> None:
    """The suite is configuration: with ELIC's uniqueness expectation taken out, a key
    twice in one batch reaches the early insert. After a refused batch it is set aside
    with the known keys, and the file-wide duplicate check still refuses both lines."""
    from govbank.validate import Validator
    from tests.conftest import drop_file
    from tests.unit.test_pipeline import _early_context, _early_file, _facts, _receipt_errors

    suites = tmp_path / "expectations"
    suites.mkdir()
    for path in (ROOT / "expectations").glob("*.json"):
        data = json.loads(path.read_text("utf-8"))
        if path.name == "elic.json":
            data["expectations"] = [
                e for e in data["expectations"] if e["type"] != "expect_column_values_to_be_unique"
            ]
        (suites / path.name).write_text(json.dumps(data, ensure_ascii=False), "utf-8")
    fresh_pg(pg_url).dispose()
    ctx, inbox, used = _early_context(tmp_path / "site", pg_url, Validator(suites))
    drop_file(inbox, "ELIC_WZB_20230601.txt", _early_file([(f"B{i}", f"一号{i}") for i in range(10)]))
    assert [o.status for o in process_bank(ctx, "WZB")] == ["accepted", "accepted"]
    rows = [(f"N{i}", f"二号{i}") for i in range(60)]  # 2 refused: under the 5 % threshold
    # batches (the first is one chunk): lines 2-6, 7-16, 17-26, ...
    rows[12] = ("B2", "一号2改")  # line 14, batch 2: known, the batch is refused
    rows[17] = rows[21] = ("R1", "二号R1")  # lines 19 and 23, both in batch 3
    drop_file(inbox, "ELIC_WZB_20230602.txt", _early_file(rows))
    outcomes = process_bank(ctx, "WZB")
    assert [(o.status, o.rows_total, o.rows_loaded) for o in outcomes] == [("partially_accepted", 60, 58)]
    assert _receipt_errors(tmp_path / "site", "ELIC_WZB_20230602.txt") == [(19, "DUPLICATE_KEY"), (23, "DUPLICATE_KEY")]
    facts = _facts(ctx)
    assert "R1" not in facts and facts["B2"] == ("一号2改", "ELIC_WZB_20230602.txt", 14)
    second = used[-1]
    assert (second.refused, second.staged, second.rows) == (1, 3, 57), (second.refused, second.staged, second.rows)


def test_late_fallback_takes_early_rows_back_on_postgres(  # type: ignore[no-untyped-def]
    pg_url: str, tmp_path: Path, validator
) -> None:
    """The columnar reader's attempt put batches into the fact table early before it met
    a quote across lines: its savepoint takes them back and the exact reader's pass
    starts from nothing (B5 sent twice is refused in both occurrences)."""
    from tests.unit.test_pipeline import check_late_fallback_takes_early_rows_back

    fresh_pg(pg_url).dispose()
    first_attempt, exact = check_late_fallback_takes_early_rows_back(tmp_path, pg_url, validator)
    assert first_attempt.rows > 0 and exact.rows > 0, (first_attempt.rows, exact.rows)


def sqlite_url(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'warehouse.db').as_posix()}"


# --- migrations and types ---------------------------------------------------------------


def _tables(engine: Engine) -> set[str]:
    schema = PG_SCHEMA if engine.dialect.name == "postgresql" else None
    return set(inspect(engine).get_table_names(schema=schema)) - {"alembic_version"}


def _grants(engine: Engine) -> list[tuple]:
    sql = text(
        "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants"
        " WHERE table_schema = :s AND grantee IN (:w, :d)"
        " UNION ALL SELECT 'default', defaclobjtype::text, defaclacl::text FROM pg_default_acl"
        " WHERE defaclnamespace = CAST(:s AS regnamespace)"
    )
    with engine.connect() as conn:
        return conn.execute(sql, {"s": PG_SCHEMA, "w": WRITER_ROLE, "d": DASHBOARD_ROLE}).all()


def _persistence(engine: Engine, prefix: str) -> dict[str, str]:
    """Table name -> relpersistence (p: logged, u: unlogged)."""
    sql = text(
        "SELECT relname, relpersistence FROM pg_class"
        " WHERE relnamespace = CAST(:s AS regnamespace) AND relkind = 'r'"
        " AND starts_with(relname, :p)"
    )
    with engine.connect() as conn:
        return dict(conn.execute(sql, {"s": PG_SCHEMA, "p": prefix}).all())


def test_upgrade_downgrade_upgrade_on_both(pg_url: str, tmp_path: Path) -> None:
    for url in (sqlite_url(tmp_path), pg_url):
        engine = fresh_pg(url, None) if url == pg_url else make_engine(url)
        pg = engine.dialect.name == "postgresql"
        try:
            upgrade(url)
            assert _tables(engine) == set(metadata.tables), url
            if pg:
                assert _grants(engine), "0004 grants the group roles"
                assert set(_persistence(engine, "stg_").values()) == {"u"}
                downgrade(url, "0002")
                assert _grants(engine) == [], "downgrade takes every privilege back"
                assert set(_persistence(engine, "stg_").values()) == {"p"}
            downgrade(url, "base")
            assert _tables(engine) == set(), url
            upgrade(url)
            assert _tables(engine) == set(metadata.tables), url
            with engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(dim_town)).scalar_one() == 13
                where = f"{PG_SCHEMA}." if pg else ""
                version = conn.execute(text(f"SELECT version_num FROM {where}alembic_version"))
                assert version.scalar_one() == "0008_attempts_and_summaries"
        finally:
            engine.dispose()


def test_postgres_types_keys_and_unlogged_staging(pg_url: str) -> None:
    engine = fresh_pg(pg_url)
    with engine.connect() as conn:
        cols = {
            (r.table_name, r.column_name): r
            for r in conn.execute(
                text(
                    "SELECT table_name, column_name, data_type, numeric_precision, numeric_scale"
                    " FROM information_schema.columns WHERE table_schema = :s"
                ),
                {"s": PG_SCHEMA},
            )
        }
        indexes = dict(
            conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s"),
                {"s": PG_SCHEMA},
            ).all()
        )
    persistence = _persistence(engine, "")
    engine.dispose()
    amounts = [k for k in cols if k[1].endswith("_yuan")]
    assert ("fact_elicense_biz", "credit_amount_yuan") in amounts
    for key in amounts:
        c = cols[key]
        assert (c.data_type, c.numeric_precision, c.numeric_scale) == ("numeric", 18, 2), key
    times = [k for k, c in cols.items() if c.data_type.startswith("timestamp")]
    assert ("etl_file", "received_at") in times and (
        "fact_elicense_usage",
        "authorized_at",
    ) in times
    for key in times:
        assert cols[key].data_type == "timestamp with time zone", key
    # every column of the metadata is there; every Numeric and DateTime as declared
    for table in metadata.tables.values():
        for column in table.columns:
            c = cols[(table.name, column.name)]
            if isinstance(column.type, Numeric):
                declared = (column.type.precision, column.type.scale)
                assert (c.data_type, c.numeric_precision, c.numeric_scale) == ("numeric", *declared)
            elif isinstance(column.type, DateTime):
                assert column.type.timezone, (table.name, column.name)
                assert c.data_type == "timestamp with time zone", (table.name, column.name)
    assert persistence["stg_outlet"] == persistence["stg_elicense_biz"] == "u"
    assert persistence["fact_elicense_biz"] == persistence["dim_outlet"] == "p"
    assert "(bank_code, biz_id)" in indexes["pk_fact_elicense_biz"]
    assert "UNIQUE" in indexes["uq_dim_outlet_current"]
    assert "WHERE is_current" in indexes["uq_dim_outlet_current"]
    assert "(bank_code, sha256)" in indexes["uq_etl_file_bank_sha256_original"]
    assert "WHERE" in indexes["uq_etl_file_bank_sha256_original"]


# --- the full pipeline on both, same rows -------------------------------------------------


class SharedValidations:
    """The session's Validator, asked once per distinct file.

    Both backends read the same files into the same frames, and Great Expectations,
    not the database, is what costs seconds per file: the second backend gets, chunk by
    chunk, the outcomes the first one got for identical frames (hashed), and the first
    one's Data Docs page. A frame the first backend never saw fails the test: the two
    backends must validate the same data. Counts the seconds spent here.
    """

    def __init__(self, validator: Any) -> None:
        self.validator = validator
        self.outcomes: dict[tuple, Any] = {}
        self.pages: dict[tuple, Any] = {}
        self.seconds = 0.0

    def validate(self, dataset: str, frame: Any, *, run_name: str, params: Any = None, **kw: Any):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        key = (dataset, run_name, json.dumps(params, sort_keys=True), _digest(frame))
        if key not in self.outcomes:
            self.outcomes[key] = self.validator.validate(
                dataset, frame, run_name=run_name, params=params, **{"build_index": False, **kw}
            )
        self.seconds += time.perf_counter() - started
        return self.outcomes[key]

    def file_run(self, dataset: str, run_name: str) -> SharedRun:
        return SharedRun(self, dataset, run_name)


def _digest(frame: Any) -> str:
    return hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()


class SharedRun:
    def __init__(self, shared: SharedValidations, dataset: str, run_name: str) -> None:
        self.shared, self.dataset, self.run_name = shared, dataset, run_name
        self.keys: list[tuple] = []
        self.run: Any = None  # the real file run, when this is the first backend to see the file

    def validate(self, frame: Any, *, params: Any = None):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        key = (self.dataset, self.run_name, json.dumps(params, sort_keys=True), _digest(frame))
        self.keys.append(key)
        if key in self.shared.outcomes and self.run is None:
            outcome = self.shared.outcomes[key]
        else:
            assert len(self.keys) == 1 or self.run is not None, "the backends validated different frames"
            self.run = self.run or self.shared.validator.file_run(self.dataset, self.run_name)
            outcome = self.shared.outcomes[key] = self.run.validate(frame, params=params)
        self.shared.seconds += time.perf_counter() - started
        return outcome

    def publish(self):  # type: ignore[no-untyped-def]
        files = tuple(self.keys)
        if self.run is not None:
            self.shared.pages[files] = self.run.publish()
        return self.shared.pages.get(files)


@dataclass
class Run:
    dump: dict[str, list[tuple]]
    kpi: dict[str, Decimal]
    outcomes: list[tuple]
    seconds: float
    validation_seconds: float
    rows: dict[str, int] = field(default_factory=dict)


def _value(v: object) -> str:
    if isinstance(v, Decimal):
        return format(v, "f")
    return repr(v)


def dump_tables(engine: Engine) -> dict[str, list[tuple]]:
    out = {}
    with engine.connect() as conn:
        for name, table in metadata.tables.items():
            cols = [c for c in table.columns if c.name not in VOLATILE | SURROGATE]
            out[name] = sorted(tuple(map(_value, r)) for r in conn.execute(select(*cols)))
    return out


def run_pipeline(
    drop: demo.DemoDrop, url: str, folder: Path, validations: SharedValidations
) -> Run:
    """Every bank's inbox through ``process_bank``, then the marts as of 2023-06-15."""
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(folder), "GOVBANK_WAREHOUSE_URL": url})
    demo.write_drop(drop, settings.landing_dir)
    ctx = build_context(settings, PSEUDONYM_KEY)
    ctx.validator_factory = lambda: validations
    spent = validations.seconds
    started = time.perf_counter()
    outcomes = []
    for bank in drop.banks:
        for o in process_bank(ctx, bank):
            outcomes.append((o.file_name, o.status, o.rows_total, o.rows_loaded, o.rows_rejected))
    seconds = time.perf_counter() - started
    build_marts(settings, AS_OF)
    dump = dump_tables(ctx.engine)
    with ctx.engine.connect() as conn:
        kpi = {r.metric: Decimal(r.value) for r in conn.execute(select(mart_kpi))}
    ctx.engine.dispose()
    rows = {k: len(v) for k, v in dump.items()}
    return Run(dump, kpi, outcomes, seconds, validations.seconds - spent, rows)


def scaled_drop(seed: int, copies: int) -> demo.DemoDrop:
    """A larger drop from the demo's: every outlet file as is, then per bank two ELIC
    files on its last day holding ``copies`` copies (new ``biz_id``s) of every record it
    ever sent, first the first versions, then the last ones (so every row is upserted)."""
    base = demo.build_demo(seed)
    contracts = load_contracts(DEFAULT_CONTRACTS_DIR)
    banks = {}
    for code, bank in base.banks.items():
        plan = demo._PLAN_BY_CODE[code]
        files = [f for f in bank.files if f.dataset is Dataset.OUTLET]
        last_day = max(f.business_date for f in bank.files)
        first: dict[str, dict] = {}
        last: dict[str, dict] = {}
        for r in bank.elic_records:
            first.setdefault(r["biz_id"], r)
            last[r["biz_id"]] = r
        for seq, versions in ((0, first), (2, last)):
            rows = [
                {**r, "biz_id": f"{r['biz_id']}-{k:03d}"}
                for k in range(copies)
                for r in versions.values()
            ]
            files.append(
                demo._planned(
                    plan,
                    contracts[code],
                    Dataset.ELIC,
                    last_day,
                    seq,
                    rows,
                    [None] * len(rows),
                    seed,
                )
            )
        banks[code] = demo.BankDrop(code, bank.bank_name, {}, (), tuple(files))
    return demo.DemoDrop(seed, base.as_of, banks)


def _both(
    drop: demo.DemoDrop, pg_url: str, folder: Path, validations: SharedValidations
) -> dict[str, Run]:
    runs = {
        "sqlite": run_pipeline(
            drop, _migrated(sqlite_url(folder / "sqlite")), folder / "sqlite", validations
        )
    }
    fresh_pg(pg_url).dispose()
    runs["postgresql"] = run_pipeline(drop, pg_url, folder / "postgresql", validations)
    for name, run in runs.items():
        print(
            f"\n{name}: {len(run.outcomes)} files, {run.rows['fact_elicense_biz']} facts, "
            f"{run.rows['dim_outlet']} outlet versions: process_bank {run.seconds:.1f} s, of which "
            f"validation {run.validation_seconds:.1f} s"
        )
    return runs


def _migrated(url: str) -> str:
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def validations(validator: Any) -> SharedValidations:
    return SharedValidations(validator)


@pytest.fixture(scope="module")
def demo_runs(
    pg_url: str, validations: SharedValidations, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Run]:
    return _both(demo.build_demo(), pg_url, tmp_path_factory.mktemp("demo"), validations)


@pytest.fixture(scope="module")
def larger_runs(
    pg_url: str, validations: SharedValidations, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Run]:
    return _both(
        scaled_drop(demo.DEFAULT_SEED, 12), pg_url, tmp_path_factory.mktemp("larger"), validations
    )


def _assert_same(runs: dict[str, Run]) -> None:
    lite, pg = runs["sqlite"], runs["postgresql"]
    assert pg.outcomes == lite.outcomes
    for table in metadata.tables:
        assert pg.dump[table] == lite.dump[table], f"{table} differs between PostgreSQL and SQLite"


def test_demo_gives_the_same_rows_on_postgres_and_sqlite(demo_runs: dict[str, Run]) -> None:
    _assert_same(demo_runs)
    assert demo_runs["postgresql"].kpi == demo.EXPECTED_KPI
    assert demo_runs["postgresql"].rows["etl_reject"] > 0
    assert (
        demo_runs["postgresql"].dump["stg_outlet"]
        == demo_runs["postgresql"].dump["stg_elicense_biz"]
        == []
    )


def test_larger_set_gives_the_same_rows_on_postgres_and_sqlite(
    larger_runs: dict[str, Run], demo_runs: dict[str, Run]
) -> None:
    _assert_same(larger_runs)
    rows = larger_runs["postgresql"].rows
    assert rows["fact_elicense_biz"] > 10 * demo_runs["postgresql"].rows["fact_elicense_biz"]
    assert {o[1] for o in larger_runs["postgresql"].outcomes} >= {"accepted", "partially_accepted"}


# --- roles ------------------------------------------------------------------------------------


@dataclass
class Login:
    name: str
    password: str
    url: str

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False),
            autocommit=True,
        )


@pytest.fixture(scope="module")
def logins(pg_url: str) -> Iterator[dict[str, Login]]:
    """Throwaway login roles, members of the group roles, dropped afterwards."""
    engine = fresh_pg(pg_url)
    tag = secrets.token_hex(4)
    made = {}
    try:
        with engine.begin() as conn:
            for group in (WRITER_ROLE, DASHBOARD_ROLE):
                name, password = (
                    f"gbt_{group.removeprefix('govbank_')}_{tag}",
                    secrets.token_hex(12),
                )
                conn.exec_driver_sql(
                    f'CREATE ROLE "{name}" LOGIN PASSWORD \'{password}\' IN ROLE "{group}"'
                )
                url = make_url(pg_url).set(username=name, password=password)
                made[group] = Login(name, password, url.render_as_string(hide_password=False))
            # created by the owner after the migrations: nobody granted it explicitly
            conn.exec_driver_sql(f'CREATE TABLE "{PG_SCHEMA}".later_table (x int)')
        yield made
    finally:
        with engine.begin() as conn:
            for login in made.values():
                conn.exec_driver_sql(f'DROP OWNED BY "{login.name}"')
                conn.exec_driver_sql(f'DROP ROLE "{login.name}"')
        engine.dispose()


def _all_tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (PG_SCHEMA,))
    return {r[0] for r in rows}


def test_dashboard_reads_marts_and_dimensions_only(pg_url: str, logins: dict[str, Login]) -> None:
    dash = logins[DASHBOARD_ROLE]
    with dash.connect() as conn:
        tables = _all_tables(conn)
        assert set(DASHBOARD_TABLES) < tables
        assert {"fact_elicense_biz", "etl_reject", "etl_file", "stg_outlet", "later_table"} < tables
        for table in sorted(tables):
            query = f'SELECT * FROM "{PG_SCHEMA}"."{table}" LIMIT 1'
            if table in DASHBOARD_TABLES:
                conn.execute(query).fetchall()
            else:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(query)
        for statement in (
            "INSERT INTO {} VALUES (DATE '2023-06-15', 'x', 1)",
            "UPDATE {} SET value = 0",
            "DELETE FROM {}",
            "TRUNCATE {}",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement.format(f'"{PG_SCHEMA}".mart_kpi'))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'CREATE TABLE "{PG_SCHEMA}".mine (x int)')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SELECT last_value FROM "{PG_SCHEMA}".etl_file_file_id_seq')
    # what the role can read is exactly DASHBOARD_TABLES (the migration froze its own list),
    # and docker/grant_dashboard.py, run for it as airflow-init does, changes nothing
    assert _readable_by(logins[WRITER_ROLE], DASHBOARD_ROLE) == set(DASHBOARD_TABLES)
    _grant_dashboard_module().grant_dashboard(pg_url, DASHBOARD_ROLE)
    assert _readable_by(logins[WRITER_ROLE], DASHBOARD_ROLE) == set(DASHBOARD_TABLES)


def _readable_by(login: Login, role: str) -> set[str]:
    with login.connect() as conn:
        return {
            t
            for t in _all_tables(conn)
            if conn.execute(
                "SELECT has_table_privilege(%s, %s, 'SELECT')", (role, f"{PG_SCHEMA}.{t}")
            ).fetchone()[0]
        }


def _grant_dashboard_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("grant_dashboard", GRANT_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_grant_script_takes_the_login_from_the_connection() -> None:
    login = _grant_dashboard_module().dashboard_login
    assert login({}) == DASHBOARD_ROLE
    assert (
        login({"AIRFLOW_CONN_GOVBANK_DASHBOARD": '{"conn_type": "postgres", "login": "bi"}'})
        == "bi"
    )
    assert login({"AIRFLOW_CONN_GOVBANK_DASHBOARD": "postgres://bi2:pw@db:5432/govbank"}) == "bi2"
    assert login({"GOVBANK_DASHBOARD_ROLE": "bi3", "AIRFLOW_CONN_GOVBANK_DASHBOARD": "x"}) == "bi3"


def test_writer_has_dml_but_no_ddl(logins: dict[str, Login]) -> None:
    with logins[WRITER_ROLE].connect() as conn:
        s = PG_SCHEMA
        conn.execute(f"INSERT INTO {s}.dim_bank VALUES ('TSTW', '测试银行', NULL)")
        conn.execute(f"UPDATE {s}.dim_bank SET bank_name = '测试' WHERE bank_code = 'TSTW'")
        file_id = conn.execute(  # a serial column: the sequence is usable
            f"INSERT INTO {s}.etl_file (file_name, bank_code, sha256, size_bytes, received_at, status)"
            " VALUES ('f', 'TSTW', 'x', 1, now(), 'processing') RETURNING file_id"
        ).fetchone()[0]
        conn.execute(f"DELETE FROM {s}.etl_file WHERE file_id = %s", (file_id,))
        conn.execute(f"DELETE FROM {s}.dim_bank WHERE bank_code = 'TSTW'")
        conn.execute(f"INSERT INTO {s}.later_table VALUES (1)")  # default privileges
        conn.execute(f"SELECT count(*) FROM {s}.later_table").fetchone()
        for ddl in (
            f"CREATE TABLE {s}.mine (x int)",
            f"DROP TABLE {s}.mart_kpi",
            f"TRUNCATE {s}.mart_kpi",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(ddl)


# --- racing loads -----------------------------------------------------------------------------


def _race(url: str, work, n: int = 2) -> list[BaseException | None]:  # type: ignore[no-untyped-def]
    """``work(conn, i, barrier)`` in ``n`` threads, each on its own connection and transaction."""
    barrier = threading.Barrier(n, timeout=60)
    errors: list[BaseException | None] = [None] * n
    engine = make_engine(url)

    def one(i: int) -> None:
        try:
            with engine.begin() as conn:
                work(conn, i, barrier)
        except BaseException as exc:  # reported to the test
            errors[i] = exc
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    engine.dispose()
    return errors


def test_racing_loads_of_the_same_data_load_it_once(logins: dict[str, Login], pg_url: str) -> None:
    """Two loads of the same staged rows, as the writer role, each COPYing into its
    temporary staging and then merging at the same moment: no row twice, no error."""
    url = logins[WRITER_ROLE].url
    fresh_pg(pg_url).dispose()
    engine = make_engine(url)
    with engine.begin() as conn:
        sync_banks(conn, load_contracts(DEFAULT_CONTRACTS_DIR).values())
    engine.dispose()
    day = dt.date(2023, 6, 1)
    outlets = [
        {
            "bank_code": "WZB",
            "outlet_code": f"R{i:04d}",
            "outlet_name": f"网点{i}",
            "outlet_type": "普通网点",
            "town_code": "330304001000",
            "community": None,
            "address": None,
            "longitude": None,
            "latitude": None,
            "service_items": None,
            "opened_on": None,
            "status": "正常",
        }
        for i in range(300)
    ]
    loaded_at = dt.datetime(2023, 6, 1, 18, tzinfo=dt.UTC)
    facts = [
        {
            "bank_code": "WZB",
            "biz_id": f"RB{i:05d}",
            "biz_type": "一照贷款",
            "uscc": "91350100M000100Y43",
            "enterprise_name": f"企业{i}",
            "outlet_code": "R0001",
            "biz_date": day,
            "credit_amount_yuan": Decimal("1000.10"),
            "drawn_amount_yuan": Decimal(i),
            "loan_product": None,
            "status": "有效",
            "legal_rep_key": None,
            "source_file": "ELIC_WZB_20230601.txt",
            "source_line": i + 2,
            "loaded_at": loaded_at,
        }
        for i in range(3000)
    ]

    from tests.unit.test_load import _staged

    def load_outlets(conn, i, barrier) -> None:  # type: ignore[no-untyped-def]
        tmp = _staged(conn, stg_outlet, tuple(outlets[0]), outlets, f"race{i}")
        barrier.wait()
        merge_outlets(conn, tmp, "WZB", day, "OUTLET_WZB_20230601.txt")

    def load_facts(conn, i, barrier) -> None:  # type: ignore[no-untyped-def]
        tmp = _staged(conn, stg_elicense_biz, tuple(facts[0]), facts, f"race{i}")
        barrier.wait()
        merge_elicense_biz(conn, tmp)  # the banks found in staging, each locked

    assert _race(url, load_outlets) == [None, None]
    assert _race(url, load_facts) == [None, None]
    engine = make_engine(pg_url)
    assert _count(engine, dim_outlet) == _count(engine, dim_outlet, dim_outlet.c.is_current)
    assert _count(engine, dim_outlet) == len(outlets)
    assert _count(engine, fact_elicense_biz) == len(facts)
    assert _count(engine, stg_outlet) == _count(engine, stg_elicense_biz) == 0
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(fact_elicense_biz.c.drawn_amount_yuan))).scalar_one()
    assert total == sum(Decimal(i) for i in range(len(facts)))

    # and without our lock the keys still hold: a second insert of a key fails
    def insert_same_key(conn, i, barrier) -> None:  # type: ignore[no-untyped-def]
        barrier.wait()
        conn.execute(fact_elicense_biz.insert().values({**facts[0], "biz_id": "RACE-KEY"}))

    errors = _race(url, insert_same_key)
    assert sorted(type(e).__name__ for e in errors) == ["IntegrityError", "NoneType"]
    assert any(isinstance(e, IntegrityError) for e in errors)
    assert _count(engine, fact_elicense_biz, fact_elicense_biz.c.biz_id == "RACE-KEY") == 1
    engine.dispose()


def _count(engine: Engine, table, *where) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
