"""One file's validation: row issues per batch, one merged GX result for its Data Docs page.

A file is validated in batches; each batch's row issues are needed at once (the rows go
on to be loaded), but the file gets one stored result and one page. The merged result
keeps, per expectation, the sums over the batches and at most :data:`PARTIAL_LIMIT`
samples, so memory does not grow with the file. Personal values are masked before
anything is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from govbank.domain.datasets import PERSONAL_FIELDS
from govbank.domain.errors import ConfigError
from govbank.domain.issues import RowIssue
from govbank.domain.pseudonym import mask
from govbank.domain.reasons import ROW_REASONS
from govbank.validate.suites import LINE_COLUMN

if TYPE_CHECKING:
    import pandas as pd

# GX's default partial_unexpected_count: samples and value counts kept per expectation
PARTIAL_LIMIT = 20
# value counts held while merging batches (the page shows PARTIAL_LIMIT of them)
_COUNTS_HELD = 5 * PARTIAL_LIMIT
# lists a COMPLETE result holds for every failing row; never stored for a file
_COMPLETE_ONLY = ("unexpected_list", "unexpected_index_list", "unexpected_index_query")

# (frame, params) -> (GX's COMPLETE result, its row issues)
Check = Callable[["pd.DataFrame", "dict[str, Any] | None"], "tuple[Any, list[RowIssue]]"]
# (file result, build_index) -> the page, relative to the Data Docs folder
Store = Callable[[Any, bool], str]


@dataclass
class ValidationOutcome:
    success: bool
    issues: list[RowIssue]
    evaluated: int  # rows in the validated frame
    docs_page: str | None  # relative to data_docs_dir, None without a site


class FileValidation:
    """One file validated batch by batch; :meth:`publish` stores and renders one result.

    Holds the first batch's result (without its per-row lists) as the template of the
    file's result and, per expectation, running sums and a few samples.
    """

    def __init__(self, dataset: str, run_name: str, check: Check, store: Store | None) -> None:
        self.dataset = dataset
        self.run_name = run_name
        self.batches = 0
        self.rows = 0
        self._check = check
        self._store = store
        self._template: Any = None
        self._tallies: list[_Tally] = []

    def validate(
        self, frame: pd.DataFrame, *, params: dict[str, Any] | None = None
    ) -> ValidationOutcome:
        """Check one batch: its row issues now, its figures kept for :meth:`publish`."""
        result, issues = self._check(frame, params)
        _drop_complete_lists(result)
        mask_personal(result)
        if self._template is None:
            self._template = result
            self._tallies = [_Tally() for _ in result.results]
        elif len(result.results) != len(self._tallies):  # the suite is fixed per Validator
            raise ConfigError(f"{self.dataset}: chunks gave different expectation lists")
        for tally, evr in zip(self._tallies, result.results, strict=True):
            tally.add(evr)
        self.batches += 1
        self.rows += len(frame)
        return ValidationOutcome(
            success=not issues, issues=issues, evaluated=len(frame), docs_page=None
        )

    def result(self) -> Any:
        """The file-level ExpectationSuiteValidationResult (None before any batch)."""
        from great_expectations.validator.validation_statistics import (
            calc_validation_statistics,
        )

        result = self._template
        if result is None:
            return None
        for tally, evr in zip(self._tallies, result.results, strict=True):
            tally.write(evr)
        stats = calc_validation_statistics(result.results)
        result.success = stats.success
        result.statistics = {
            "evaluated_expectations": stats.evaluated_expectations,
            "successful_expectations": stats.successful_expectations,
            "unsuccessful_expectations": stats.unsuccessful_expectations,
            "success_percent": stats.success_percent,
        }
        markers = result.meta.get("batch_markers")
        if isinstance(markers, dict):  # the first batch's fingerprint would mislead
            markers.pop("pandas_data_fingerprint", None)
            markers.update(gx_batches=self.batches, rows=self.rows)
        return result

    def publish(self, *, build_index: bool = True) -> str | None:
        """Store the file's result and render its page (and the index), once.

        Returns the page relative to the Data Docs folder; None without a Data Docs site
        or when no batch was validated. ``build_index=False`` renders only the page (the
        index costs more than a page).
        """
        result = self.result()
        if result is None or self._store is None:
            return None
        return self._store(result, build_index)


@dataclass
class _Tally:
    """One expectation's file-level figures: running sums and a few samples."""

    success: bool = True
    element_count: int = 0
    missing_count: int | None = None  # None: GX does not report it for this expectation
    unexpected_count: int = 0
    partial_list: list[Any] = field(default_factory=list)
    partial_index_list: list[Any] | None = None
    counts: dict[str, list[Any]] | None = None  # repr(value) -> [value, count]
    counts_error: list[dict[str, Any]] | None = None

    def add(self, evr: Any) -> None:
        self.success = self.success and bool(evr.success)
        res = evr.result or {}
        if "unexpected_count" not in res:  # not a map expectation: the first batch's result
            return
        self.element_count += res.get("element_count") or 0
        self.unexpected_count += res.get("unexpected_count") or 0
        if "missing_count" in res:
            self.missing_count = (self.missing_count or 0) + (res["missing_count"] or 0)
        room = PARTIAL_LIMIT - len(self.partial_list)
        if room > 0:
            self.partial_list += res.get("partial_unexpected_list", [])[:room]
        if "partial_unexpected_index_list" in res:
            self.partial_index_list = self.partial_index_list or []
            room = PARTIAL_LIMIT - len(self.partial_index_list)
            if room > 0:
                self.partial_index_list += res["partial_unexpected_index_list"][:room]
        if "partial_unexpected_counts" in res:
            self._add_counts(res["partial_unexpected_counts"])

    def _add_counts(self, entries: list[dict[str, Any]]) -> None:
        if self.counts is None:
            self.counts = {}
        for entry in entries:
            if "value" not in entry:  # GX's {"error": ...} for unhashable values
                self.counts_error = [entry]
                continue
            held = self.counts.setdefault(repr(entry["value"]), [entry["value"], 0])
            held[1] += entry["count"]
        if len(self.counts) > _COUNTS_HELD:  # flat memory; dropped counts make the
            # page say "sampled" (their sum no longer equals unexpected_count)
            self.counts = dict(_by_count(self.counts.items())[:_COUNTS_HELD])

    def write(self, evr: Any) -> None:
        """Put the file's figures into ``evr`` (the first batch's result)."""
        evr.success = self.success
        res = evr.result
        if not res or "unexpected_count" not in res:
            return
        self._write_counts(res)
        if "partial_unexpected_list" in res:
            res["partial_unexpected_list"] = list(self.partial_list)
        if self.partial_index_list is not None:
            res["partial_unexpected_index_list"] = list(self.partial_index_list)
            if len(self.partial_index_list) == len(self.partial_list) == self.unexpected_count:
                # every failing row of the file is in the sample: the page may name
                # their lines (GX renders the index column only from these two lists)
                res["unexpected_index_list"] = list(self.partial_index_list)
                res["unexpected_list"] = list(self.partial_list)
        if self.counts_error is not None:
            res["partial_unexpected_counts"] = self.counts_error
        elif self.counts is not None:
            res["partial_unexpected_counts"] = [
                {"value": value, "count": count}
                for _, (value, count) in _by_count(self.counts.items())[:PARTIAL_LIMIT]
            ]

    def _write_counts(self, res: dict[str, Any]) -> None:
        """Counts and percents, the percents as GX's ``_format_map_output`` computes them."""
        element, missing, unexpected = self.element_count, self.missing_count, self.unexpected_count
        res["element_count"] = element
        res["unexpected_count"] = unexpected
        total = unexpected / element * 100 if element else None
        nonmissing = total
        if missing is not None:
            res["missing_count"] = missing
            res["missing_percent"] = missing / element * 100 if element else None
            nonnull = element - missing
            nonmissing = unexpected / nonnull * 100 if element and nonnull > 0 else None
            res["unexpected_percent_total"] = total
            res["unexpected_percent_nonmissing"] = nonmissing
        res["unexpected_percent"] = nonmissing


