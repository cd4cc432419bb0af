"""What differs between the warehouse's two databases, SQLite and PostgreSQL, in one place.

Callers write one statement and ask here for the part that is spelled differently.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Date, Integer, Table, cast, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement


def is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def dialect_insert(conn: Connection, table: Table) -> Any:
    """INSERT with ``on_conflict_do_*`` for the connection's dialect (both spell it alike)."""
    return (postgresql if is_pg(conn) else sqlite).insert(table)


def month_of(conn: Connection, column: Any) -> ColumnElement[str]:
    """A date's month as ``YYYY-MM`` text."""
    if is_pg(conn):
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def month_start(conn: Connection, column: Any) -> ColumnElement[Any]:
    """A date's month as a date, the first of the month (what BI tools group by)."""
    if is_pg(conn):
        return cast(func.date_trunc("month", column), Date)
    return func.date(column, "start of month")


def local_date(conn: Connection, ts: Any) -> ColumnElement[Any]:
    """A stored timestamp's calendar day in Asia/Shanghai.

    PostgreSQL converts timestamptz to the zone's wall clock; SQLite keeps UTC as naive
    text, and Shanghai is UTC+8 with no daylight saving since 1991.
    """
    if is_pg(conn):
        return cast(func.timezone("Asia/Shanghai", ts), Date)
    return func.date(ts, "+8 hours")


def days_apart(conn: Connection, day_a: Any, day_b: Any) -> ColumnElement[int]:
    """Whole days between two dates, as a non-negative integer."""
    if is_pg(conn):
        return func.abs(day_a - day_b)
    return cast(func.abs(func.julianday(day_a) - func.julianday(day_b)), Integer)


def temp_schema(conn: Connection) -> str:
    """Where a connection's temporary tables live."""
    return "pg_temp" if is_pg(conn) else "temp"
