"""The Great Expectations stage: suites, custom expectations, row issues, Data Docs.

Real GX, no Airflow. One Validator per module: importing GX costs seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from govbank.domain import datasets, reference
from govbank.domain.errors import ConfigError
from govbank.domain.issues import RowIssue
from govbank.domain.reasons import ROW_REASONS
from govbank.validate import SUITE_FILES, Validator, gx_runtime
from tests.conftest import ROOT

EXPECTATIONS = ROOT / "expectations"
FILE_DATE = dt.date(2023, 6, 15)
USCC_OK = "91330304MA2ABCDE0T"
USCC_OK2 = "91330304MA2ABCDE1X"
ID_OK = "11010519491231002X"
USAGE_FIELDS = (
    "usage_id",
    "uscc",
    "enterprise_name",
    "scene",
    "bank_code",
    "outlet_code",
    "authorized_at",
    "updated_at",
    "status",
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data_docs")


@pytest.fixture(scope="module")
def validator(docs_dir: Path) -> Validator:
    return Validator(EXPECTATIONS, docs_dir)


def _suite(name: str) -> dict:
    return json.loads((EXPECTATIONS / name).read_text(encoding="utf-8"))


def _issues(out) -> set[tuple[int, str, str]]:
    return {(i.line, i.field, i.reason_code) for i in out.issues}


# ---------------------------------------------------------------- frames


def elic_row(line: int, **over) -> dict:
    row = {
        "source_line": line,
        "biz_id": f"B{line:06d}",
        "outlet_code": "WZB-OH-001",
        "biz_type": "一照贷款",
        "uscc": USCC_OK,
        "enterprise_name": "温州某某鞋业有限公司",
        "legal_rep_id": ID_OK,
        "biz_date": pd.Timestamp("2023-06-01"),
        "credit_amount": 1_000_000.0,
        "drawn_amount": 500_000.0,
        "loan_product": "瓯e贷",
        "status": "有效",
    }
    row.update(over)
    return row


def elic_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["biz_date"] = pd.to_datetime(frame["biz_date"])
    for c in ("credit_amount", "drawn_amount"):
        frame[c] = frame[c].astype("float64")
    return frame


def outlet_row(line: int, **over) -> dict:
    row = {
        "source_line": line,
        "outlet_code": f"WZB-OH-{line:03d}",
        "outlet_name": "景山政务服务超市",
        "outlet_type": "政务服务超市",
        "town_code": "330304001000",
        "community": None,
        "address": "温州市瓯海区景山街道某路1号",
        "longitude": 120.6275,
        "latitude": 27.9993,
        "service_items": 120.0,
        "opened_on": pd.Timestamp("2023-01-10"),
        "status": "正常",
    }
    row.update(over)
    return row


def outlet_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["opened_on"] = pd.to_datetime(frame["opened_on"])
    for c in ("longitude", "latitude", "service_items"):
        frame[c] = frame[c].astype("float64")
    return frame


def usage_row(line: int, **over) -> dict:
    row = {
        "source_line": line,
        "usage_id": f"U2023061500{line:02d}",
        "uscc": USCC_OK,
        "enterprise_name": "温州某某鞋业有限公司",
        "scene": "一照开户",
        "bank_code": "WZB",
        "outlet_code": "WZB-OH-001",
        "authorized_at": "2023-06-15T09:31:02+08:00",
        "updated_at": "2023-06-15T09:31:05+08:00",
        "status": "有效",
    }
    row.update(over)
    return row


def usage_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for c in ("authorized_at", "updated_at"):
        frame[c] = pd.to_datetime(frame[c])
    return frame


# ---------------------------------------------------------------- suites as data


@pytest.mark.parametrize("fname", sorted(SUITE_FILES.values()))
def test_suite_json_loads_and_every_expectation_has_a_reason(fname: str) -> None:
    import great_expectations as gx

    import govbank.validate.expectations  # noqa: F401  (registers the custom expectation types)

    data = _suite(fname)
    suite = gx.ExpectationSuite(**data)
    assert suite.name == Path(fname).stem
    assert len(suite.expectations) == len(data["expectations"]) > 0
    fields = {f for ds in datasets.FIELDS for f in datasets.field_names(ds)}
    fields |= set(USAGE_FIELDS)
    for exp in data["expectations"]:
        assert exp["meta"]["reason_code"] in ROW_REASONS, exp
        assert exp["meta"]["field"] in fields, exp


def test_suite_constants_match_the_package() -> None:
    """Enums and the coordinate box are copied into JSON; they must not drift."""
    outlet, elic, usage = (_suite(f) for f in ("outlet.json", "elic.json", "elicense_usage.json"))

    def sets(suite: dict) -> dict[str, list[str]]:
        return {
            e["kwargs"]["column"]: e["kwargs"]["value_set"]
            for e in suite["expectations"]
            if e["type"] == "expect_column_values_to_be_in_set"
        }

    assert sets(outlet) == {
        "outlet_type": list(datasets.OUTLET_TYPES),
        "status": list(datasets.OUTLET_STATUSES),
    }
    assert sets(elic) == {
        "biz_type": list(datasets.BIZ_TYPES),
        "status": list(datasets.BIZ_STATUSES),
    }
    assert sets(usage) == {"scene": list(datasets.BIZ_TYPES), "status": list(datasets.BIZ_STATUSES)}
    box = {
        e["kwargs"]["column"]: (e["kwargs"]["min_value"], e["kwargs"]["max_value"])
        for e in outlet["expectations"]
        if e["meta"]["reason_code"] == "COORD_OUT_OF_AREA"
    }
    assert box == {
        "longitude": tuple(float(x) for x in reference.OUHAI_LON),
        "latitude": tuple(float(x) for x in reference.OUHAI_LAT),
    }
    lengths = {
        e["kwargs"]["column"]: e["kwargs"]["max_value"]
        for e in outlet["expectations"] + elic["expectations"]
        if e["meta"]["reason_code"] == "TOO_LONG"
    }
    max_len = {f.name: f.max_len for fs in datasets.FIELDS.values() for f in fs if f.max_len}
    assert lengths == {k: max_len[k] for k in ("outlet_code", "biz_id")}


def test_importing_validate_does_not_import_gx() -> None:
    code = (
        "import sys, govbank.validate, govbank.validate.context, govbank.validate.gx_runtime; "
        "sys.exit('great_expectations' in sys.modules or 'pandas' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": "include"})
    assert done.returncode == 0


# ---------------------------------------------------------------- custom expectations


@pytest.fixture(scope="module")
def pandas_batch(validator: Validator):
    """Validate one expectation on one column of values, in a throwaway GX context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        context.data_sources.add_pandas("t")
        .add_dataframe_asset("t")
        .add_batch_definition_whole_dataframe("t")
    )

    def run(expectation, values: list) -> tuple[bool, list]:
        frame = pd.DataFrame({"v": values, "i": range(len(values))})
        batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
        res = batch.validate(
            expectation,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["i"]},
        )
        assert not res.exception_info.get("raised_exception"), res.exception_info
        return res.success, [d["v"] for d in res.result.get("unexpected_index_list") or []]

    return run


