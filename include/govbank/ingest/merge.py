"""Set-based, idempotent merges of a file's staged rows into the warehouse.

Every statement is SQLAlchemy Core with bound parameters. The caller owns the
transaction, so a file's staging, merge, rejects and ``etl_file`` update commit or
roll back together. ``MERGES`` maps a dataset spec's ``merge`` name to its function.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Table,
    and_,
    any_,
    case,
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
from sqlalchemy.sql.elements import ColumnElement

from govbank.config.contracts import BankContract
from govbank.domain.errors import BankInputError
from govbank.domain.statuses import LOADED
from govbank.ingest.discover import parse_file_name
from govbank.warehouse.schema import dim_bank, dim_outlet, etl_file, fact_elicense_biz

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
_VERSION_COLUMNS = ["bank_code", "outlet_code", *OUTLET_ATTRS, "valid_from", "valid_to", "is_current", "source_file"]
BIZ_COLUMNS = tuple(c.name for c in fact_elicense_biz.columns)
BIZ_KEYS = ("bank_code", "biz_id")
# what makes a re-sent record news; provenance (file, line, time) alone does not
BIZ_VALUES = tuple(
    n for n in BIZ_COLUMNS if n not in (*BIZ_KEYS, "source_file", "source_line", "loaded_at")
)


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


# --- outlets: type-2 history of full snapshots -------------------------------------------


def _differs(a, b):  # type: ignore[no-untyped-def]
    return or_(*(a.c[n].is_distinct_from(b.c[n]) for n in OUTLET_ATTRS))


def _new_version(columns, snapshot_date: dt.date, source_file: str):  # type: ignore[no-untyped-def]
    """The tail of a current version's row opened on ``snapshot_date``."""
    return (
        *columns,
        literal(snapshot_date).label("valid_from"),
        literal(None).label("valid_to"),
        true().label("is_current"),
        literal(source_file).label("source_file"),
    )


def merge_outlets(
    conn: Connection, staging: Table, bank_code: str, snapshot_date: dt.date, source_file: str,
    keep: Iterable[str] = (),
) -> None:
    """Type-2 merge of a full snapshot into ``dim_outlet``.

    A changed outlet gets its current version closed and a new one opened on the
    snapshot date; an outlet the snapshot leaves out is closed and gets a 撤销 version.
    Versions opened on the same date (a second file of the day) are corrected in place.
    Outlets in ``keep`` (sent in the snapshot but refused) stay as they are.
    """
    lock_merge(conn, dim_outlet.name, [bank_code])
    d, s = dim_outlet, staging.alias("s")
    staged = select(s).where(s.c.outlet_code == d.c.outlet_code)
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
    vanished_codes = list(conn.execute(
        select(d.c.outlet_code).where(current_of_bank, d.c.valid_from < snapshot_date, vanished)
    ).scalars())
    conn.execute(update(d).where(closing).values(is_current=false(), valid_to=snapshot_date))
    if vanished_codes:
        _open_withdrawn(conn, bank_code, vanished_codes, snapshot_date, source_file)
    _open_current(conn, staging, bank_code, snapshot_date, source_file)


def _open_withdrawn(
    conn: Connection, bank_code: str, codes: list[str], snapshot_date: dt.date, source_file: str
) -> None:
    """Vanished outlets: a 撤销 version from the snapshot date, copied from the one just closed."""
    prev = dim_outlet.alias("prev")
    attrs = (literal("撤销").label("status") if n == "status" else prev.c[n] for n in OUTLET_ATTRS)
    conn.execute(
        insert(dim_outlet).from_select(
            _VERSION_COLUMNS,
            select(*_new_version((prev.c.bank_code, prev.c.outlet_code, *attrs), snapshot_date, source_file)).where(
                prev.c.bank_code == bank_code,
                prev.c.outlet_code.in_(codes),
                prev.c.valid_to == snapshot_date,
            ),
        )
    )


