"""Set-based, transactional, idempotent loads: stage a file's rows, then merge.

Every statement is SQLAlchemy Core with bound parameters. The caller owns the
transaction, so a file's staging, merge, rejects and ``etl_file`` update commit or
roll back together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    any_,
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
from sqlalchemy.exc import DBAPIError, IntegrityError

from govbank.config.contracts import BankContract
from govbank.warehouse.schema import (
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
BIZ_KEYS = ("bank_code", "biz_id")
# what makes a re-sent record news; provenance (file, line, time) alone does not
BIZ_VALUES = tuple(
    n for n in BIZ_COLUMNS if n not in (*BIZ_KEYS, "source_file", "source_line", "loaded_at")
)
COPY_BLOCK = 1 << 20

if TYPE_CHECKING:
    import pyarrow as pa


def create_staging(conn: Connection, base: Table, columns: Sequence[str], tag: str) -> Table:
    """A temporary staging table of ``base``'s ``columns`` for one load in this transaction.

    Private to the connection, never logged, nothing to clean up after a crash: PostgreSQL
    drops it at commit or rollback; on SQLite :func:`drop_staging` drops it. No index and
    no ``load_id``, so COPY and the merge touch nothing but the rows.
    """
    pg = conn.dialect.name == "postgresql"
    table = Table(
        f"tmp_{base.name}_{tag}",
        MetaData(),
        *(Column(n, base.c[n].type) for n in columns),
        schema="pg_temp" if pg else "temp",
        prefixes=["TEMPORARY"],
        **({"postgresql_on_commit": "DROP"} if pg else {}),
    )
    table.create(conn)
    return table


def create_key_table(conn: Connection, tag: str) -> Table:
    """Every row's key and line, for duplicates across the whole file in flat memory."""
    base = Table("keys", MetaData(), Column("key", Text), Column("line", Integer))
    return create_staging(conn, base, ("key", "line"), tag)


def drop_staging(conn: Connection, *tables: Table) -> None:
    if conn.dialect.name != "postgresql":  # PostgreSQL drops them at the end of the transaction
        for table in tables:
            table.drop(conn, checkfirst=True)


def duplicate_keys(conn: Connection, keys: Table) -> list[tuple[int, str]]:
    """(line, key) of every row whose key occurs more than once in the file."""
    dup = select(keys.c.key).group_by(keys.c.key).having(func.count() > 1).subquery()
    rows = conn.execute(
        select(keys.c.line, keys.c.key).join(dup, dup.c.key == keys.c.key).order_by(keys.c.line)
    )
    return [(r.line, r.key) for r in rows]


def duplicate_keys_of(conn: Connection, keys: Table, lines: Sequence[int]) -> list[tuple[int, str]]:
    """:func:`duplicate_keys` when every repeated key has an occurrence on one of ``lines``
    (PostgreSQL): two scans of the key table instead of grouping all of it."""
    from sqlalchemy import ARRAY, bindparam

    if not lines:
        return []
    on_lines = select(func.unnest(bindparam("lines", list(lines), type_=ARRAY(Integer))))
    candidates = select(keys.c.key).where(keys.c.line.in_(on_lines))
    rows = conn.execute(
        select(keys.c.line, keys.c.key).where(keys.c.key.in_(candidates)).order_by(keys.c.line)
    ).all()
    seen: dict[str, int] = {}
    for r in rows:
        seen[r.key] = seen.get(r.key, 0) + 1
    return [(r.line, r.key) for r in rows if seen[r.key] > 1]


def drop_duplicated(conn: Connection, staging: Table, key_column: str, keys: Table) -> int:
    """Remove staged rows whose key the file holds twice; how many went."""
    dup = select(keys.c.key).group_by(keys.c.key).having(func.count() > 1)
    return conn.execute(delete(staging).where(staging.c[key_column].in_(dup))).rowcount


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


def stage(conn: Connection, table, load_id: str | None, rows: Sequence[dict] | pa.Table) -> None:  # type: ignore[no-untyped-def]
    """Put a chunk's rows into a staging table, tagged with ``load_id`` (if it has one).

    PostgreSQL gets them through ``COPY ... FROM STDIN`` on the same DBAPI connection,
    so they share the caller's transaction; SQLite gets one ``executemany``. ``rows``
    may be an Arrow table (the pipeline's columns): PostgreSQL then gets it as CSV
    written by Arrow, a few MiB per write, never a Python object per value.
    """
    if not len(rows):
        return
    if not isinstance(rows, Sequence):
        if conn.dialect.name == "postgresql":
            copy_arrow(conn, table, load_id, rows)
            return
        rows = _arrow_rows(table, rows)
    if conn.dialect.name == "postgresql":
        copy_rows(conn, table, load_id, rows)
    else:
        tag = {"load_id": load_id} if load_id is not None else {}
        conn.execute(insert(table), [{**tag, **r} for r in rows])