@pytest.fixture(scope="module")
def plain_gx(validator: Validator):
    """GX's own validation of a whole ELIC frame against elic.json, in a throwaway context:
    the reference our merged and patched results are compared with."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        context.data_sources.add_pandas("ref")
        .add_dataframe_asset("ref")
        .add_batch_definition_whole_dataframe("ref")
    )
    suite = context.suites.add(gx.ExpectationSuite(**_suite("elic.json")))

    def run(frame: pd.DataFrame):  # type: ignore[no-untyped-def]
        frame = frame.assign(biz_date=frame["biz_date"].dt.as_unit("ns"))  # as GX needs it
        return batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(
            suite,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["source_line"]},
            expectation_parameters={"file_date": f"{FILE_DATE.isoformat()}T00:00:00"},
        )

    return run


def test_uscc_expectation(pandas_batch) -> None:
    from govbank.validate.expectations import ExpectColumnValuesToBeValidUscc

    good = [USCC_OK, USCC_OK2, "91330000MA2C1B2A62", None]
    bad = [
        USCC_OK[:17] + "U",  # wrong check character
        USCC_OK.lower(),
        USCC_OK[:17],  # 17 characters
        USCC_OK + "0",  # 19 characters
        *(USCC_OK[:10] + c + USCC_OK[11:] for c in "IOZSV"),  # excluded letters in the body
        *(USCC_OK[:17] + c for c in "IOZSV"),  # ... and as check character
    ]
    assert ExpectColumnValuesToBeValidUscc(column="v").expectation_type == (
        "expect_column_values_to_be_valid_uscc"
    )
    ok, unexpected = pandas_batch(ExpectColumnValuesToBeValidUscc(column="v"), good)
    assert ok and unexpected == []
    ok, unexpected = pandas_batch(ExpectColumnValuesToBeValidUscc(column="v"), good + bad)
    assert not ok and unexpected == bad


def test_uscc_exception_list_passes() -> None:
    from govbank.validate.expectations import _uscc_ok

    pilot = "91330304MA2ABCDE0U"  # legally valid, fails the check character
    assert not _uscc_ok(pilot, frozenset())
    assert _uscc_ok(pilot, frozenset({pilot}))


def test_resident_id_expectation(pandas_batch) -> None:
    from govbank.validate.expectations import ExpectColumnValuesToBeValidResidentId

    good = [ID_OK, "330304198001010011", None]
    bad = [
        ID_OK[:17] + "x",  # lower-case check character
        "110105194912310021",  # wrong check digit
        ID_OK[:17],
        ID_OK + "1",
        "1101051949123100AX",  # letters in the body
    ]
    ok, unexpected = pandas_batch(ExpectColumnValuesToBeValidResidentId(column="v"), good)
    assert ok and unexpected == []
    ok, unexpected = pandas_batch(ExpectColumnValuesToBeValidResidentId(column="v"), good + bad)
    assert not ok and unexpected == bad


# ---------------------------------------------------------------- row issues


def test_valid_elic_passes(validator: Validator) -> None:
    rows = [
        elic_row(2),
        elic_row(3, biz_type="一照开户", credit_amount=None, drawn_amount=None),
        elic_row(4, legal_rep_id=None, loan_product=None, drawn_amount=1_000_000.0),
        elic_row(5, biz_date=pd.Timestamp(FILE_DATE), status="撤销"),  # the file's own date
        elic_row(6, biz_date=pd.Timestamp("2019-01-01"), drawn_amount=0.0),
    ]
    out = validator.validate(
        "ELIC", elic_frame(rows), run_name="elic-ok", params={"file_date": FILE_DATE}
    )
    assert out.success and out.issues == [] and out.evaluated == 5


def test_elic_reason_codes(validator: Validator) -> None:
    cases: list[tuple[dict, set[tuple[str, str]]]] = [
        ({"enterprise_name": None}, {("enterprise_name", "REQUIRED_MISSING")}),
        ({"biz_id": "B" * 65}, {("biz_id", "TOO_LONG")}),
        ({"outlet_code": "O" * 33}, {("outlet_code", "TOO_LONG")}),
        ({"status": "无效"}, {("status", "INVALID_ENUM")}),
        ({"biz_type": "一照销户"}, {("biz_type", "INVALID_ENUM")}),
        ({"uscc": USCC_OK[:17] + "U"}, {("uscc", "INVALID_USCC")}),
        ({"legal_rep_id": "110105194912310021"}, {("legal_rep_id", "INVALID_RESIDENT_ID")}),
        ({"biz_date": pd.Timestamp("2023-06-16")}, {("biz_date", "DATE_IN_FUTURE")}),
        ({"biz_date": pd.Timestamp("2018-12-31")}, {("biz_date", "DATE_TOO_EARLY")}),
        ({"drawn_amount": -1.0}, {("drawn_amount", "NEGATIVE_NUMBER")}),
        (
            {"credit_amount": -5.0, "drawn_amount": -9.0},
            {("credit_amount", "NEGATIVE_NUMBER"), ("drawn_amount", "NEGATIVE_NUMBER")},
        ),
        (
            {"credit_amount": 100.0, "drawn_amount": 200.0},
            {("drawn_amount", "DRAWN_EXCEEDS_CREDIT")},
        ),
        (
            {"credit_amount": None, "drawn_amount": None},
            {("credit_amount", "LOAN_AMOUNT_MISSING"), ("drawn_amount", "LOAN_AMOUNT_MISSING")},
        ),
        ({"drawn_amount": None}, {("drawn_amount", "LOAN_AMOUNT_MISSING")}),
        (
            {"biz_type": "一照开户", "drawn_amount": None},
            {("credit_amount", "OPENING_HAS_AMOUNT")},
        ),
        ({"biz_id": "DUP"}, {("biz_id", "DUPLICATE_KEY")}),
        ({"biz_id": "DUP"}, {("biz_id", "DUPLICATE_KEY")}),
    ]
    rows = [elic_row(2)] + [elic_row(10 + i, **over) for i, (over, _) in enumerate(cases)]
    expected = {(10 + i, f, c) for i, (_, codes) in enumerate(cases) for f, c in codes}
    out = validator.validate(
        "ELIC", elic_frame(rows), run_name="elic-bad", params={"file_date": FILE_DATE}
    )
    assert not out.success
    assert _issues(out) == expected
    assert all(i.message == ROW_REASONS[i.reason_code] for i in out.issues)
    assert [i.line for i in out.issues] == sorted(i.line for i in out.issues)


def test_valid_outlet_passes(validator: Validator) -> None:
    rows = [
        outlet_row(2),
        outlet_row(3, outlet_type="普通网点", longitude=None, latitude=None, service_items=None),
        outlet_row(4, outlet_type="自助终端", community="某村", status="暂停", service_items=0.0),
        outlet_row(5, outlet_type="流动服务车", opened_on=pd.Timestamp(FILE_DATE), status="撤销"),
    ]
    out = validator.validate(
        "OUTLET", outlet_frame(rows), run_name="outlet-ok", params={"file_date": FILE_DATE}
    )
    assert out.success and out.issues == [] and out.evaluated == 4


def test_outlet_reason_codes(validator: Validator) -> None:
    cases: list[tuple[dict, set[tuple[str, str]]]] = [
        ({"address": None}, {("address", "REQUIRED_MISSING")}),
        ({"outlet_code": "W" * 33}, {("outlet_code", "TOO_LONG")}),
        ({"outlet_type": "银行网点", "longitude": None}, {("outlet_type", "INVALID_ENUM")}),
        ({"status": "关闭"}, {("status", "INVALID_ENUM")}),
        ({"town_code": None}, {("town", "UNKNOWN_TOWN")}),
        ({"longitude": 121.5}, {("longitude", "COORD_OUT_OF_AREA")}),
        ({"latitude": 27.5}, {("latitude", "COORD_OUT_OF_AREA")}),
        ({"outlet_type": "自助终端", "latitude": None}, {("latitude", "COORD_MISSING")}),
        (
            {"longitude": None, "latitude": None},
            {("longitude", "COORD_MISSING"), ("latitude", "COORD_MISSING")},
        ),
        ({"service_items": -1.0}, {("service_items", "NEGATIVE_NUMBER")}),
        ({"opened_on": pd.Timestamp("2023-06-16")}, {("opened_on", "DATE_IN_FUTURE")}),
        ({"outlet_code": "DUP"}, {("outlet_code", "DUPLICATE_KEY")}),
        ({"outlet_code": "DUP"}, {("outlet_code", "DUPLICATE_KEY")}),
    ]
    rows = [outlet_row(2)] + [outlet_row(10 + i, **over) for i, (over, _) in enumerate(cases)]
    expected = {(10 + i, f, c) for i, (_, codes) in enumerate(cases) for f, c in codes}
    out = validator.validate(
        "OUTLET", outlet_frame(rows), run_name="outlet-bad", params={"file_date": FILE_DATE}
    )
    assert _issues(out) == expected


def test_usage_reason_codes(validator: Validator) -> None:
    ok = validator.validate("USAGE", usage_frame([usage_row(1), usage_row(2)]), run_name="u-ok")
    assert ok.success and ok.evaluated == 2
    cases: list[tuple[dict, set[tuple[str, str]]]] = [
        ({"bank_code": None}, {("bank_code", "REQUIRED_MISSING")}),
        ({"enterprise_name": None, "outlet_code": None}, set()),  # optional
        ({"scene": "一照销户"}, {("scene", "INVALID_ENUM")}),
        ({"status": "无效"}, {("status", "INVALID_ENUM")}),
        ({"uscc": USCC_OK.lower()}, {("uscc", "INVALID_USCC")}),
        ({"usage_id": "U1"}, {("usage_id", "DUPLICATE_KEY")}),
        ({"usage_id": "U1"}, {("usage_id", "DUPLICATE_KEY")}),
    ]
    rows = [usage_row(10 + i, **over) for i, (over, _) in enumerate(cases)]
    expected = {(10 + i, f, c) for i, (_, codes) in enumerate(cases) for f, c in codes}
    out = validator.validate("USAGE", usage_frame(rows), run_name="u-bad")
    assert _issues(out) == expected


def test_python_typed_columns_are_accepted(validator: Validator) -> None:
    """Decimal amounts and datetime.date values (as normalise produces them) work too."""
    frame = pd.DataFrame(
        [
            elic_row(
                2,
                biz_date=dt.date(2023, 6, 1),
                credit_amount=Decimal("10.00"),
                drawn_amount=Decimal("10.01"),
            ),
            elic_row(
                3, biz_date=dt.date(2023, 6, 30), credit_amount=Decimal("10.00"), drawn_amount=None
            ),
        ]
    )
    out = validator.validate("ELIC", frame, run_name="typed", params={"file_date": "2023-06-15"})
    assert _issues(out) == {
        (2, "drawn_amount", "DRAWN_EXCEEDS_CREDIT"),
        (3, "biz_date", "DATE_IN_FUTURE"),
        (3, "drawn_amount", "LOAN_AMOUNT_MISSING"),
    }


def test_our_mistakes_raise_config_error(validator: Validator) -> None:
    frame = elic_frame([elic_row(2)])
    with pytest.raises(ConfigError, match="file_date"):
        validator.validate("ELIC", frame, run_name="no-param")
    with pytest.raises(ConfigError, match="uscc"):
        validator.validate(
            "ELIC", frame.drop(columns="uscc"), run_name="x", params={"file_date": FILE_DATE}
        )
    with pytest.raises(ConfigError, match="source_line"):
        validator.validate(
            "ELIC", frame.drop(columns="source_line"), run_name="x", params={"file_date": FILE_DATE}
        )
    with pytest.raises(ConfigError):
        validator.validate("NOPE", frame, run_name="x")


# ---------------------------------------------------------------- Data Docs


def test_data_docs_page_names_the_failing_expectation(validator: Validator, docs_dir: Path) -> None:
    secret_id = "110105194912310021"  # invalid, and personal data
    rows = [elic_row(2), elic_row(7, uscc=USCC_OK[:17] + "U"), elic_row(8, legal_rep_id=secret_id)]
    out = validator.validate(
        "ELIC",
        elic_frame(rows),
        run_name="ELIC_WZB_20230615.csv#1",
        params={"file_date": FILE_DATE},
    )
    assert out.issues == [
        RowIssue(7, "uscc", "INVALID_USCC", ROW_REASONS["INVALID_USCC"]),
        RowIssue(8, "legal_rep_id", "INVALID_RESIDENT_ID", ROW_REASONS["INVALID_RESIDENT_ID"]),
    ]
    assert out.docs_page and not Path(out.docs_page).is_absolute()
    page = docs_dir / out.docs_page
    html = page.read_text(encoding="utf-8")
    assert "values must be valid unified social credit codes" in html
    assert "values must be valid resident ID numbers" in html
    assert USCC_OK[:17] + "U" in html  # the failing value, next to its source_line
    assert secret_id not in html and "1****************1" in html
    for stored in (docs_dir / ".gx").rglob("*.json"):
        assert secret_id not in stored.read_text(encoding="utf-8")
    index = (docs_dir / "index.html").read_text(encoding="utf-8")
    assert out.docs_page in index
    assert (docs_dir / "expectations" / "elic.html").exists()

    # a second validation adds its page and keeps the first
    again = validator.validate(
        "ELIC",
        elic_frame(rows[:1]),
        run_name="ELIC_WZB_20230615.csv#2",
        params={"file_date": FILE_DATE},
    )
    assert again.success and again.docs_page != out.docs_page
    assert page.exists() and (docs_dir / again.docs_page).exists()
    index = (docs_dir / "index.html").read_text(encoding="utf-8")
    assert out.docs_page in index and again.docs_page in index


def test_without_data_docs_there_is_no_page() -> None:
    v = Validator(EXPECTATIONS)
    out = v.validate("USAGE", usage_frame([usage_row(1)]), run_name="plain")
    assert out.success and out.docs_page is None


# ---------------------------------------------------------------- one page per file


def _html_text(path: Path) -> str:
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


def test_file_run_publishes_one_page_for_all_chunks(tmp_path: Path) -> None:
    validator = Validator(EXPECTATIONS, tmp_path)
    secret_id = "110105194912310021"  # invalid, and personal data
    bad_uscc = USCC_OK[:17] + "U"
    run = validator.file_run("ELIC", "ELIC_WZB_20230615.csv")
    line, issues = 2, []
    for n_bad in (3, 4, 0):  # three chunks of ten rows
        rows = []
        for i in range(10):
            over = {"uscc": bad_uscc, "legal_rep_id": secret_id} if i < n_bad else {}
            rows.append(elic_row(line, **over))
            line += 1
        out = run.validate(elic_frame(rows), params={"file_date": FILE_DATE})
        assert out.docs_page is None and out.evaluated == 10
        assert out.success is (n_bad == 0)
        issues += out.issues
    # row issues are per chunk, as before: every bad row, with its own line
    assert {(i.line, i.field) for i in issues} == {
        (line, field)
        for line in (*range(2, 5), *range(12, 16))
        for field in ("uscc", "legal_rep_id")
    }
    assert not list((tmp_path / ".gx" / "validations").rglob("*.json"))  # nothing stored yet

    page = run.publish()
    assert page and not Path(page).is_absolute()
    stored = list((tmp_path / ".gx" / "validations").rglob("*.json"))
    assert len(stored) == 1  # one result for the file, not one per chunk
    assert [
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("validations/**/*.html")
    ] == [page]
    text = _html_text(tmp_path / page)
    assert "7 unexpected values found" in text and "of 30 total rows" in text
    # counts summed over the chunks; all 7 failing rows fit the sample, so their lines show
    assert f"{bad_uscc} 7 2, 3, 4, 12, 13, 14, 15" in text
    assert "values must be valid resident ID numbers" in text
    assert "1****************1 7" in text  # masked, with the file-wide count
    html = (tmp_path / page).read_text(encoding="utf-8")
    assert secret_id not in html and secret_id not in stored[0].read_text(encoding="utf-8")
    data = json.loads(stored[0].read_text(encoding="utf-8"))
    assert data["success"] is False
    assert data["statistics"]["evaluated_expectations"] == len(_suite("elic.json")["expectations"])
    assert data["statistics"]["unsuccessful_expectations"] == 2
    for evr in data["results"]:
        # per-row lists only when the ≤ 20 samples are every failing row of the file
        if "unexpected_index_list" in evr["result"]:
            assert len(evr["result"]["unexpected_index_list"]) == evr["result"]["unexpected_count"] <= 20
        if "row_condition" not in evr["expectation_config"]["kwargs"]:
            assert evr["result"]["element_count"] == 30  # summed over the chunks
    assert page in (tmp_path / "index.html").read_text(encoding="utf-8")
    assert (tmp_path / "expectations" / "elic.html").exists()


def test_file_result_sums_the_chunks(tmp_path: Path, plain_gx) -> None:  # type: ignore[no-untyped-def]
    """Counts and percents of the merged result equal GX's validation of the whole file."""
    validator = Validator(EXPECTATIONS, tmp_path)
    rows = [
        elic_row(
            2 + i,
            uscc=f"I{i:017d}" if i % 3 == 0 else USCC_OK,
            legal_rep_id=None if i % 4 else ID_OK,
        )
        for i in range(45)
    ]
    rows[5]["drawn_amount"] = -1.0
    rows[30]["biz_id"] = rows[31]["biz_id"] = "DUP"  # within one chunk
    frame = elic_frame(rows)
    params = {"file_date": FILE_DATE}
    whole = plain_gx(frame)
    run = validator.file_run("ELIC", "sums")
    for start in range(0, 45, 15):
        run.validate(frame.iloc[start : start + 15], params=params)
    merged = run.result()
    assert merged.success == whole.success and merged.statistics == whole.statistics
    keys = ("element_count", "missing_count", "unexpected_count", "unexpected_percent")
    keys += ("unexpected_percent_total", "unexpected_percent_nonmissing", "missing_percent")
    for got, want in zip(merged.results, whole.results, strict=True):
        assert got.success == want.success
        for key in keys:
            assert got.result.get(key) == pytest.approx(want.result.get(key)), key
        assert got.result.get("partial_unexpected_list") == want.result.get(
            "partial_unexpected_list"
        )
    uscc = next(r for r in merged.results if r.expectation_config.type.endswith("valid_uscc"))
    # 15 distinct failures: all listed (at most 20), each once; more than 20 are sampled
    assert len(uscc.result["partial_unexpected_counts"]) == 15
    assert len(uscc.result["partial_unexpected_index_list"]) == 15
    assert len(uscc.result["unexpected_index_list"]) == 15  # complete: every failing row


