"""Which day govbank_marts rebuilds as of: govbank.marts.asof, without Airflow."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from govbank.marts.asof import as_of_extra, as_of_for, event_extras, shanghai_date
from tests.conftest import ROOT

D = dt.date
TODAY = D(2026, 3, 1)
UTC = dt.UTC
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_latest_as_of_among_the_events_wins() -> None:
    extras = [{"as_of": "2023-06-14"}, {"as_of": "2023-06-15"}, {"as_of": "2023-05-31"}]
    assert as_of_for(None, extras, today=TODAY) == D(2023, 6, 15)


def test_events_win_over_the_logical_date() -> None:
    logical = dt.datetime(2026, 2, 1, tzinfo=UTC)
    assert as_of_for(logical, [{"as_of": "2023-06-15"}], today=TODAY) == D(2023, 6, 15)


def test_extras_without_as_of_are_ignored() -> None:
    extras = [{}, None, {"from_rest_api": True}, {"as_of": None}, {"as_of": "2023-06-15"}]
    assert as_of_for(None, extras, today=TODAY) == D(2023, 6, 15)


def test_no_events_uses_the_logical_date_in_shanghai() -> None:
    # 2023-06-14 16:30 UTC is already 2023-06-15 00:30 in Asia/Shanghai
    assert as_of_for(dt.datetime(2023, 6, 14, 16, 30, tzinfo=UTC), [], today=TODAY) == D(2023, 6, 15)
    assert as_of_for(dt.datetime(2023, 6, 15, 8, tzinfo=SHANGHAI), [], today=TODAY) == D(2023, 6, 15)
    # events that carry no day fall through to the logical date too
    assert as_of_for(dt.datetime(2023, 6, 15, tzinfo=UTC), [{}], today=TODAY) == D(2023, 6, 15)


def test_pendulum_logical_date() -> None:
    pendulum = pytest.importorskip("pendulum")
    logical = pendulum.datetime(2023, 6, 15, 8, tz="Asia/Shanghai").in_tz("UTC")
    assert as_of_for(logical, []) == D(2023, 6, 15)


def test_neither_events_nor_logical_date_is_today_in_shanghai() -> None:
    assert as_of_for(None, [], today=TODAY) == TODAY
    before = dt.datetime.now(SHANGHAI).date()
    got = as_of_for(None, [])
    assert before <= got <= dt.datetime.now(SHANGHAI).date()


def test_an_unreadable_as_of_fails_loudly() -> None:
    with pytest.raises(ValueError, match="as_of"):
        as_of_for(None, [{"as_of": "15/06/2023"}], today=TODAY)
    with pytest.raises(ValueError, match="as_of"):
        as_of_for(None, [{"as_of": 20230615}], today=TODAY)


def test_as_of_extra_is_the_shanghai_day() -> None:
    assert as_of_extra(dt.datetime(2023, 6, 15, 0, 0, tzinfo=UTC)) == {"as_of": "2023-06-15"}
    assert as_of_extra(dt.datetime(2023, 6, 14, 16, 0, tzinfo=UTC)) == {"as_of": "2023-06-15"}
    assert as_of_extra(D(2023, 6, 15)) == {"as_of": "2023-06-15"}
    # the e-licence watermark, as PullResult.as_dict() gives it (UTC ISO string)
    assert as_of_extra("2023-06-14T17:05:00+00:00") == {"as_of": "2023-06-15"}
    assert as_of_extra("2023-06-15") == {"as_of": "2023-06-15"}
    assert as_of_extra(None) == {}
    assert as_of_extra("") == {}


def test_what_producers_emit_is_what_the_consumer_reads() -> None:
    moments = [dt.datetime(2023, 6, 14, 16, 0, tzinfo=UTC), "2023-06-13T01:00:00+00:00"]
    assert as_of_for(None, [as_of_extra(m) for m in moments], today=TODAY) == D(2023, 6, 15)


def test_naive_datetimes_are_utc() -> None:
    assert shanghai_date(dt.datetime(2023, 6, 14, 16, 0)) == D(2023, 6, 15)
    assert shanghai_date("2023-06-14T16:00:00") == D(2023, 6, 15)


def test_event_extras_reads_a_triggering_asset_events_mapping() -> None:
    ev = lambda extra: SimpleNamespace(extra=extra)  # noqa: E731
    events = {
        "bank_files": [ev({"as_of": "2023-06-14"}), ev({"as_of": "2023-06-15"})],
        "fact_elicense_usage": [ev(None)],
    }
    assert event_extras(events) == [{"as_of": "2023-06-14"}, {"as_of": "2023-06-15"}, {}]
    assert event_extras(None) == []
    assert event_extras({}) == []


def test_asof_does_not_import_airflow() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import sys, govbank.marts.asof; print('airflow' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert out.stdout.strip() == "False"