def _arrow_rows(table, data: pa.Table) -> list[dict]:  # type: ignore[no-untyped-def]
    """Arrow rows as the dicts ``executemany`` takes; decimal text becomes ``Decimal``."""
    from decimal import Decimal

    from sqlalchemy import Numeric

    rows = data.to_pylist()
    numeric = [n for n in data.column_names if isinstance(table.c[n].type, Numeric)]
    for r in rows:
        for n in numeric:
            if r[n] is not None:
                r[n] = Decimal(r[n])
    return rows


def _target(conn: Connection, table):  # type: ignore[no-untyped-def]
    from psycopg import sql

    # the raw cursor does not see SQLAlchemy's schema_translate_map: qualify by hand
    schema = table.schema or conn.get_execution_options().get("schema_translate_map", {}).get(None)
    return sql.Identifier(schema, table.name) if schema else sql.Identifier(table.name)


def _driver_execute(conn: Connection, statement: Any) -> None:
    """A psycopg ``sql.Composed`` statement in the caller's transaction; errors as SQLAlchemy's."""
    import psycopg

    driver = conn.connection.driver_connection
    try:
        with driver.cursor() as cur:
            cur.execute(statement)
    except psycopg.Error as err:
        raise DBAPIError.instance(
            statement.as_string(driver), None, err, psycopg.Error, dialect=conn.dialect
        ) from err


def copy_arrow(conn: Connection, table, load_id: str | None, data: pa.Table) -> None:  # type: ignore[no-untyped-def]
    """``COPY ... (FORMAT csv)`` of an Arrow table, in the caller's transaction."""
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from psycopg import sql

    if load_id is not None:
        data = data.append_column("load_id", pa.repeat(pa.scalar(load_id), len(data)))
    unknown = set(data.column_names) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(sorted(unknown))}")
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        _target(conn, table), sql.SQL(", ").join(sql.Identifier(n) for n in data.column_names)
    )
    buf = io.BytesIO()
    pacsv.write_csv(data, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    view = buf.getbuffer()
    driver = conn.connection.driver_connection
    try:
        with driver.cursor() as cur, cur.copy(statement) as copy:
            for start in range(0, len(view), COPY_BLOCK):
                copy.write(view[start:start + COPY_BLOCK])
    except psycopg.Error as err:
        raise DBAPIError.instance(
            statement.as_string(driver), None, err, psycopg.Error, dialect=conn.dialect
        ) from err
    finally:
        view.release()


def copy_rows(conn: Connection, table, load_id: str | None, rows: Sequence[dict]) -> None:  # type: ignore[no-untyped-def]
    """``COPY`` rows into ``table`` (psycopg 3), inside the SQLAlchemy connection's transaction.

    The columns are the first row's keys, as with ``executemany``; a later row without
    one of them raises ``KeyError`` instead of loading a silent NULL.
    """
    import psycopg
    from psycopg import sql

    names = [n for n in rows[0] if n != "load_id"]
    head = ("load_id",) if load_id is not None else ()
    unknown = set(names) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(sorted(unknown))}")
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        _target(conn, table), sql.SQL(", ").join(sql.Identifier(n) for n in (*head, *names))
    )
    driver = conn.connection.driver_connection
    try:
        with driver.cursor() as cur, cur.copy(statement) as copy:
            for r in rows:
                copy.write_row((*((load_id,) if head else ()), *(r[n] for n in names)))
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
    conn: Connection, load_id: str | None, bank_code: str, snapshot_date: dt.date, source_file: str,
    keep: Iterable[str] = (), *, staging: Table = stg_outlet,
) -> None:
    """Type-2 merge of a full snapshot into ``dim_outlet``.

    A changed outlet gets its current version closed and a new one opened on the
    snapshot date; an outlet the snapshot leaves out is closed and gets a 撤销 version.
    Versions opened on the same date (a second file of the day) are corrected in place.
    Outlets in ``keep`` (sent in the snapshot but refused) stay as they are.
    """
    lock_merge(conn, dim_outlet.name, [bank_code])
    d, s = dim_outlet, staging.alias("s")
    mine = s.c.load_id == load_id if load_id is not None else true()
    staged = select(s).where(mine, s.c.outlet_code == d.c.outlet_code)
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
    s2 = staging.alias("s2")
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
            ).where(s2.c.load_id == load_id if load_id is not None else true(), not_(has_current)),
        )
    )
    if load_id is not None:
        conn.execute(delete(staging).where(staging.c.load_id == load_id))