def test_file_run_keeps_at_most_twenty_samples(tmp_path: Path) -> None:
    validator = Validator(EXPECTATIONS, tmp_path)
    run = validator.file_run("ELIC", "many")
    for chunk in range(3):
        rows = [elic_row(100 * chunk + i, uscc=f"I{100 * chunk + i:017d}") for i in range(2, 17)]
        run.validate(elic_frame(rows), params={"file_date": FILE_DATE})
    uscc = next(
        r
        for r in run.result().results
        if r.expectation_config.kwargs["column"] == "uscc"
        and r.expectation_config.type.endswith("valid_uscc")
    )
    assert uscc.result["unexpected_count"] == 45
    assert uscc.result["partial_unexpected_list"] == [f"I{n:017d}" for n in range(2, 17)] + [
        f"I{n:017d}" for n in range(102, 107)
    ]
    assert len(uscc.result["partial_unexpected_counts"]) == 20
    assert len(uscc.result["partial_unexpected_index_list"]) == 20
    assert "unexpected_index_list" not in uscc.result  # 20 of 45: no per-row list claimed
    text = _html_text(tmp_path / run.publish())
    assert "45 unexpected values found" in text
    assert "Sampled Unexpected Values" in text  # 20 of 45 counted: no "Count" claimed


def test_validate_without_publishing_stores_nothing(tmp_path: Path) -> None:
    validator = Validator(EXPECTATIONS, tmp_path)
    frame = elic_frame([elic_row(2), elic_row(3, uscc=USCC_OK[:17] + "U")])
    out = validator.validate(
        "ELIC", frame, run_name="quiet", params={"file_date": FILE_DATE}, publish=False
    )
    assert out.docs_page is None and [i.line for i in out.issues] == [3]
    assert not (tmp_path / ".gx" / "validations").exists() or not list(
        (tmp_path / ".gx" / "validations").rglob("*.json")
    )
    assert validator.file_run("ELIC", "empty").publish() is None  # no chunk, no page
    with pytest.raises(ConfigError):
        validator.file_run("NOPE", "x")


