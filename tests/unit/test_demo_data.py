"""The demo drop: same seed, same bytes; its own accounting gives the seed report; every
file reads back, in the encoding its bank's contract implies, as the rows it was planned
from; and the planned receipts are consistent. The run through the real pipeline is
the end-to-end test's job."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import os
import re
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path

import pytest

from govbank.config.contracts import BankContract, load_contracts
from govbank.config.settings import DEFAULT_CONTRACTS_DIR
from govbank.domain.datasets import FIELDS, Dataset
from govbank.domain.identifiers import is_valid_resident_id, is_valid_uscc
from govbank.domain.reasons import FILE_REASONS, ROW_REASONS
from govbank.domain.reference import OUHAI_LAT, OUHAI_LON, town_lookup, towns
from govbank_dev import demo

# What each contract (and its comment) implies about how the bank sends: text codec
# (None = xlsx), gzip, extension, delimiter, how towns are written.
SENDS = {
    "WZB": ("gb18030", False, ".txt", "|", "name"),
    "OHRCB": (None, False, ".xlsx", None, "name"),
    "CCBOH": ("utf-8", False, ".csv", ",", "code12"),
    "ABCOH": ("utf-8-sig", True, ".csv.gz", ",", "name"),
    "ICBCOH": ("gb18030", False, ".csv", ",", "code9"),
}
FILE_NAME = re.compile(
    r"^(OUTLET|ELIC)_([A-Z0-9]{2,16})_(\d{8})(?:_(\d{2}))?\.(csv|txt|xlsx|csv\.gz|txt\.gz)$"
)
YTD = (dt.date(2023, 1, 1), dt.date(2023, 6, 15))


@pytest.fixture(scope="module")
def drop() -> demo.DemoDrop:
    return demo.build_demo()


@pytest.fixture(scope="module")
def contracts() -> dict[str, BankContract]:
    return load_contracts(DEFAULT_CONTRACTS_DIR)


def _tree(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


# --------------------------------------------------------------------------- determinism


def test_two_builds_write_identical_bytes(drop: demo.DemoDrop, tmp_path: Path) -> None:
    written = demo.write_drop(drop, tmp_path / "a")
    demo.write_drop(demo.build_demo(), tmp_path / "b")
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert a == b
    assert written == [tmp_path / "a" / f.bank_code / "inbox" / f.name for f in drop.files]
    for bank in SENDS:
        assert a[f"{bank}/outbox"] is None, "outbox must exist as a folder"
        assert not [k for k in a if k.startswith(f"{bank}/outbox/")], "outbox must be empty"
        inbox = [k for k in a if k.startswith(f"{bank}/inbox/")]
        data = [k for k in inbox if not k.endswith(".ok")]
        assert sorted(k + ".ok" for k in data) == sorted(k for k in inbox if k.endswith(".ok"))


def test_another_seed_tells_the_same_story_with_other_data(drop: demo.DemoDrop) -> None:
    other = demo.build_demo(seed=7)
    assert [f.name for f in other.files] == [f.name for f in drop.files]
    assert [f.data for f in other.files] != [f.data for f in drop.files]
    assert _kpi(other) == demo.EXPECTED_KPI


def test_cli_in_a_fresh_interpreter_writes_the_same_bytes(
    drop: demo.DemoDrop, tmp_path: Path
) -> None:
    # another hash seed: nothing may depend on set or dict-of-str iteration order
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    proc = subprocess.run(
        [sys.executable, "-m", "govbank_dev.demo", "--landing", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(drop.files)
    for f, line in zip(drop.files, lines, strict=True):
        assert line.startswith(f"{f.bank_code}/inbox/{f.name}\t")
        assert f"expect={f.expected.status}" in line
        inbox = tmp_path / f.bank_code / "inbox"
        assert (inbox / f.name).read_bytes() == f.data, f.name
        assert (inbox / f"{f.name}.ok").read_bytes() == f.ok, f.name


def test_xlsx_carries_fixed_times(drop: demo.DemoDrop) -> None:
    books = [f for f in drop.files if f.encoding == "xlsx"]
    assert books
    for f in books:
        with zipfile.ZipFile(io.BytesIO(f.data)) as zf:
            stamps = {i.date_time for i in zf.infolist()}
            core = zf.read("docProps/core.xml").decode()
        day = f.business_date
        assert stamps == {(day.year, day.month, day.day, 18, 30, 0)}, f.name
        assert f"{day:%Y-%m-%d}T18:30:00Z</dcterms:modified>" in core, f.name
        assert f"{day:%Y-%m-%d}T18:30:00Z</dcterms:created>" in core, f.name


# --------------------------------------------------------------------------- the figures


def _kpi(drop: demo.DemoDrop) -> dict[str, Decimal]:
    """mart_kpi as warehouse.md defines it, from what the drop plans to be loaded."""
    current: list[dict] = []
    latest: dict[tuple[str, str], dict] = {}
    for bank in drop.banks.values():
        files = sorted(bank.files, key=lambda f: (f.business_date, f.dataset != "OUTLET", f.seq))
        snapshots = [f for f in files if f.dataset == Dataset.OUTLET]
        last = snapshots[-1]  # a full snapshot: outlets it leaves out are closed
        current += [
            {**r, "bank_code": bank.bank_code}
            for r, why in zip(last.rows, last.row_reasons, strict=True)
            if why is None
        ]
        for f in files:
            if f.dataset != Dataset.ELIC or f.expected.status == "rejected":
                continue
            for r, why in zip(f.rows, f.row_reasons, strict=True):
                if why is None:
                    latest[(bank.bank_code, r["biz_id"])] = r  # a later version replaces
    active = [o for o in current if o["status"] == "正常"]
    supers = [o for o in active if o["outlet_type"] == "政务服务超市"]
    biz = [
        r for r in latest.values() if r["status"] == "有效" and YTD[0] <= r["biz_date"] <= YTD[1]
    ]
    loans = [r for r in biz if r["biz_type"] == "一照贷款"]
    return {
        "service_supermarkets": Decimal(len(supers)),
        "service_supermarkets_opened_ytd": Decimal(
            sum(o["opened_on"].year == drop.as_of.year for o in supers)
        ),
        "self_service_terminals": Decimal(sum(o["outlet_type"] == "自助终端" for o in active)),
        "mobile_service_vans": Decimal(sum(o["outlet_type"] == "流动服务车" for o in active)),
        "banks_in_cooperation": Decimal(len({o["bank_code"] for o in active})),
        "elicense_biz_total": Decimal(len(biz)),
        "elicense_account_openings": Decimal(sum(r["biz_type"] == "一照开户" for r in biz)),
        "elicense_loans": Decimal(len(loans)),
        "credit_amount_yuan": sum((r["credit_amount"] for r in loans), Decimal("0.00")),
        "drawn_amount_yuan": sum((r["drawn_amount"] for r in loans), Decimal("0.00")),
    }


def test_expected_kpi_is_the_seed_report() -> None:
    assert demo.AS_OF == dt.date(2023, 6, 15)
    assert {k: str(v) for k, v in demo.EXPECTED_KPI.items()} == {
        "service_supermarkets": "62",
        "service_supermarkets_opened_ytd": "14",
        "self_service_terminals": "17",
        "mobile_service_vans": "1",
        "banks_in_cooperation": "5",
        "elicense_biz_total": "837",
        "elicense_account_openings": "208",
        "elicense_loans": "629",
        "credit_amount_yuan": "1187000000.00",
        "drawn_amount_yuan": "1040000000.00",
    }


def test_drop_accounting_adds_up_to_the_report(drop: demo.DemoDrop) -> None:
    assert _kpi(drop) == demo.EXPECTED_KPI
    assert max(f.business_date for f in drop.files) == drop.as_of


def test_noise_would_move_the_figures_if_mishandled(drop: demo.DemoDrop) -> None:
    """Each trap changes the figures when the pipeline gets it wrong, so each is a test."""
    versions: dict[tuple[str, str], list[dict]] = {}
    rejected_file_ids, rejected_row_ids = set(), set()
    for bank in drop.banks.values():
        for r in bank.elic_records:
            key = (bank.bank_code, r["biz_id"])
            if r["reject_reason"] is None:
                versions.setdefault(key, []).append(r)
            elif r["reject_reason"] in FILE_REASONS:
                rejected_file_ids.add(key)
            else:
                rejected_row_ids.add(key)
    withdrawn = [v for v in versions.values() if len(v) > 1 and v[-1]["status"] == "撤销"]
    corrected = [
        v
        for v in versions.values()
        if len(v) > 1
        and v[-1]["status"] == "有效"
        and (v[0]["credit_amount"], v[0]["drawn_amount"])
        != (v[-1]["credit_amount"], v[-1]["drawn_amount"])
    ]
    last_year = [v for v in versions.values() if v[-1]["biz_date"].year == 2022]
    assert all(v[0]["status"] == "有效" for v in withdrawn) and len(withdrawn) >= 4
    assert len(corrected) >= 4
    assert len(last_year) >= 5
    # rows of the rejected file never come back; some rejected rows are sent again fixed
    assert len(rejected_file_ids) >= 20 and not rejected_file_ids & versions.keys()
    assert rejected_row_ids & versions.keys() and rejected_row_ids - versions.keys()


# --------------------------------------------------------------------------- the files


def _canon(name: str, kind: str, value: object, contract: BankContract, ds: Dataset) -> object:
    """One cell as the pipeline would understand it (bank-files.md), for the round trip."""
    feed = contract.feeds[ds]
    if isinstance(value, str):
        value = value.strip()  # full-width spaces included
        if value == "":
            return None
    if value is None:
        return None
    if name == "town":
        return town_lookup()[str(value)]
    if kind == "date":
        if isinstance(value, dt.date):
            return value
        for fmt in feed.date_formats:
            try:
                return dt.datetime.strptime(str(value), fmt).date()
            except ValueError:
                continue
        raise AssertionError(f"{value!r} matches none of {feed.date_formats}")
    if kind in ("amount", "decimal"):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
        return number * 10000 if kind == "amount" and feed.amount_unit == "万元" else number
    if kind == "int":
        return int(value)  # type: ignore[call-overload]
    return str(value)


def _read_back(f: demo.PlannedFile, contract: BankContract) -> tuple[list[str], list[dict]]:
    codec, gz, ext, delimiter, _ = SENDS[f.bank_code]
    if codec is None:
        from python_calamine import CalamineWorkbook

        table = CalamineWorkbook.from_filelike(io.BytesIO(f.data)).get_sheet_by_index(0).to_python()
    else:
        raw = gzip.decompress(f.data) if gz else f.data
        if codec == "utf-8-sig":
            assert raw.startswith(b"\xef\xbb\xbf"), f.name
        else:
            assert not raw.startswith(b"\xef\xbb\xbf"), f.name
        if codec == "gb18030":
            with pytest.raises(UnicodeDecodeError):
                raw.decode("utf-8")  # really GB18030, not UTF-8 that happens to decode
        text = raw.decode(codec)
        table = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    header, body = [str(h) for h in table[0]], table[1:]
    to_field = {h: n for n, h in contract.feeds[f.dataset].header_map(f.dataset).items()}
    kinds = {fl.name: fl.kind for fl in FIELDS[f.dataset]}
    rows = []
    for cells in body:
        assert len(cells) == len(header), f.name
        rows.append(
            {
                to_field[h]: _canon(to_field[h], kinds[to_field[h]], v, contract, f.dataset)
                for h, v in zip(header, cells, strict=True)
            }
        )
    return header, rows


def test_files_read_back_in_their_contract_encoding(
    drop: demo.DemoDrop, contracts: dict[str, BankContract]
) -> None:
    for f in drop.files:
        contract = contracts[f.bank_code]
        codec, gz, ext, _, town_style = SENDS[f.bank_code]
        assert f.name.endswith(ext) and f.gzipped == gz, f.name
        assert f.encoding == (codec or "xlsx"), f.name
        m = FILE_NAME.match(f.name)
        assert m and m[2] == f.bank_code and m[3] == f"{f.business_date:%Y%m%d}", f.name
        header, rows = _read_back(f, contract)
        headers = contract.feeds[f.dataset].header_map(f.dataset)
        required = {headers[fl.name] for fl in FIELDS[f.dataset] if fl.required}
        assert required <= set(header) <= set(headers.values()), f.name
        assert len(rows) == len(f.rows), f.name
        for line, (got, planned) in enumerate(zip(rows, f.rows, strict=True), start=2):
            assert {k: got.get(k) for k in planned} == planned, f"{f.name} line {line}"
        if f.dataset == Dataset.OUTLET and codec is not None:
            raw_towns = [r[header.index(headers["town"])] for r in _raw_table(f)]
            width = {"name": None, "code12": 12, "code9": 9}[town_style]
            assert all(
                (len(t) == width and t.isdigit()) if width else not t.isdigit() for t in raw_towns
            ), f.name


def _raw_table(f: demo.PlannedFile) -> list[list[str]]:
    codec, gz, _, delimiter, _ = SENDS[f.bank_code]
    raw = gzip.decompress(f.data) if gz else f.data
    return list(csv.reader(io.StringIO(raw.decode(codec), newline=""), delimiter=delimiter))[1:]


def test_ok_files_match_their_data(drop: demo.DemoDrop) -> None:
    empty = 0
    for f in drop.files:
        if f.ok == b"":
            empty += 1
            continue
        fields = dict(line.split("=", 1) for line in f.ok.decode("ascii").splitlines())
        assert fields["sha256"] == hashlib.sha256(f.data).hexdigest() == f.sha256, f.name
        if f.expected.reasons == ("OK_ROWS_MISMATCH",):
            assert int(fields["rows"]) != len(f.rows), f.name
        else:
            assert int(fields["rows"]) == len(f.rows), f.name
    assert 1 <= empty <= 2


def test_planned_outcomes_are_consistent(
    drop: demo.DemoDrop, contracts: dict[str, BankContract]
) -> None:
    statuses = [f.expected.status for f in drop.files]
    assert statuses.count("rejected") == 1
    assert statuses.count("partially_accepted") >= 5
    assert set(statuses) == {"accepted", "partially_accepted", "rejected"}
    assert len({f.name for f in drop.files}) == len(drop.files)
    for f in drop.files:
        e = f.expected
        assert e.rows_total == e.rows_loaded + e.rows_rejected == len(f.rows), f.name
        bad = [(i + 2, why) for i, why in enumerate(f.row_reasons) if why is not None]
        if e.status == "rejected":
            assert e.rows_loaded == 0 and not bad and not e.rejects, f.name
            assert e.reasons and set(e.reasons) <= FILE_REASONS.keys(), f.name
            continue
        assert list(e.rejects) == bad and e.rows_rejected == len(bad), f.name
        assert e.reasons == tuple(sorted({why for _, why in bad})), f.name
        assert set(e.reasons) <= ROW_REASONS.keys(), f.name
        assert e.status == ("partially_accepted" if bad else "accepted"), f.name
        threshold = contracts[f.bank_code].feeds[f.dataset].reject_threshold
        assert e.rows_rejected / e.rows_total < threshold, f.name
    assert drop.expected()["ELIC_CCBOH_20230531.csv"].status == "rejected"


# --------------------------------------------------------------------------- the story


def test_outlet_story(drop: demo.DemoDrop) -> None:
    centres = {t.town_code: t for t in towns()}
    current = {}
    for bank in drop.banks.values():
        days = sorted(bank.outlet_snapshots)
        assert len(days) >= 2
        for day in days:
            rows = bank.outlet_snapshots[day]
            assert len({r["outlet_code"] for r in rows}) == len(rows)
            for r in rows:
                assert r["opened_on"] <= day
                if r["outlet_type"] in ("政务服务超市", "自助终端"):
                    assert r["longitude"] is not None and r["latitude"] is not None
                if r["longitude"] is not None and r["reject_reason"] is None:
                    t = centres[r["town"]]
                    assert abs(r["longitude"] - t.longitude) <= Decimal("0.0101")
                    assert abs(r["latitude"] - t.latitude) <= Decimal("0.0101")
                    assert OUHAI_LON[0] <= r["longitude"] <= OUHAI_LON[1]
                    assert OUHAI_LAT[0] <= r["latitude"] <= OUHAI_LAT[1]
        current[bank.bank_code] = [
            r for r in bank.outlet_snapshots[days[-1]] if r["reject_reason"] is None
        ]

    def count(bank: str, otype: str, status: str = "正常") -> int:
        return sum(r["outlet_type"] == otype and r["status"] == status for r in current[bank])

    assert count("WZB", "政务服务超市") == 14
    assert count("OHRCB", "自助终端") == 17
    vans = [r for r in current["OHRCB"] if r["outlet_type"] == "流动服务车"]
    assert [v["town"] for v in vans] == ["330304108000"]  # 泽雅镇
    assert sum(count(b, "政务服务超市", "暂停") for b in current) == 1
    assert sum(count(b, "普通网点") for b in current) >= 5
    wzb = drop.banks["WZB"].outlet_snapshots
    first, second = (wzb[d] for d in sorted(wzb))
    left_out = {r["outlet_code"] for r in first} - {r["outlet_code"] for r in second}
    assert [r["outlet_type"] for r in first if r["outlet_code"] in left_out] == ["普通网点"]


def test_elic_rows_follow_the_rules_except_the_planted_faults(drop: demo.DemoDrop) -> None:
    for bank in drop.banks.values():
        snaps = bank.outlet_snapshots
        file_day = {f.name: f.business_date for f in bank.files}
        for r in bank.elic_records:
            day = file_day[r["source_file"]]
            known = {
                o["outlet_code"]
                for d, rows in snaps.items()
                if d <= day
                for o in rows
                if o["reject_reason"] is None
            }
            faults = set()
            if not is_valid_uscc(r["uscc"]):
                faults.add("INVALID_USCC")
            if r["legal_rep_id"] is not None and not is_valid_resident_id(r["legal_rep_id"]):
                faults.add("INVALID_RESIDENT_ID")
            if r["biz_date"] > day:
                faults.add("DATE_IN_FUTURE")
            if r["outlet_code"] not in known:
                faults.add("UNKNOWN_OUTLET")
            if r["biz_type"] == "一照贷款":
                if r["drawn_amount"] > r["credit_amount"]:
                    faults.add("DRAWN_EXCEEDS_CREDIT")
                for amount in (r["credit_amount"], r["drawn_amount"]):
                    assert amount >= 0 and amount % 10000 == 0, r
            else:
                assert r["credit_amount"] is None and r["drawn_amount"] is None, r
            expected = r["reject_reason"]
            if expected in FILE_REASONS:
                assert not faults, r  # the file is refused as a whole, its rows are fine
            else:
                assert faults == ({expected} if expected else set()), (r, faults)
            assert r["uscc"][2:8] == "330304"
            assert re.fullmatch(r"[\u4e00-\u9fff]{4,30}", r["enterprise_name"]), r
            assert r["legal_rep_name"] is None or re.fullmatch(
                r"[\u4e00-\u9fff]{2,3}", r["legal_rep_name"]
            )
            assert r["biz_date"] >= dt.date(2019, 1, 1)
        for f in bank.files:
            if f.dataset == Dataset.ELIC:
                ids = [r["biz_id"] for r in f.rows]
                assert len(set(ids)) == len(ids), f.name


def test_bank_records_are_the_loaded_latest_versions(drop: demo.DemoDrop) -> None:
    records = demo.bank_records(drop)
    keys = [(r["bank_code"], r["biz_id"]) for r in records]
    assert keys == sorted(set(keys))
    assert all(
        set(r)
        == {
            "bank_code",
            "biz_id",
            "uscc",
            "enterprise_name",
            "biz_type",
            "biz_date",
            "outlet_code",
            "status",
        }
        for r in records
    )
    assert all(is_valid_uscc(r["uscc"]) for r in records)
    assert {r["status"] for r in records} == {"有效", "撤销"}
    ytd = [r for r in records if r["status"] == "有效" and YTD[0] <= r["biz_date"] <= YTD[1]]
    assert len(ytd) == 837
    assert sum(r["biz_type"] == "一照开户" for r in ytd) == 208
    assert {r["bank_code"] for r in records} == set(SENDS)
