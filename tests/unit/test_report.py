"""Issue 20, item 1: the demo's half-year report carries the seed report's figures, in
the text and in the xlsx, every quoted table naming the mart it came from; the wording
comes from the template. The demo goes through the package (process_bank, build_marts)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import Engine, select

from govbank.__main__ import main
from govbank.config.settings import Settings
from govbank.domain.metrics import METRICS
from govbank.elicense.client import UsageRecord
from govbank.elicense.pull import upsert_usages
from govbank.orchestration.runtime import build_marts
from govbank.report import periods_for, write_report, write_reports, yi_yuan
from govbank.warehouse.db import make_engine, upgrade
from govbank.warehouse.schema import (
    dim_metric,
    mart_elicense_monthly,
    mart_reconciliation,
    mart_reconciliation_detail,
)
from govbank_dev.demo import DEFAULT_SEED, build_demo
from govbank_dev.elicense_data import (
    bank_records_from_warehouse,
    parse_now,
    usages_from_bank_records,
)
from tests.conftest import copy_demo_ingested

START, END = dt.date(2023, 1, 1), dt.date(2023, 6, 15)
FIGURES = ("837笔", "开户208笔", "贷款629笔", "11.87亿元", "10.4亿元", "17台", "283项")


@dataclass
class Demo:
    settings: Settings
    engine: Engine
    root: Path
    intended: dict[tuple[str, str, str], dict[str, int]]  # the generator's (bank, month, scene) counts


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_ingested: Path):  # type: ignore[no-untyped-def]
    # the demo drop processed by the package (every bank, in code order), a copy of our own
    root = copy_demo_ingested(demo_ingested, tmp_path_factory.mktemp("report_demo") / "local")
    drop = build_demo()
    url = f"sqlite:///{root / 'warehouse.db'}"
    upgrade(url)  # already at head: changes nothing
    settings = Settings.from_env({"GOVBANK_LOCAL_DIR": str(root), "GOVBANK_WAREHOUSE_URL": url})
    # the government side, as the demo's reference API serves it (pulled here without HTTP)
    generated = usages_from_bank_records(
        bank_records_from_warehouse(url), seed=DEFAULT_SEED, now=parse_now(str(drop.as_of))
    )
    engine = make_engine(url)
    with engine.begin() as conn:
        upsert_usages(conn, [UsageRecord.model_validate_json(json.dumps(u)) for u in generated.usages], "report-test")
    build_marts(settings, drop.as_of)
    yield Demo(settings, engine, root, generated.expected)
    engine.dispose()


def _text(demo: Demo, *args: str, monkeypatch: pytest.MonkeyPatch, capsys) -> str:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GOVBANK_WAREHOUSE_URL", demo.settings.warehouse_url)
    assert main(["report", "--from", str(START), "--to", str(END), *args]) == 0
    return capsys.readouterr().out


def test_half_year_text_carries_the_seed_report(demo: Demo, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    text = _text(demo, "--out", "-", monkeypatch=monkeypatch, capsys=capsys)
    for figure in FIGURES:
        assert figure in text, figure
    assert "新开设政务服务超市14个" in text and "总计达到62个" in text
    assert "将温州银行在我区的14个网点正式纳入政银合作范围" in text
    assert "泽雅镇" in text
    # the demo's reconciliation (make demo: matched=717, bank_only=130, gov_only=87, with Dec 2022)
    assert sum(c["matched"] for c in demo.intended.values()) == 717
    intended = {
        what: sum(c[what] for (_, month, _), c in demo.intended.items() if month >= "2023-01")
        for what in ("matched", "bank_only", "gov_only")
    }
    assert f"一致{intended['matched']}笔" in text
    assert f"仅银行报送{intended['bank_only']}笔、仅平台有记录{intended['gov_only']}笔" in text
    assert "{{" not in text and "{%" not in text
    paragraphs = text.split("\n\n")  # the title, the period, one per theme
    assert len(paragraphs) == 7 and [p[:2] for p in paragraphs[2:]] == ["一、", "二、", "三、", "四、", "五、"]


def test_xlsx_has_the_paragraphs_and_each_table_with_its_source(demo: Demo, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "h1.xlsx"
    _text(demo, "--out", str(out), monkeypatch=monkeypatch, capsys=capsys)
    wb = load_workbook(out)
    first = wb.worksheets[0]
    report = "\n".join(str(c.value) for c in first["A"] if c.value)
    for figure in FIGURES:
        assert figure in report, figure
    assert "14个" in report and "62个" in report and "温州银行在我区的14个网点" in report
    tables = wb.worksheets[1:]
    assert {ws.title for ws in tables} >= {"电子营业执照业务", "自助终端", "政务服务超市", "合作银行", "流动服务车", "对账"}
    for ws in tables:
        assert str(ws["A1"].value).startswith("来源："), ws.title
        assert any(name in ws["A1"].value for name in ("mart_", "fact_elicense_biz")), ws.title

    def rows(title: str) -> list[tuple]:
        return [r for r in wb[title].iter_rows(min_row=4, values_only=True)]

    elic = rows("电子营业执照业务")
    assert sum(r[2] for r in elic) == 208 and sum(r[3] for r in elic) == 629
    assert round(sum(r[4] for r in elic)) == 1_187_000_000 and round(sum(r[5] for r in elic)) == 1_040_000_000
    terminals = rows("自助终端")
    assert len(terminals) == 17 and max(r[5] for r in terminals) == 283
    supers = rows("政务服务超市")
    assert sum(r[2] for r in supers) == 62 and sum(r[3] for r in supers) == 14
    wzb = next(r for r in rows("合作银行") if r[0] == "WZB")
    assert (wzb[1], wzb[3], wzb[5]) == ("温州银行", "是", 14)
    assert [r[4] for r in rows("流动服务车")] == ["泽雅镇"]


def test_docx_is_a_word_document_with_the_paragraphs(demo: Demo, tmp_path: Path) -> None:
    out = tmp_path / "h1.docx"
    with demo.engine.connect() as conn:
        write_report(conn, START, END, out)
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as z:
        assert {"[Content_Types].xml", "_rels/.rels", "word/document.xml"} <= set(z.namelist())
        document = z.read("word/document.xml").decode("utf-8")
    for figure in FIGURES:
        assert figure in document, figure
    assert document.count("<w:tbl>") == 6


def test_the_wording_is_the_operators_template(demo: Demo, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    own = tmp_path / "own.md.j2"
    own.write_text("# 简报\n\n本期电子执照业务{{ elic.total }}笔，授信{{ elic.credit|yi }}。\n", encoding="utf-8")
    monkeypatch.setenv("GOVBANK_REPORT_TEMPLATE", str(own))
    text = _text(demo, "--out", "-", monkeypatch=monkeypatch, capsys=capsys)
    assert text == "# 简报\n\n本期电子执照业务837笔，授信11.87亿元。\n"
    own.write_text("{{ elic.totl }}", encoding="utf-8")  # a typo fails, never prints a gap
    with pytest.raises(Exception, match="totl"):
        _text(demo, "--out", "-", monkeypatch=monkeypatch, capsys=capsys)


def test_a_month_counts_only_its_own_business(demo: Demo) -> None:
    with demo.engine.connect() as conn:
        june = write_report(conn, dt.date(2023, 6, 1), dt.date(2023, 6, 15), "-")
        h1 = write_report(conn, START, END, "-")
    assert "2023年6月1日至6月15日" in june and "837笔" not in june
    assert "本期无新加入的合作银行" in june and "总计达到62个" in june
    assert "2023年1月1日至6月15日" in h1


def test_the_dag_task_writes_the_month_and_the_half_year(demo: Demo, tmp_path: Path) -> None:
    assert periods_for(END) == {"2023-06": (dt.date(2023, 6, 1), END), "2023H1": (START, END)}
    assert periods_for(dt.date(2023, 8, 3))["2023H2"] == (dt.date(2023, 7, 1), dt.date(2023, 8, 3))
    written = write_reports(demo.settings.warehouse_url, END, tmp_path / "reports")
    assert sorted(p.name for p in written) == [
        "govbank_report_2023-06.docx",
        "govbank_report_2023-06.xlsx",
        "govbank_report_2023H1.docx",
        "govbank_report_2023H1.xlsx",
    ]
    assert all(p.stat().st_size > 1000 for p in written)


def test_amounts_are_written_as_reports_write_them() -> None:
    assert yi_yuan(1_187_000_000) == "11.87亿元"
    assert yi_yuan(1_040_000_000) == "10.4亿元"
    assert yi_yuan(1_200_000_000) == "12亿元"
    assert yi_yuan(123_456) == "0亿元"


def test_months_are_dates_and_the_metric_dictionary_is_the_codes(demo: Demo) -> None:
    with demo.engine.connect() as conn:
        for table in (mart_elicense_monthly, mart_reconciliation, mart_reconciliation_detail):
            rows = conn.execute(select(table.c.month, table.c.month_start)).all()
            assert rows, table.name
            for month, first in rows:
                assert first == dt.date.fromisoformat(month + "-01"), (table.name, month, first)
        dictionary = conn.execute(
            select(dim_metric.c.code, dim_metric.c.label, dim_metric.c.unit).order_by(dim_metric.c.position)
        ).all()
    assert [tuple(r) for r in dictionary] == [(m.code, m.label, m.unit) for m in METRICS]