def test_suite_pages_are_rendered_once(tmp_path: Path) -> None:
    import os

    Validator(EXPECTATIONS, tmp_path)
    pages = [tmp_path / "expectations" / f"{Path(f).stem}.html" for f in SUITE_FILES.values()]
    assert all(p.exists() for p in pages)
    old = 1_000_000_000  # 2001: any rebuild would show as a newer mtime
    for p in pages:
        os.utime(p, (old, old))
    Validator(EXPECTATIONS, tmp_path)
    assert [p.stat().st_mtime for p in pages] == [old] * len(pages)
    # a changed marker (suites, GX or renderers changed) or a missing page rebuilds them
    (tmp_path / ".gx" / "suite_pages.sha256").write_text("stale\n", encoding="ascii")
    Validator(EXPECTATIONS, tmp_path)
    assert all(p.stat().st_mtime > old for p in pages)
    pages[0].unlink()
    Validator(EXPECTATIONS, tmp_path)
    assert pages[0].exists()


def test_columns_a_row_condition_reads() -> None:
    """The GX frame keeps only these columns: a condition we cannot read keeps them all."""
    from govbank.validate.suites import ALL_COLUMNS, condition_columns

    cmp = {"type": "comparison", "column": {"name": "biz_type"}, "operator": "==", "parameter": "x"}
    null = {"type": "nullity", "column": {"name": "status"}, "is_null": True}
    assert condition_columns(cmp) == {"biz_type"}
    assert condition_columns({"type": "and", "conditions": [cmp, {"type": "or", "conditions": [null]}]}) == {
        "biz_type", "status"}
    assert condition_columns('biz_type == "x"') == {ALL_COLUMNS}
    assert condition_columns({"type": "pass_through", "pass_through_filter": "a > 1"}) == {ALL_COLUMNS}
    assert condition_columns({"type": "and", "conditions": [cmp, "status == 1"]}) == {"biz_type", ALL_COLUMNS}


