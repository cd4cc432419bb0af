"""Set-based, transactional, idempotent loads: stage a file's rows, then merge.

Every statement is SQLAlchemy Core with bound parameters. The caller owns the
transaction, so a file's staging, merge, rejects and ``etl_file`` update commit or
roll back together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Connection,
    and_,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from govbank.contracts import BankContract
from govbank.schema import (
    dim_bank,
    dim_outlet,
    fact_elicense_biz,
    stg_elicense_biz,
    stg_outlet,
)

OUTLET_ATTRS = (
    "outlet_name",
    "outlet_type",
    "town_code",
    "community",
    "address",
    "longitude",
    "latitude",
    "service_items",
    "opened_on",
    "status",
)
BIZ_COLUMNS = tuple(c.name for c in fact_elicense_biz.columns)


def dialect_insert(conn: Connection, table):  # type: ignore[no-untyped-def]
    """INSERT with ON CONFLICT support for the connection's dialect."""
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def sync_banks(conn: Connection, contracts: Iterable[BankContract]) -> None:
    rows = [
        {"bank_code": c.bank_code, "bank_name": c.bank_name, "joined_on": c.joined_on}
        for c in contracts
    ]
    if not rows:
        return
    stmt = dialect_insert(conn, dim_bank)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["bank_code"],
            set_={"bank_name": stmt.excluded.bank_name, "joined_on": stmt.excluded.joined_on},
        ),
        rows,
    )


def known_outlets(conn: Connection, bank_code: str) -> set[str]:
    """Every outlet the bank ever sent (closed ones too: old business refers to them)."""
    return set(
        conn.execute(
            select(dim_outlet.c.outlet_code).where(dim_outlet.c.bank_code == bank_code).distinct()
        ).scalars()
    )


def stage(conn: Connection, table, load_id: str, rows: Sequence[dict]) -> None:  # type: ignore[no-untyped-def]
    """Put a chunk's rows into a staging table, tagged with ``load_id``.

    PostgreSQL gets them through ``COPY ... FROM STDIN`` on the same DBAPI connection,
    so they share the caller's transaction; SQLite gets one ``executemany``.
    """
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        copy_rows(conn, table, load_id, rows)
    else:
        conn.execute(insert(table), [{"load_id": load_id, **r} for r in rows])


def copy_rows(conn: Connection, table, load_id: str, rows: Sequence[dict]) -> None:  # type: ignore[no-untyped-def]
    """``COPY`` rows into ``table`` (psycopg 3), inside the SQLAlchemy connection's transaction.

    The columns are the first row's keys, as with ``executemany``; a later row without
    one of them raises ``KeyError`` instead of loading a silent NULL.
    """
    import psycopg
    from psycopg import sql

    names = [n for n in rows[0] if n != "load_id"]
    unknown = set(names) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(sorted(unknown))}")
    # the raw cursor does not see SQLAlchemy's schema_translate_map: qualify by hand
    schema = table.schema or conn.get_execution_options().get("schema_translate_map", {}).get(None)
    target = sql.Identifier(schema, table.name) if schema else sql.Identifier(table.name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(sql.Identifier(n) for n in ("load_id", *names))
    )
    driver = conn.connection.driver_connection
    try:
        with driver.cursor() as cur, cur.copy(statement) as copy:
            for r in rows:
                copy.write_row((load_id, *(r[n] for n in names)))
    except psycopg.Error as err:
        # the raw cursor bypasses SQLAlchemy: raise what SQLAlchemy would raise, so a
        # cancelled or cut COPY is an OperationalError (the pipeline's TransientError)
        raise DBAPIError.instance(
            statement.as_string(driver), None, err, psycopg.Error, dialect=conn.dialect
        ) from err