def _by_count(items: Any) -> list[tuple[str, list[Any]]]:
    """Most frequent first, ties by value like GX (by representation if not comparable)."""
    items = list(items)
    try:
        return sorted(items, key=lambda kv: (-kv[1][1], kv[1][0]))
    except TypeError:
        return sorted(items, key=lambda kv: (-kv[1][1], kv[0]))


def _drop_complete_lists(result: Any) -> None:
    """Keep GX's partial lists, drop the lists of every failing row."""
    for evr in result.results:
        res = evr.result
        if res:
            for key in _COMPLETE_ONLY:
                res.pop(key, None)


def row_issues(result: Any) -> list[RowIssue]:
    """Failed expectations -> one RowIssue per failing row, ordered by line.

    An expectation that could not run is our fault, never the bank's: ConfigError.
    """
    seen: set[tuple[int, str, str]] = set()
    for evr in result.results:
        if evr.success:
            continue
        config = evr.expectation_config
        raised = [evr.exception_info or {}]
        raised += [i for i in (evr.exception_info or {}).values() if isinstance(i, dict)]
        for info in raised:
            if info.get("raised_exception"):
                raise ConfigError(
                    f"expectation {config.type} on {config.kwargs.get('column')} could not "
                    f"run: {info.get('exception_message')}"
                )
        index_list = (evr.result or {}).get("unexpected_index_list")
        if not index_list:
            raise ConfigError(f"expectation {config.type} failed without naming rows")
        code, field_name = config.meta["reason_code"], config.meta["field"]
        for row in index_list:
            seen.add((int(row[LINE_COLUMN]), field_name, code))
    return [RowIssue(line, f, code, ROW_REASONS[code]) for line, f, code in sorted(seen)]


def _mask(value: object) -> object:
    # nulls of a ``str`` (pyarrow) column arrive as NaN, not None; pd.NA from "string"
    if value is None or type(value).__name__ == "NAType":
        return None
    if isinstance(value, float) and value != value:
        return None
    return mask(str(value))


def mask_personal(result: Any) -> None:
    """Personal values never reach stored results or Data Docs pages."""
    for evr in result.results:
        if evr.expectation_config.kwargs.get("column") not in PERSONAL_FIELDS:
            continue
        res = evr.result or {}
        column = evr.expectation_config.kwargs["column"]
        for key in ("partial_unexpected_list", "unexpected_list"):
            if key in res:
                res[key] = [_mask(v) for v in res[key]]
        if "partial_unexpected_counts" in res:
            res["partial_unexpected_counts"] = [
                {**c, "value": _mask(c["value"])} for c in res["partial_unexpected_counts"]
            ]
        for key in ("partial_unexpected_index_list", "unexpected_index_list"):
            if key in res:
                res[key] = [{**d, column: _mask(d[column])} if column in d else d for d in res[key]]
