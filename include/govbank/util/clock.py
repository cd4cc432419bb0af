"""The district's clock: every business date and timestamp govbank writes is Asia/Shanghai."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Asia/Shanghai")


def now() -> dt.datetime:
    return dt.datetime.now(ZONE)


def today() -> dt.date:
    return now().date()


def iso(value: dt.datetime | None) -> str:
    """A stored timestamp as ISO 8601 in Asia/Shanghai ('' for none).

    SQLite hands back naive datetimes; what we stored there was Asia/Shanghai.
    """
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZONE)
    return value.astimezone(ZONE).isoformat(timespec="seconds")
