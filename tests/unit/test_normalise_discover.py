"""Header mapping, value normalisation, file names and control files: plain functions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from govbank.config.contracts import AmountUnit, FeedContract
from govbank.domain.datasets import Dataset
from govbank.domain.errors import BankInputError
from govbank.ingest.discover import complete_files, parse_file_name, parse_ok, processing_order
from govbank.ingest.normalise import normalise_chunk, parse_number, resolve_columns, to_yuan
from govbank.ingest.read import RawChunk
from govbank.transport import RemoteFile


@pytest.mark.parametrize(
    ("text", "value"),
    [("12", Decimal(12)), ("-3.5", Decimal("-3.5")), ("1,234,567.80", Decimal("1234567.80"))],
)
def test_numbers(text: str, value: Decimal) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["1e6", "1.2E+3", "12,34", "1,2345", "abc", "", "1.2.3", "NaN"])
def test_numbers_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


def test_wan_yuan_is_exact() -> None:
    assert to_yuan(Decimal("123.4567"), AmountUnit.WAN_YUAN) == Decimal("1234567.00")
    assert to_yuan(Decimal("0.000001"), AmountUnit.WAN_YUAN) == Decimal("0.01")
    with pytest.raises(ValueError):
        to_yuan(Decimal("0.0000001"), AmountUnit.WAN_YUAN)
    with pytest.raises(ValueError):
        to_yuan(Decimal("1.005"), AmountUnit.YUAN)


def test_headers_through_a_contract() -> None:
    feed = FeedContract(headers={"biz_id": "交易编号"})
    header = [
        "交易编号",
        "办理网点编号",
        "业务类型",
        "统一社会信用代码",
        "企业名称",
        "业务日期",
        "状态",
        "备注",
    ]
    cols = resolve_columns(header, feed, Dataset.ELIC)
    assert cols["biz_id"] == 0 and cols["status"] == 6 and "credit_amount" not in cols
    with pytest.raises(BankInputError) as err:
        resolve_columns(header[1:], feed, Dataset.ELIC)
    assert err.value.reason_code == "HEADER_MISSING" and "交易编号" in err.value.message_zh
    with pytest.raises(BankInputError) as err:
        resolve_columns([*header, "状态"], feed, Dataset.ELIC)
    assert err.value.reason_code == "HEADER_DUPLICATE"


def test_normalise_types_and_towns() -> None:
    feed = FeedContract(date_formats=("%Y/%m/%d",), amount_unit=AmountUnit.WAN_YUAN)
    cols = {"biz_date": 0, "credit_amount": 1, "biz_id": 2}
    chunk = RawChunk(
        [2, 3, 4], [["2023/06/01", "150", "A"], ["2023-02-30", "1e5", "B"], [None, None, None]]
    )
    out = normalise_chunk(chunk, cols, feed, Dataset.ELIC)
    assert out.values("biz_date") == [dt.date(2023, 6, 1), None, None]
    assert out.values("credit_amount") == [Decimal("1500000.00"), None, None]
    assert {(i.line, i.field, i.reason_code) for i in out.issues} == {
        (3, "biz_date", "INVALID_DATE"),
        (3, "credit_amount", "INVALID_NUMBER"),
    }
    towns = normalise_chunk(
        RawChunk([2, 3, 4, 5], [["泽雅镇"], ["330304001"], ["330304012000"], ["鹿城区"]]),
        {"town": 0},
        FeedContract(),
        Dataset.OUTLET,
    )
    assert towns.values("town_code") == ["330304108000", "330304001000", "330304012000", None]


def test_impossible_date_is_invalid() -> None:
    feed = FeedContract()
    out = normalise_chunk(RawChunk([2], [["2023-02-30"]]), {"opened_on": 0}, feed, Dataset.OUTLET)
    assert out.issues[0].reason_code == "INVALID_DATE"


@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), min_size=12, max_size=12))
def test_normalise_never_crashes(cells: list[str | None]) -> None:
    """Any cell text gives typed values or row issues, never an exception."""
    cols = {
        name: i
        for i, name in enumerate(
            [
                "biz_id",
                "outlet_code",
                "biz_type",
                "uscc",
                "enterprise_name",
                "legal_rep_name",
                "legal_rep_id",
                "biz_date",
                "credit_amount",
                "drawn_amount",
                "loan_product",
                "status",
            ]
        )
    }
    out = normalise_chunk(RawChunk([2], [cells]), cols, FeedContract(), Dataset.ELIC)
    assert len(out) == 1
    for issue in out.issues:
        assert issue.reason_code in ("INVALID_DATE", "INVALID_NUMBER", "INVALID_CHARACTER")


def test_file_names() -> None:
    fn = parse_file_name("ELIC_WZB_20230615_02.csv.gz")
    assert (fn.dataset, fn.bank_code, fn.business_date, fn.seq, fn.gzipped) == (
        Dataset.ELIC,
        "WZB",
        dt.date(2023, 6, 15),
        2,
        True,
    )
    for bad in [
        "elic_WZB_20230615.csv",
        "ELIC_WZB_20230230.csv",
        "ELIC_WZB_20230615.xls",
        "../ELIC_WZB_20230615.csv",
        "ELIC_WZB_20230615.csv/../../x",
        "ELIC_W_20230615.csv",
    ]:
        with pytest.raises(BankInputError):
            parse_file_name(bad)


def test_only_files_with_their_ok_are_complete() -> None:
    listing = [
        RemoteFile("WZB", n, 1, 0)
        for n in ["A.csv", "A.csv.ok", "B.csv", "C.csv.ok", ".D.csv.part", ".D.csv.part.ok"]
    ]
    assert [d.name for d, _ in complete_files(listing)] == ["A.csv"]


def test_processing_order_outlet_before_elic_by_date() -> None:
    names = [
        "ELIC_WZB_20230601.txt",
        "OUTLET_WZB_20230601.txt",
        "ELIC_WZB_20230531_02.txt",
        "ELIC_WZB_20230531.txt",
        "junk.txt",
    ]
    assert sorted(names, key=processing_order) == [
        "junk.txt",
        "ELIC_WZB_20230531.txt",
        "ELIC_WZB_20230531_02.txt",
        "OUTLET_WZB_20230601.txt",
        "ELIC_WZB_20230601.txt",
    ]


def test_ok_files() -> None:
    assert parse_ok(b"").rows is None
    ok = parse_ok(b"rows=12\r\nsha256=" + b"A" * 64 + b"\n")
    assert ok.rows == 12 and ok.sha256 == "a" * 64
    for bad in [b"rows=twelve", b"sha256=xyz", b"garbage", b"\xff\xfe"]:
        with pytest.raises(BankInputError):
            parse_ok(bad)
