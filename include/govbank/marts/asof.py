"""Which business day a marts rebuild is "as of", carried on the Assets' events.

The producers (``govbank_ingest.publish``, ``govbank_elicense.pull_usages``) put the
business day their data is good up to into the extra of the asset event they emit,
as ``{"as_of": "YYYY-MM-DD"}`` (:func:`as_of_extra`). ``govbank_marts`` is started by those
events and has no logical date of its own, so it reads the extras of its triggering
events (:func:`event_extras`) and picks its day with :func:`as_of_for`.

Plain Python: no Airflow import, so it is unit-tested without Airflow.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from govbank.util.clock import ZONE

SHANGHAI = ZONE
AS_OF_KEY = "as_of"


def shanghai_date(moment: dt.datetime | dt.date | str) -> dt.date:
    """The Asia/Shanghai calendar day of a moment (naive datetimes are taken as UTC).

    A ``date`` is already a business day and is returned as is; a string is parsed as
    ISO 8601 (``2023-06-15`` or ``2023-06-15T01:02:03+00:00``).
    """
    if isinstance(moment, str):
        text = moment.strip()
        if len(text) == 10:  # a bare date: no time zone to convert
            return dt.date.fromisoformat(text)
        moment = dt.datetime.fromisoformat(text)
    if not isinstance(moment, dt.datetime):
        if isinstance(moment, dt.date):
            return moment
        raise TypeError(f"not a date or datetime: {moment!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(SHANGHAI).date()


def as_of_extra(moment: dt.datetime | dt.date | str | None) -> dict[str, str]:
    """The asset-event extra a producer emits: ``{"as_of": "YYYY-MM-DD"}``, or ``{}`` without a day."""
    if moment is None or moment == "":
        return {}
    return {AS_OF_KEY: shanghai_date(moment).isoformat()}


def _extra_as_of(extra: Mapping[str, Any]) -> dt.date | None:
    value = extra.get(AS_OF_KEY)
    if value is None or value == "":
        return None
    try:
        return shanghai_date(value)
    except (TypeError, ValueError) as exc:  # a bad day must not silently become "today"
        raise ValueError(f"asset event extra has an unreadable {AS_OF_KEY!r}: {value!r}") from exc


def as_of_for(
    logical_date: dt.datetime | dt.date | None,
    events_extras: Iterable[Mapping[str, Any] | None] = (),
    *,
    today: dt.date | None = None,
) -> dt.date:
    """The business day to rebuild the marts as of.

    1. the latest ``as_of`` among the extras of the triggering asset events (several
       events can be consumed by one run; extras without ``as_of`` are ignored);
    2. else the run's logical date, as an Asia/Shanghai day (manual runs,
       ``airflow dags test govbank_marts 2023-06-15``);
    3. else ``today`` (default: today in Asia/Shanghai).
    """
    days = [d for extra in events_extras if extra for d in [_extra_as_of(extra)] if d is not None]
    if days:
        return max(days)
    if logical_date is not None:
        return shanghai_date(logical_date)
    return today or dt.datetime.now(SHANGHAI).date()


def event_extras(
    triggering_asset_events: Mapping[Any, Iterable[Any]] | None,
) -> list[dict[str, Any]]:
    """The extras of every triggering asset event, from Airflow's ``triggering_asset_events``.

    That context value maps each Asset (or AssetAlias) to the events of it the run
    consumed; each event has an ``extra`` dict. ``None`` or an empty mapping gives ``[]``.
    """
    if not triggering_asset_events:
        return []
    return [
        dict(event.extra or {}) for events in triggering_asset_events.values() for event in events
    ]
