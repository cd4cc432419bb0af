"""A file's good rows on their way in: staged columns, temporary staging tables, COPY,
and the early inserts of rows that cannot conflict.

The caller owns the transaction: staging, merge, rejects and ``etl_file`` commit or roll
back together. Staging tables are temporary (private to the connection, never logged,
nothing to clean up after a crash); the ``stg_*`` tables are only their templates.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ARRAY,
    Column,
    Connection,
    Integer,
    MetaData,
    Table,
    Text,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from govbank.domain.datasets import DatasetSpec
from govbank.domain.pseudonym import pseudonymise_column
from govbank.ingest.merge import BIZ_COLUMNS, among_keys
from govbank.util.concurrency import BackgroundWriter
from govbank.warehouse.schema import fact_elicense_biz, metadata, stg_elicense_biz

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from govbank.ingest.normalise import NormalisedChunk

COPY_BLOCK = 1 << 20


def staged_columns(
    spec: DatasetSpec, chunk: NormalisedChunk, good: np.ndarray, bank_code: str, pseudonym_key: bytes
) -> pa.Table:
    """The good rows as the staging table's columns: renamed, personal IDs pseudonymised."""
    import pyarrow as pa

    mask = pa.array(good)
    source = spec.staged_from
    out: dict[str, Any] = {}
    for name in spec.staged:
        if name == spec.bank_column:
            out[name] = pa.repeat(pa.scalar(bank_code), int(good.sum()))
        elif name == spec.line_column:
            out[name] = pa.array(chunk.lines[good], pa.int32())
        elif name in spec.pseudonyms:
            out[name] = pseudonymise_column(pseudonym_key, chunk.columns[spec.pseudonyms[name]].filter(mask))
        else:
            out[name] = chunk.columns[source.get(name, name)].filter(mask)
    return pa.table(out)


def keys_of(chunk: NormalisedChunk, key_field: str) -> pa.Table:
    """Each row's key and line, for the file-wide duplicate check."""
    import pyarrow as pa

    table = pa.table({"key": chunk.columns[key_field], "line": pa.array(chunk.lines, pa.int32())})
    return table.filter(table["key"].is_valid())


def create_staging(conn: Connection, base: Table, columns: Sequence[str], tag: str) -> Table:
    """A temporary staging table of ``base``'s ``columns`` for one load in this transaction.

    PostgreSQL drops it at commit or rollback; on SQLite :func:`drop_staging` drops it.
    No index, so COPY and the merge touch nothing but the rows.
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


def stage(conn: Connection, table: Table, data: pa.Table) -> None:
    """Put an Arrow table of rows into a staging table, in the caller's transaction.

    PostgreSQL gets it through ``COPY ... FROM STDIN`` as CSV written by Arrow, a few MiB
    per write, never a Python object per value; SQLite gets one ``executemany``.
    """
    if not len(data):
        return
    if conn.dialect.name == "postgresql":
        copy_arrow(conn, table, data)
    else:
        conn.execute(insert(table), _arrow_rows(table, data))


def _arrow_rows(table: Table, data: pa.Table) -> list[dict]:
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


def _target(conn: Connection, table: Table):  # type: ignore[no-untyped-def]
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


def copy_arrow(conn: Connection, table: Table, data: pa.Table) -> None:
    """``COPY ... (FORMAT csv)`` of an Arrow table, in the caller's transaction."""
    import psycopg
    import pyarrow.csv as pacsv
    from psycopg import sql

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
        # the raw cursor bypasses SQLAlchemy: raise what SQLAlchemy would raise, so a
        # cancelled or cut COPY is an OperationalError (the run's TransientError)
        raise DBAPIError.instance(
            statement.as_string(driver), None, err, psycopg.Error, dialect=conn.dialect
        ) from err
    finally:
        view.release()


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
    known keys (found through the key index) and keys repeated within the batch are
    first moved to ``staging``, and the rest goes in by a plain INSERT that cannot
    conflict: nobody else adds this bank's keys meanwhile (``INSERT ... ON CONFLICT DO
    NOTHING`` measured slower). What stays provisional is undone before commit by
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
        known = select(f.c.biz_id).where(among_keys(self.constants["bank_code"], b))
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
        occurrence among the refused rows (``checks.duplicate_keys_of``). Valid once the
        writing thread is done.
        """
        return self.staged == 0

    def undo_duplicated(self, conn: Connection, keys: Iterable[str]) -> int:
        """Delete the early rows of ``keys`` (those the file holds more than once); how many went.

        Early rows carry this load's file name and time; their keys were not in the
        table before (the plain INSERT would have failed), so deleting them restores it.
        The keys go as one array compared with ``= ANY``: an index condition, or a hashed
        filter. A join of the keys met the statistics of the table before this file and
        was planned as a nested loop comparing every early row with every key.
        """
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


class Staging:
    """One file's temporary tables (rows, keys, the early batch) and the writer filling them.

    Rows reach ``target`` (the early batch when there is one, else the staging table)
    through ``writer``, in a second thread on PostgreSQL; ``hook("staged", file, rows)``
    is called once a chunk is written.
    """

    def __init__(
        self,
        conn: Connection,
        spec: DatasetSpec,
        tag: str,
        constants: Mapping[str, Any],
        writer: BackgroundWriter,
        early_factory: Callable[..., EarlyInsert] | None,
        hook: Callable[[str, str, int], None],
    ) -> None:
        self.conn, self.writer, self.hook = conn, writer, hook
        # the rows of the next chunk (pseudonyms: Python) are built while the writer waits
        # on the server for the last one
        self._prepare = ThreadPoolExecutor(1, thread_name_prefix="govbank-prepare") if writer.background else None
        self.file_name = str(constants["source_file"])
        self.table = create_staging(conn, metadata.tables[spec.staging_table], spec.staged, tag)
        self.keys = create_key_table(conn, tag)
        self.early = early_factory(conn, self.table, tag, constants) if early_factory else None

    def submit(self, keys: pa.Table, data: Callable[[], pa.Table]) -> None:
        """Stage a chunk's keys and good rows (behind, on PostgreSQL); ``data`` builds the rows,
        on PostgreSQL in a thread of their own beside the writer's."""
        target = self.early.batch if self.early is not None else self.table
        self.writer.submit(self._write, keys, target, self._prepare.submit(data) if self._prepare else data)

    def _write(self, keys: pa.Table, target: Table, data: Callable[[], pa.Table] | Future) -> None:
        rows = data.result() if isinstance(data, Future) else data()
        stage(self.conn, self.keys, keys)
        stage(self.conn, target, rows)
        self.hook("staged", self.file_name, len(rows))

    def end_batch(self) -> None:
        """A GX batch is staged: its rows go into the target early, if this load does that."""
        if self.early is not None:
            self.writer.submit(self.early.flush, self.conn)

    def close(self) -> None:
        """Writes in flight finish; the tables go (SQLite; PostgreSQL drops them at the end)."""
        self.writer.close()
        if self._prepare is not None:
            self._prepare.shutdown(wait=True, cancel_futures=True)
        drop_staging(self.conn, self.table, self.keys, *([self.early.batch] if self.early is not None else []))
