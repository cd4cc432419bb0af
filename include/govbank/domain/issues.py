"""One rule broken by one row: what the bank reads in its rejects file and ``etl_reject`` holds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RowIssue:
    """Found by the reader, the normaliser, a Great Expectations suite or the load.

    ``value`` is the offending cell as sent (masked before it is stored when the field
    is personal); validation findings carry none, the cell is already in the rejects file.
    """

    line: int
    field: str
    reason_code: str
    message: str
    value: str | None = None