def test_modules_gx_imports_for_suites_we_lack_load_only_when_used(tmp_path: Path) -> None:
    """scipy.stats and altair (imported by GX for expectations we lack) stay unloaded
    through a whole file run, and still work for whoever reads them."""
    code = f"""
import sys
import pandas as pd
sys.path.insert(0, {str(ROOT / "tests" / "unit")!r})
from test_validate import elic_frame, elic_row, FILE_DATE
from govbank.validate import Validator
v = Validator({str(EXPECTATIONS)!r}, {str(tmp_path)!r})
run = v.file_run("ELIC", "deferred")
out = run.validate(elic_frame([elic_row(2), elic_row(3, status="无效")]), params={{"file_date": FILE_DATE}})
assert [i.reason_code for i in out.issues] == ["INVALID_ENUM"], out.issues
assert run.publish()
loaded = [m for m in ("scipy.stats", "scipy.stats._stats_py", "altair", "altair.vegalite") if m in sys.modules]
assert not loaded, loaded  # the stand-ins left sys.modules with GX's import
import scipy.stats.distributions  # a submodule first: loaded once, no second copy
from scipy.stats._stats_py import PearsonRResult
assert isinstance(scipy.stats.pearsonr([1, 2, 3], [1, 2, 4]), PearsonRResult)
assert scipy.stats.distributions is sys.modules["scipy.stats.distributions"]
from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl
assert abs(kl.stats.entropy([0.5, 0.5], [0.5, 0.5])) < 1e-12  # GX's stand-in reaches it
assert kl.alt.Chart.__module__.startswith("altair.vegalite")
assert type(sys.modules["scipy.stats"]) is type(sys) and type(sys.modules["altair"]) is type(sys)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": "include"},
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_memoised_configurations_and_filters_change_no_result(validator: Validator, plain_gx) -> None:  # type: ignore[no-untyped-def]
    """GX's expectation configurations are built, and each row condition filtered, once
    per validation: same results as GX's own code, and no memo outside a validation."""
    rows = [elic_row(2), elic_row(3, status="无效", drawn_amount=None), elic_row(4, biz_id="D"),
            elic_row(5, biz_id="D", biz_type="一照开户", credit_amount=None, drawn_amount=None),
            elic_row(6, uscc=USCC_OK[:17] + "U", biz_date=pd.Timestamp("2023-06-16")),
            elic_row(7, biz_type="一照开户", drawn_amount=None)]

    def results() -> str:
        result = plain_gx(elic_frame(rows))
        return json.dumps([r.to_json_dict() for r in result.results], sort_keys=True, default=str)

    with gx_runtime.memoised() as memo:
        with_memo = results()
    assert gx_runtime.current_memo() is None
    with gx_runtime.patches_disabled():
        without = results()
    assert with_memo == without
    assert 0 < len(memo.configurations) * 5 < memo.configuration_reads, memo
    # four expectations with a row condition, two distinct conditions
    assert (len(memo.filters), memo.filter_calls) == (2, 20)
    # 5 failing expectations (enum, loan amount, duplicate, USCC, date) and the
    # row-condition one: a 一照开户 row with a credit amount
    assert with_memo.count('"success": false') == 6

    # the Validator memoises each validation and leaves no memo behind
    out = validator.validate("ELIC", elic_frame(rows), run_name="memo", params={"file_date": FILE_DATE})
    assert len(out.issues) == 7 and gx_runtime.current_memo() is None