def _open_current(
    conn: Connection, staging: Table, bank_code: str, snapshot_date: dt.date, source_file: str
) -> None:
    """New or changed outlets (those with no current version left): open a current version."""
    d, s2 = dim_outlet, staging.alias("s2")
    has_current = exists(
        select(d.c.outlet_key).where(
            d.c.bank_code == bank_code, d.c.outlet_code == s2.c.outlet_code, d.c.is_current == true()
        )
    )
    columns = (s2.c.bank_code, s2.c.outlet_code, *(s2.c[n] for n in OUTLET_ATTRS))
    conn.execute(
        insert(d).from_select(
            _VERSION_COLUMNS,
            select(*_new_version(columns, snapshot_date, source_file)).where(not_(has_current)),
        )
    )


def newer_snapshots(conn: Connection, bank_code: str, snapshot_date: dt.date) -> list[dt.date]:
    """Dates of the bank's loaded OUTLET snapshots later than ``snapshot_date``."""
    return sorted(conn.execute(
        select(etl_file.c.business_date).distinct().where(
            etl_file.c.bank_code == bank_code, etl_file.c.dataset == "OUTLET",
            etl_file.c.status.in_(LOADED), etl_file.c.business_date > snapshot_date,
        )
    ).scalars())


def fill_outlet_history(
    conn: Connection, staging: Table, bank_code: str, snapshot_date: dt.date, source_file: str,
    next_snapshot: dt.date,
) -> int:
    """A snapshot older than the one in force: only history is added, nothing current changes.

    An outlet of the snapshot with no version covering its date gets a closed version from
    that date to whichever comes first, its earliest version or the next snapshot; what
    the newer snapshots decided (versions, closings, 撤销) is left as it is. How many rows
    of the snapshot changed nothing (their date was already covered).
    """
    lock_merge(conn, dim_outlet.name, [bank_code])
    d = dim_outlet
    first = dict(conn.execute(
        select(d.c.outlet_code, func.min(d.c.valid_from)).where(d.c.bank_code == bank_code).group_by(d.c.outlet_code)
    ).all())
    rows = conn.execute(select(staging)).mappings().all()
    filled = []
    for r in rows:
        start = first.get(r["outlet_code"])
        if start is not None and start <= snapshot_date:
            continue  # the newer history already covers this date
        filled.append({
            "bank_code": bank_code, "outlet_code": r["outlet_code"], **{n: r[n] for n in OUTLET_ATTRS},
            "valid_from": snapshot_date, "valid_to": min(start or next_snapshot, next_snapshot),
            "is_current": False, "source_file": source_file,
        })
    if filled:
        conn.execute(insert(d), filled)
    return len(rows) - len(filled)


# --- e-licence business: the latest file's version of a record wins ----------------------


def file_order(bank_code: str, source_file: Any) -> ColumnElement:
    """``YYYYMMDDNN`` (business date, sequence) of an ELIC file name held in a column: the
    order in which a bank's versions of a record stand, whatever order they arrived in."""
    at = len(f"ELIC_{bank_code}_") + 1
    seq = func.substr(source_file, at + 8, 1) == "_"
    return func.substr(source_file, at, 8).concat(
        case((seq, func.substr(source_file, at + 9, 2)), else_=literal("00"))
    )


def order_of(file_name: str) -> str | None:
    """The :func:`file_order` of a file name; None for a name outside the convention."""
    try:
        fn = parse_file_name(file_name)
    except BankInputError:
        return None
    return f"{fn.business_date:%Y%m%d}{fn.seq:02d}"


def among_keys(bank_code: Any, rows: Table):  # type: ignore[no-untyped-def]
    """A condition on ``fact_elicense_biz``: the bank's rows whose key ``rows`` holds.

    ``biz_id = ANY(ARRAY(...))`` is an index condition whatever the statistics say: a
    join alone meets the statistics of the table before this file (a few rows of the
    bank, when a million just went in) and is planned as a scan of all the bank's rows.
    """
    f = fact_elicense_biz
    return and_(f.c.bank_code == bank_code, f.c.biz_id == any_(func.array(select(rows.c.biz_id).scalar_subquery())))