# savepoints one load may take for early inserts: PostgreSQL keeps 64 subtransaction
# ids per backend in shared memory; past that, every reader's snapshot gets slower.
# A refused batch's savepoint stays open after ROLLBACK TO (every later write of the
# file runs inside it), as does the file's: 48 + 1 + 1 stays under 64
EARLY_SAVEPOINTS = 48
UNIQUE_VIOLATION = "23505"


class EarlyInsert:
    """Inserts ELIC rows into ``fact_elicense_biz`` while the rest of the file is checked.

    The single merge at the end of a file is PostgreSQL's longest step, and the client
    sits idle through it. So each batch's rows go into the fact table as soon as they
    are staged, on the server's core, while GX checks the next batch; only rows whose
    key the table already holds (an update, or a key seen earlier in the file) join
    ``staging`` for the merge at the end.

    A batch is first tried as one plain INSERT under a savepoint: the cheapest way in,
    and the key index refuses it if any key is already there. After the first refusal
    (a file of updates) or :data:`EARLY_SAVEPOINTS` savepoints, each batch's rows of
    known keys (found through the key index) and keys repeated within the batch are first
    moved to ``staging``, and the rest goes in by a plain INSERT that cannot conflict:
    nobody else adds this bank's keys meanwhile. That costs about
    three times the plain INSERT, paid while GX works rather than after it; ``INSERT ...
    ON CONFLICT DO NOTHING`` was slower still (1.5-2.2 s against 0.7 + 0.8 s a batch of
    120k rows). What stays provisional is undone before commit by
    :meth:`undo_duplicated`: a key the file holds twice is refused in every occurrence.
    Caller: one thread at a time on ``conn``, in the file's transaction, under the
    bank's merge lock.
    """

    def __init__(self, conn: Connection, staging: Table, tag: str, constants: Mapping[str, Any]) -> None:
        self.staging = staging
        self.batch = create_staging(conn, stg_elicense_biz, [c.name for c in staging.columns], f"{tag}_early")
        self.constants = dict(constants)
        self.savepoints = 0  # plain attempts (each under a savepoint)
        self.refused = 0  # plain attempts the key index refused (then known keys are sorted out first)
        self.rows = 0  # rows inserted early
        self.staged = 0  # rows of known keys, left to the merge at the end

    def flush(self, conn: Connection) -> None:
        """Insert the batch, its rows of known keys staged for the merge; the batch table is emptied."""
        b, f = self.batch, fact_elicense_biz
        names = [c.name for c in self.staging.columns]
        source = select(
            *(literal(self.constants[n], f.c[n].type).label(n) if n in self.constants else b.c[n]
              for n in BIZ_COLUMNS)
        )
        insert_all = insert(f).from_select(list(BIZ_COLUMNS), source)
        if not self.refused and self.savepoints < EARLY_SAVEPOINTS:
            self.savepoints += 1
            try:
                with conn.begin_nested():
                    self.rows += conn.execute(insert_all.execution_options(preserve_rowcount=True)).rowcount
            except IntegrityError as err:
                if getattr(err.orig, "sqlstate", None) != UNIQUE_VIOLATION:
                    raise
                self.refused += 1
            else:
                self._empty(conn)
                return
        # the batch's rows of known keys move to staging, as do keys repeated within the
        # batch (GX's suite refuses those, but the suite is configuration); the rest is
        # new: a plain INSERT
        known = select(f.c.biz_id).where(_among_keys(self.constants["bank_code"], b))
        twice = select(b.c.biz_id).group_by(b.c.biz_id).having(func.count() > 1)
        moved = delete(b).where(or_(b.c.biz_id.in_(known), b.c.biz_id.in_(twice)))
        moved = moved.returning(*(b.c[n] for n in names)).cte("moved")
        stmt = insert(self.staging).from_select(names, select(*(moved.c[n] for n in names))).add_cte(moved)
        self.staged += conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount
        self.rows += conn.execute(insert_all.execution_options(preserve_rowcount=True)).rowcount
        self._empty(conn)

    def _empty(self, conn: Connection) -> None:
        from psycopg import sql

        _driver_execute(conn, sql.SQL("TRUNCATE {}").format(_target(conn, self.batch)))  # not in Core

    @property
    def complete(self) -> bool:
        """Every good row went in early: the key index has seen them all at once.

        Then no key repeats among them, and a key the file holds twice has at least one
        occurrence among the refused rows (:func:`duplicate_keys_of`). Valid once the
        writing thread is done.
        """
        return self.staged == 0

    def undo_duplicated(self, conn: Connection, keys: Iterable[str]) -> int:
        """Delete the early rows of ``keys`` (those the file holds more than once); how many went.

        Early rows carry this load's file name and time; their keys were not in the
        table before (the plain INSERT would have failed), so deleting them restores it.
        The keys go as one array compared with ``= ANY``: an index condition, or a hashed
        filter. Any join of the keys (a grouping subquery, ``IN (unnest(...))``) met the
        statistics of the table before this file — a few rows of the bank — and was
        planned as a nested loop comparing every early row with every key: 265 s for
        20k keys in a 200k-row file.
        """
        from sqlalchemy import ARRAY, bindparam

        wanted = sorted(set(keys))
        if not self.rows or not wanted:
            return 0
        f, c = fact_elicense_biz, self.constants
        return conn.execute(
            delete(f).where(
                f.c.bank_code == c["bank_code"], f.c.source_file == c["source_file"],
                f.c.loaded_at == c["loaded_at"],
                f.c.biz_id == any_(bindparam("keys", wanted, type_=ARRAY(Text))),
            )
        ).rowcount