def lock_merge(conn: Connection, table_name: str, bank_codes: Iterable[str]) -> None:
    """Serialise merges of one bank into one table across concurrent loads (PostgreSQL).

    A transaction-scoped advisory lock: a second load of the same bank waits for the
    first to commit, then merges against what it committed, instead of failing on a
    key or deadlocking. Readers never wait for it. SQLite serialises writers anyway.
    """
    if conn.dialect.name != "postgresql":
        return
    for code in sorted(set(bank_codes)):
        digest = hashlib.sha256(f"govbank:{table_name}:{code}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        conn.execute(select(func.pg_advisory_xact_lock(literal(key, BigInteger))))


def _differs(a, b):  # type: ignore[no-untyped-def]
    return or_(*(a.c[n].is_distinct_from(b.c[n]) for n in OUTLET_ATTRS))


def merge_outlets(
    conn: Connection, load_id: str, bank_code: str, snapshot_date: dt.date, source_file: str,
    keep: Iterable[str] = (),
) -> None:
    """Type-2 merge of a full snapshot into ``dim_outlet``.

    A changed outlet gets its current version closed and a new one opened on the
    snapshot date; an outlet the snapshot leaves out is closed and gets a 撤销 version.
    Versions opened on the same date (a second file of the day) are corrected in place.
    Outlets in ``keep`` (sent in the snapshot but refused) stay as they are.
    """
    lock_merge(conn, dim_outlet.name, [bank_code])
    d, s = dim_outlet, stg_outlet.alias("s")
    staged = select(s).where(s.c.load_id == load_id, s.c.outlet_code == d.c.outlet_code)
    current_of_bank = and_(d.c.bank_code == bank_code, d.c.is_current == true())
    kept = sorted(set(keep))
    in_snapshot = or_(exists(staged), d.c.outlet_code.in_(kept)) if kept else exists(staged)

    # same-day versions: correct in place
    for name in OUTLET_ATTRS:
        conn.execute(
            update(d)
            .where(current_of_bank, d.c.valid_from == snapshot_date, exists(staged))
            .values({name: staged.with_only_columns(s.c[name]).scalar_subquery()})
        )
    conn.execute(
        update(d)
        .where(current_of_bank, d.c.valid_from == snapshot_date, not_(in_snapshot))
        .values(status="撤销", source_file=source_file)
    )
    # changed or vanished: close the current version
    changed = exists(staged.where(_differs(s, d)))
    vanished = and_(not_(in_snapshot), d.c.status != "撤销")
    closing = and_(current_of_bank, d.c.valid_from < snapshot_date, or_(changed, vanished))
    vanished_codes = [
        r.outlet_code
        for r in conn.execute(
            select(d.c.outlet_code).where(current_of_bank, d.c.valid_from < snapshot_date, vanished)
        )
    ]
    conn.execute(
        update(d).where(closing).values(is_current=false(), valid_to=snapshot_date)
    )
    # vanished outlets: a 撤销 version from the snapshot date
    if vanished_codes:
        prev = dim_outlet.alias("prev")
        conn.execute(
            insert(d).from_select(
                ["bank_code", "outlet_code", *OUTLET_ATTRS, "valid_from", "valid_to", "is_current", "source_file"],
                select(
                    prev.c.bank_code,
                    prev.c.outlet_code,
                    *(literal("撤销").label("status") if n == "status" else prev.c[n] for n in OUTLET_ATTRS),
                    literal(snapshot_date).label("valid_from"),
                    literal(None).label("valid_to"),
                    true().label("is_current"),
                    literal(source_file).label("source_file"),
                ).where(
                    prev.c.bank_code == bank_code,
                    prev.c.outlet_code.in_(vanished_codes),
                    prev.c.valid_to == snapshot_date,
                ),
            )
        )
    # new or changed outlets: open a current version
    s2 = stg_outlet.alias("s2")
    has_current = exists(
        select(d.c.outlet_key).where(
            d.c.bank_code == bank_code, d.c.outlet_code == s2.c.outlet_code, d.c.is_current == true()
        )
    )
    conn.execute(
        insert(d).from_select(
            ["bank_code", "outlet_code", *OUTLET_ATTRS, "valid_from", "valid_to", "is_current", "source_file"],
            select(
                s2.c.bank_code,
                s2.c.outlet_code,
                *(s2.c[n] for n in OUTLET_ATTRS),
                literal(snapshot_date).label("valid_from"),
                literal(None).label("valid_to"),
                true().label("is_current"),
                literal(source_file).label("source_file"),
            ).where(s2.c.load_id == load_id, not_(has_current)),
        )
    )
    conn.execute(delete(stg_outlet).where(stg_outlet.c.load_id == load_id))


def merge_elicense_biz(conn: Connection, load_id: str) -> None:
    """Upsert: the latest file's version of each (bank_code, biz_id) wins."""
    s = stg_elicense_biz
    if conn.dialect.name == "postgresql":
        banks = conn.execute(select(s.c.bank_code).where(s.c.load_id == load_id).distinct())
        lock_merge(conn, fact_elicense_biz.name, banks.scalars())
    stmt = dialect_insert(conn, fact_elicense_biz).from_select(
        list(BIZ_COLUMNS), select(*(s.c[n] for n in BIZ_COLUMNS)).where(s.c.load_id == load_id)
    )
    keys = ("bank_code", "biz_id")
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={n: stmt.excluded[n] for n in BIZ_COLUMNS if n not in keys},
    )
    conn.execute(stmt)
    conn.execute(delete(s).where(s.c.load_id == load_id))