def merge_elicense_biz(
    conn: Connection, staging: Table, *, constants: Mapping[str, Any] | None = None
) -> int:
    """Upsert: of each (bank_code, biz_id), the version of the file with the latest
    business date, then sequence number, wins (of one file name, the one processed last).

    ``constants`` fills columns the file has one value for (bank, file name, load
    time); with them, a late file (an earlier date sent after a later one) never
    overwrites a newer version: how many of its rows were older is returned. A re-sent
    record whose values did not change is left alone: no new row version, no index churn.
    """
    s, f = staging, fact_elicense_biz
    constants = dict(constants or {})
    not_older: ColumnElement = true()
    older = 0
    mine = order_of(constants["source_file"]) if "source_file" in constants else None
    if "bank_code" in constants and mine is not None:
        not_older = file_order(constants["bank_code"], f.c.source_file) <= mine
        older = conn.execute(
            select(func.count())
            .select_from(s)
            .join(f, and_(f.c.bank_code == constants["bank_code"], f.c.biz_id == s.c.biz_id))
            .where(~not_older)
        ).scalar_one()
    source = select(
        *(literal(constants[n], f.c[n].type).label(n) if n in constants else s.c[n] for n in BIZ_COLUMNS)
    )
    if conn.dialect.name != "postgresql":
        # SQLite reads "FROM t ON CONFLICT" as a join's ON: a WHERE ends the SELECT
        stmt = dialect_insert(conn, f).from_select(list(BIZ_COLUMNS), source.where(true()))
        stmt = stmt.on_conflict_do_update(
            index_elements=list(BIZ_KEYS),
            set_={n: stmt.excluded[n] for n in BIZ_COLUMNS if n not in BIZ_KEYS},
            where=and_(not_older, or_(*(f.c[n].is_distinct_from(stmt.excluded[n]) for n in BIZ_VALUES))),
        )
        conn.execute(stmt)
        return older
    if "bank_code" in constants:
        banks: Iterable[str] = [constants["bank_code"]]
    else:
        banks = conn.execute(select(s.c.bank_code).distinct()).scalars()
    lock_merge(conn, f.name, banks)
    # under the bank's merge lock nobody else inserts its keys: an UPDATE of the
    # changed rows and a plain INSERT of the new ones is twice as fast as
    # INSERT ... ON CONFLICT, whose speculative insertion costs per row
    src = source.subquery("src")
    same_key = and_(*(f.c[k] == src.c[k] for k in BIZ_KEYS))
    if "bank_code" in constants:  # the fact rows of the staged keys, through the index
        same_key = and_(same_key, among_keys(constants["bank_code"], s))
    conn.execute(
        update(f)
        .where(same_key, not_older, or_(*(f.c[n].is_distinct_from(src.c[n]) for n in BIZ_VALUES)))
        .values({n: src.c[n] for n in BIZ_COLUMNS if n not in BIZ_KEYS})
    )
    conn.execute(
        insert(f).from_select(
            list(BIZ_COLUMNS),
            select(*(src.c[n] for n in BIZ_COLUMNS)).where(~exists().where(same_key)),
        )
    )
    return older


# --- looked up by DatasetSpec.merge ------------------------------------------------------


@dataclass(frozen=True)
class MergeInput:
    """What a file's merge needs besides its staged rows."""

    bank_code: str
    file_name: str
    business_date: dt.date
    constants: Mapping[str, Any]  # columns with one value for the file (bank, file, load time)
    refused: Set[str] = field(default_factory=frozenset)  # keys sent but refused


def _outlet_snapshot(conn: Connection, staging: Table, m: MergeInput) -> int:
    newer = newer_snapshots(conn, m.bank_code, m.business_date)
    if newer:  # a late snapshot: history only
        return fill_outlet_history(conn, staging, m.bank_code, m.business_date, m.file_name, newer[0])
    merge_outlets(conn, staging, m.bank_code, m.business_date, m.file_name, keep=m.refused)
    return 0


def _elicense_upsert(conn: Connection, staging: Table, m: MergeInput) -> int:
    return merge_elicense_biz(conn, staging, constants=m.constants)


# each returns how many of the file's rows were older than what the warehouse holds
MERGES: dict[str, Callable[[Connection, Table, MergeInput], int]] = {
    "outlet_snapshot": _outlet_snapshot,
    "elicense_upsert": _elicense_upsert,
}