def _among_keys(bank_code: Any, rows: Table):  # type: ignore[no-untyped-def]
    """A condition on ``fact_elicense_biz``: the bank's rows whose key ``rows`` holds.

    ``biz_id = ANY(ARRAY(...))`` is an index condition whatever the statistics say: a
    join alone meets the statistics of the table before this file (a few rows of the
    bank, when a million just went in) and is planned as a scan of all the bank's rows
    (9 s of a 100k-row update into 1.9M rows, against 2 s).
    """
    f = fact_elicense_biz
    return and_(f.c.bank_code == bank_code, f.c.biz_id == any_(func.array(select(rows.c.biz_id).scalar_subquery())))


def merge_elicense_biz(
    conn: Connection, load_id: str | None = None, *, staging: Table = stg_elicense_biz,
    constants: Mapping[str, Any] | None = None,
) -> None:
    """Upsert: the latest file's version of each (bank_code, biz_id) wins.

    Rows come from ``staging`` (those of ``load_id`` in the shared staging table, or a
    whole temporary one); ``constants`` fills columns the file has one value for (bank,
    file name, load time). A re-sent record whose values did not change is left alone:
    no new row version, no index churn.
    """
    s = staging
    constants = dict(constants or {})
    if conn.dialect.name == "postgresql":
        if "bank_code" in constants:
            banks: Iterable[str] = [constants["bank_code"]]
        else:
            query = select(s.c.bank_code).distinct()
            if load_id is not None:
                query = query.where(s.c.load_id == load_id)
            banks = conn.execute(query).scalars()
        lock_merge(conn, fact_elicense_biz.name, banks)
    source = select(
        *(literal(constants[n], fact_elicense_biz.c[n].type).label(n) if n in constants else s.c[n] for n in BIZ_COLUMNS)
    ).where(s.c.load_id == load_id if load_id is not None else true())
    f = fact_elicense_biz
    if conn.dialect.name == "postgresql":
        # under the bank's merge lock nobody else inserts its keys: an UPDATE of the
        # changed rows and a plain INSERT of the new ones is twice as fast as
        # INSERT ... ON CONFLICT, whose speculative insertion costs per row
        src = source.subquery("src")
        same_key = and_(*(f.c[k] == src.c[k] for k in BIZ_KEYS))
        if "bank_code" in constants and load_id is None:  # the pipeline's temporary staging
            # the fact rows of the staged keys, through the index (see _among_keys)
            same_key = and_(same_key, _among_keys(constants["bank_code"], s))
        conn.execute(
            update(f)
            .where(same_key, or_(*(f.c[n].is_distinct_from(src.c[n]) for n in BIZ_VALUES)))
            .values({n: src.c[n] for n in BIZ_COLUMNS if n not in BIZ_KEYS})
        )
        conn.execute(
            insert(f).from_select(
                list(BIZ_COLUMNS),
                select(*(src.c[n] for n in BIZ_COLUMNS)).where(~exists().where(same_key)),
            )
        )
    else:
        stmt = dialect_insert(conn, f).from_select(list(BIZ_COLUMNS), source)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(BIZ_KEYS),
            set_={n: stmt.excluded[n] for n in BIZ_COLUMNS if n not in BIZ_KEYS},
            where=or_(*(f.c[n].is_distinct_from(stmt.excluded[n]) for n in BIZ_VALUES)),
        )
        conn.execute(stmt)
    if load_id is not None:
        conn.execute(delete(s).where(s.c.load_id == load_id))
