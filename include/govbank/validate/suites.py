"""Expectation suites: the row rules, stored as data in ``expectations/<suite>.json``.

Each expectation carries ``meta = {"reason_code", "field"}`` so a failure maps straight
to a receipt line; a suite without them is refused when it is read, not when a bank's
file first fails it. Reading a suite needs no GX: the GX objects are built by the
:class:`~govbank.validate.context.Validator`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govbank.domain.errors import ConfigError
from govbank.domain.reasons import ROW_REASONS

SUITE_FILES: dict[str, str] = {
    "OUTLET": "outlet.json",
    "ELIC": "elic.json",
    "USAGE": "elicense_usage.json",
}
LINE_COLUMN = "source_line"  # every validated frame has it: the line a bank sees
ALL_COLUMNS = "*"  # a suite column set holding this reads every column


@dataclass(frozen=True)
class Suite:
    """One dataset's suite as read from its JSON file."""

    dataset: str
    file_name: str
    data: dict[str, Any]
    columns: frozenset[str]  # what its expectations read; may hold ALL_COLUMNS

    @property
    def name(self) -> str:
        return str(self.data["name"])

    def gx_suite(self, gx: Any) -> Any:
        """The GX ``ExpectationSuite``, each rule noted with its reason for the suite page."""
        try:
            suite = gx.ExpectationSuite(**self.data)
        except Exception as exc:  # GX raises several types for a bad suite
            raise ConfigError(f"{self.file_name} is not a valid expectation suite: {exc}") from exc
        for exp in suite.expectations:
            code = exp.meta["reason_code"]
            exp.notes = exp.notes or f"{code}（{exp.meta['field']}）：{ROW_REASONS[code]}"
        return suite


def read_suites(expectations_dir: Path) -> dict[str, Suite]:
    """Every dataset's suite, by dataset name (the keys of :data:`SUITE_FILES`)."""
    suites = {}
    for dataset, fname in SUITE_FILES.items():
        data = read_suite_json(Path(expectations_dir) / fname)
        columns = set().union(*(columns_of(e) for e in data.get("expectations", [])))
        suites[dataset] = Suite(dataset, fname, data, frozenset(columns))
    return suites


def read_suite_json(path: Path) -> dict[str, Any]:
    """A suite's JSON, refused when an expectation lacks its reason code or field."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read expectation suite {path.name}: {exc}") from exc
    for i, exp in enumerate(data.get("expectations", [])):
        meta = exp.get("meta") or {}
        if meta.get("reason_code") not in ROW_REASONS or not meta.get("field"):
            raise ConfigError(
                f"{path.name}: expectation #{i} ({exp.get('type')}) needs meta "
                "reason_code (a row reason) and field"
            )
    return data


def columns_of(expectation: dict[str, Any]) -> set[str]:
    """Columns one expectation (as JSON) reads, its row condition's included."""
    kw = expectation.get("kwargs", {})
    cols = {kw[k] for k in ("column", "column_A", "column_B") if k in kw}
    cols.update(kw.get("column_list", []))
    cond = kw.get("row_condition")
    if cond is not None:
        cols |= condition_columns(cond)
    return cols


def condition_columns(cond: Any) -> set[str]:
    """Columns a row condition reads; one we cannot read (a string, a pass-through
    filter) names ``ALL_COLUMNS``, so the frame keeps every column."""
    if isinstance(cond, dict) and isinstance(cond.get("column"), dict) and "name" in cond["column"]:
        return {cond["column"]["name"]}
    if isinstance(cond, dict) and isinstance(cond.get("conditions"), list):
        return set().union(*(condition_columns(part) for part in cond["conditions"]))
    return {ALL_COLUMNS}


def pages_digest(gx_version: str, suites: dict[str, Suite]) -> str:
    """Hash of all a suite page shows: the suite files, the notes we add (from the reason
    table), GX's version and our custom expectations' renderers."""
    spec = importlib.util.find_spec("govbank.validate.expectations")
    assert spec is not None and spec.origin is not None
    digest = hashlib.sha256()
    for part in (
        gx_version.encode(),
        *(json.dumps(s.data, sort_keys=True).encode() for s in suites.values()),
        json.dumps(ROW_REASONS, sort_keys=True, ensure_ascii=False).encode(),
        Path(spec.origin).read_bytes(),
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()
