"""Contracts a bank or an operator got wrong (issue 17, case 11): refused quickly, named
precisely, and stopping only their own bank."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from govbank.config.contracts import (
    ContractProblem,
    load_contract,
    load_contracts,
    load_contracts_report,
)
from govbank.domain.errors import ConfigError
from tests.conftest import ROOT

SHIPPED = ROOT / "include" / "contracts"

GOOD = {
    "bank_code": "TESTB",
    "bank_name": "测试银行",
    "joined_on": "2023-01-01",
    "feeds": {"ELIC": {"delimiter": ","}, "OUTLET": {}},
}

ALIAS_BOMB = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
bank_code: *h
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_an_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "TESTB.yaml", ALIAS_BOMB)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="TESTB.yaml") as err:
        load_contract(path)
    assert time.monotonic() - started < 2
    assert "alias" in str(err.value) and len(str(err.value)) < 300


def test_a_single_anchor_or_alias_is_refused_too(tmp_path: Path) -> None:
    text = yaml.safe_dump(GOOD, allow_unicode=True).replace("feeds:", "feeds: &f").replace(
        "bank_name:", "extra: *f\nbank_name:"
    )
    with pytest.raises(ConfigError, match="TESTB.yaml"):
        load_contract(write(tmp_path, "TESTB.yaml", text))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"joined_on": "2023-02-30"}, "joined_on"),  # PyYAML raised a bare ValueError
        ({"joined_on": "not a date"}, "joined_on"),
        ({"feeds": {"ELIC": {"reject_threshold": 7}}}, "feeds.ELIC.reject_threshold"),
        ({"bank_name": ""}, "bank_name"),
    ],
)
def test_every_error_names_the_file_and_the_field(tmp_path: Path, change: dict, field: str) -> None:
    doc = {**GOOD, **change}
    text = yaml.safe_dump(doc, allow_unicode=True).replace("'2023-02-30'", "2023-02-30")
    with pytest.raises(ConfigError) as err:
        load_contract(write(tmp_path, "TESTB.yaml", text))
    message = str(err.value)
    assert "TESTB.yaml" in message and field in message, message
    assert len(message) < 400


def test_an_unquoted_date_still_loads(tmp_path: Path) -> None:
    text = "bank_code: TESTB\nbank_name: 测试银行\njoined_on: 2023-01-01\nfeeds:\n  OUTLET: {}\n"
    contract = load_contract(write(tmp_path, "TESTB.yaml", text))
    assert str(contract.joined_on) == "2023-01-01"


def test_a_huge_contract_is_refused_unread(tmp_path: Path) -> None:
    path = write(tmp_path, "TESTB.yaml", "# " + "x" * 1_000_000 + "\n")
    with pytest.raises(ConfigError, match="TESTB.yaml"):
        load_contract(path)


def test_a_bad_contract_stops_only_its_own_bank(tmp_path: Path) -> None:
    for shipped in sorted(SHIPPED.glob("*.yaml")):
        write(tmp_path, shipped.name, shipped.read_text(encoding="utf-8"))
    write(tmp_path, "BADB.yaml", ALIAS_BOMB)
    write(tmp_path, "BADC.yaml", yaml.safe_dump({**GOOD, "bank_code": "BADC", "joined_on": "2023-13-01"}))
    good, problems = load_contracts_report(tmp_path)
    assert set(good) == set(load_contracts(SHIPPED))
    assert [(p.file, p.bank_code) for p in problems] == [("BADB.yaml", "BADB"), ("BADC.yaml", "BADC")]
    assert all(isinstance(p, ContractProblem) and p.file in p.error for p in problems)
    assert "joined_on" in problems[1].error
    with pytest.raises(ConfigError):  # the all-or-nothing loader keeps its behaviour
        load_contracts(tmp_path)
