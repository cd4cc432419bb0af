"""What differs between the warehouse's two databases, SQLite and PostgreSQL, in one place.

Callers write one statement and ask here for the part that is spelled differently.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, func
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
