"""Row rules of bank files and usage records, checked by Great Expectations.

The rules are data (``expectations/<suite>.json``); each expectation carries
``meta = {"reason_code", "field"}`` so a failure maps straight to a receipt line.
This module turns a GX validation result into :class:`RowIssue` objects and, when a
Data Docs folder is given, keeps a static Data Docs site of every validation there.
A file validated in chunks gets one page (:meth:`Validator.file_run`): the chunks'
results are merged into one file-level result, which is all that is stored.

``import great_expectations`` costs seconds, so it happens only when a
:class:`Validator` is built: importing this module stays cheap (DAG files may do it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from govbank.domain.datasets import PERSONAL_FIELDS
from govbank.domain.errors import ConfigError
from govbank.domain.issues import RowIssue
from govbank.domain.pseudonym import mask
from govbank.domain.reasons import ROW_REASONS

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

log = logging.getLogger(__name__)

SUITE_FILES: dict[str, str] = {
    "OUTLET": "outlet.json",
    "ELIC": "elic.json",
    "USAGE": "elicense_usage.json",
}
LINE_COLUMN = "source_line"
ALL_COLUMNS = "*"  # a suite column set holding this reads every column
SITE_NAME = "govbank"
RESULTS_SUBDIR = ".gx/validations"
# hash of what the suite pages were last rendered from: a new Validator skips
# rebuilding them when it matches (and the pages exist)
SUITE_PAGES_MARKER = ".gx/suite_pages.sha256"
# GX's default partial_unexpected_count: samples and value counts kept per expectation
PARTIAL_LIMIT = 20
# value counts held while merging chunks (the page shows PARTIAL_LIMIT of them)
_COUNTS_HELD = 5 * PARTIAL_LIMIT
# lists a COMPLETE result holds for every failing row; never stored for a file
_COMPLETE_ONLY = ("unexpected_list", "unexpected_index_list", "unexpected_index_query")
# the index page reloads this many stored results on every build (≈25 ms each for a
# 50k-row chunk with a few hundred failures); older pages stay on disk, unlisted
INDEX_LIMIT = 30
# imported by GX at import time only for expectations our suites do not have (KL
# divergence, KS tests): ≈ 1 s and ≈ 80 MB of every task that validates. Deferred until
# something reads an attribute of them, which then imports them for real.
DEFERRED_MODULES = ("scipy.stats", "altair")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ValidationOutcome:
    success: bool
    issues: list[RowIssue]
    evaluated: int  # rows in the validated frame
    docs_page: str | None  # relative to data_docs_dir, None without a site


def _mask(value: object) -> object:
    # nulls of a ``str`` (pyarrow) column arrive as NaN, not None; pd.NA from "string"
    if value is None or type(value).__name__ == "NAType":
        return None
    if isinstance(value, float) and value != value:
        return None
    return mask(str(value))


def _gx_param(value: Any) -> Any:
    """Dates as full ISO datetimes: GX reads a bare date bound as ``datetime.date``,
    which pandas refuses to compare with a datetime64 column."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time()).isoformat()
    if isinstance(value, str) and _DATE_ONLY.match(value):
        return value + "T00:00:00"
    return value


def _load_suite_json(path: Path) -> dict[str, Any]:
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


def _columns_of(expectation: dict[str, Any]) -> set[str]:
    kw = expectation.get("kwargs", {})
    cols = {kw[k] for k in ("column", "column_A", "column_B") if k in kw}
    cols.update(kw.get("column_list", []))
    cond = kw.get("row_condition")
    if cond is not None:
        cols |= _condition_columns(cond)
    return cols


def _condition_columns(cond: Any) -> set[str]:
    """Columns a row condition reads; one we cannot read (a string, a pass-through
    filter) names ``ALL_COLUMNS``, so the frame keeps every column."""
    if isinstance(cond, dict) and isinstance(cond.get("column"), dict) and "name" in cond["column"]:
        return {cond["column"]["name"]}
    if isinstance(cond, dict) and isinstance(cond.get("conditions"), list):
        return set().union(*(_condition_columns(part) for part in cond["conditions"]))
    return {ALL_COLUMNS}


class _Deferred(types.ModuleType):
    """A module's stand-in: the first attribute read imports the real module.

    Unlike ``importlib.util.LazyLoader``, it survives Python 3.11's import statement,
    which reads ``__spec__`` of a module found in ``sys.modules`` (and so would load it).
    """

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        with _DEFERRED_LOCK:  # read during GX's import: leave sys.modules to the real one
            if sys.modules.get(name) is self:
                del sys.modules[name]
        return getattr(importlib.import_module(name), attr)


_DEFERRED_LOCK = threading.Lock()


@contextlib.contextmanager
def _deferring(names: tuple[str, ...] = DEFERRED_MODULES) -> Iterator[None]:
    """Stand-ins for ``names`` in ``sys.modules`` while GX imports, and only then.

    GX keeps the stand-ins it was handed; whoever imports these modules afterwards gets
    the real ones, loaded once (a stand-in left in ``sys.modules`` would make Python
    load a submodule imported through it twice). Nothing happens once GX is imported.
    """
    stubs: dict[str, _Deferred] = {}
    if "great_expectations" not in sys.modules:
        for name in names:
            if name in sys.modules:
                continue
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                continue
            stub = _Deferred(name)
            stub.__spec__ = spec
            sys.modules[name] = stubs[name] = stub
    try:
        yield
    finally:
        with _DEFERRED_LOCK:
            for name, stub in stubs.items():
                if sys.modules.get(name) is stub:
                    del sys.modules[name]


# per thread, None outside a validation: ``configurations`` {id(expectation):
# (expectation, configuration)}, ``filters`` {(id(frame), condition): (frame, rows)}
_MEMO = threading.local()


class _MemoisedConfiguration(property):
    """GX's ``Expectation.configuration``, built once per expectation per validation.

    GX reads the property about 130 times per expectation while it plans a validation,
    and each read rebuilds the whole configuration from the pydantic model: ≈ 0.3 s of
    every validation, whatever its size. Within :meth:`Validator._check` the expectation
    objects are GX's fresh copies, not changed while it runs, so one build serves.
    """

    def __init__(self, original: property) -> None:
        self.original = original

        def configuration(expectation: Any) -> Any:
            cache = getattr(_MEMO, "configurations", None)
            if cache is None:
                return original.fget(expectation)  # type: ignore[misc]
            hit = cache.get(id(expectation))
            if hit is None or hit[0] is not expectation:  # holding it keeps its id unique
                hit = cache[id(expectation)] = (expectation, original.fget(expectation))  # type: ignore[misc]
            return hit[1]

        super().__init__(configuration, doc=original.__doc__)


def _memoise_configurations() -> None:
    from great_expectations.expectations.expectation import Expectation

    if not isinstance(Expectation.__dict__["configuration"], _MemoisedConfiguration):
        Expectation.configuration = _MemoisedConfiguration(Expectation.__dict__["configuration"])


def _memoise_row_conditions() -> None:
    """GX's row-condition filter, run once per condition per validation.

    GX filters the whole frame with ``DataFrame.query`` for every metric of an expectation
    that has a ``row_condition``: 20 filters per ELIC validation for two distinct
    conditions, about a quarter of its time. Within :meth:`Validator._check` the frame
    does not change, so the rows one condition selects are filtered once.
    """
    from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine

    original = PandasExecutionEngine._apply_row_condition_filter
    if not getattr(original, "memoised", False):
        PandasExecutionEngine._apply_row_condition_filter = _memoised_filter(original)  # type: ignore[method-assign]


def _memoised_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    def apply(engine: Any, data: Any, row_condition: Any, domain_kwargs: dict) -> Any:
        cache = getattr(_MEMO, "filters", None)
        if cache is None:
            return original(engine, data, row_condition, domain_kwargs)
        # JSON tells x == "1" from x == 1, which GX's repr of a condition does not
        shown = row_condition.json() if hasattr(row_condition, "json") else repr(row_condition)
        key = (id(data), shown, domain_kwargs.get("condition_parser"))
        hit = cache.get(key)
        if hit is None or hit[0] is not data:  # holding the frame keeps its id unique
            hit = cache[key] = (data, original(engine, data, row_condition, domain_kwargs))
        return hit[1]

    apply.memoised = True  # type: ignore[attr-defined]
    apply.original = original  # type: ignore[attr-defined]
    return apply


class Validator:
    """One GX context, reused for every chunk the pipeline validates.

    With ``data_docs_dir`` the validation results are stored (personal values masked)
    under ``<data_docs_dir>/.gx/validations`` and each validation renders its own
    Data Docs page plus the index; earlier pages are not re-rendered.
    """

    def __init__(self, expectations_dir: Path, data_docs_dir: Path | None = None) -> None:
        # GX logs and warns freely at INFO; task logs should show our lines, not its
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        with warnings.catch_warnings(), _deferring():
            warnings.simplefilter("ignore")
            import great_expectations as gx
            from great_expectations.data_context.types.base import (
                DataContextConfig,
                InMemoryStoreBackendDefaults,
                ProgressBarsConfig,
            )
            from great_expectations.execution_engine import pandas_execution_engine

            import govbank.validate.expectations  # noqa: F401  (registers the custom expectations)

        # GX fingerprints every pandas batch with an md5 of the whole frame (≈ 2 µs a
        # row, a fifth of a chunk's validation); a chunk's fingerprint says nothing of
        # the file, and the file result drops it. Frames above the threshold skip it.
        pandas_execution_engine.HASH_THRESHOLD = 0
        _memoise_configurations()
        _memoise_row_conditions()

        self.expectations_dir = Path(expectations_dir)
        self.data_docs_dir = Path(data_docs_dir).resolve() if data_docs_dir else None

        defaults = InMemoryStoreBackendDefaults()
        stores = defaults.stores
        sites: dict[str, Any] = {}
        if self.data_docs_dir is not None:
            stores[defaults.validation_results_store_name] = {
                "class_name": "ValidationResultsStore",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(self.data_docs_dir / RESULTS_SUBDIR),
                },
            }
            sites[SITE_NAME] = {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(self.data_docs_dir),
                },
                "site_index_builder": {
                    "class_name": "DefaultSiteIndexBuilder",
                    "validation_results_limit": INDEX_LIMIT,
                },
            }
        config = DataContextConfig(
            store_backend_defaults=defaults,
            stores=stores,
            data_docs_sites=sites,
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )
        self._context = gx.get_context(mode="ephemeral", project_config=config)
        source = self._context.data_sources.add_pandas(SITE_NAME)

        self._suites: dict[str, Any] = {}
        self._suite_columns: dict[str, set[str]] = {}
        self._batch_definitions: dict[str, Any] = {}
        suite_sources: list[bytes] = []
        for dataset, fname in SUITE_FILES.items():
            data = _load_suite_json(self.expectations_dir / fname)
            suite_sources.append(json.dumps(data, sort_keys=True).encode())
            try:
                suite = gx.ExpectationSuite(**data)
            except Exception as exc:  # GX raises several types for a bad suite
                raise ConfigError(f"{fname} is not a valid expectation suite: {exc}") from exc
            for exp in suite.expectations:  # the suite's Data Docs page shows these notes
                code = exp.meta["reason_code"]
                exp.notes = exp.notes or f"{code}（{exp.meta['field']}）：{ROW_REASONS[code]}"
            self._suites[dataset] = self._context.suites.add(suite)
            self._suite_columns[dataset] = set().union(
                *(_columns_of(e) for e in data["expectations"])
            )
            asset = source.add_dataframe_asset(data["name"])
            self._batch_definitions[dataset] = asset.add_batch_definition_whole_dataframe("frame")

        if self.data_docs_dir is not None:
            self._build_suite_pages(gx.__version__, suite_sources)

    def _build_suite_pages(self, gx_version: str, sources: list[bytes]) -> None:
        """Render the suite pages, unless they exist and were rendered from these inputs.

        The marker hashes the suite files, the notes we add (from the reason table),
        GX's version and our custom expectations' renderers: all a suite page shows.
        """
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
        )

        import govbank.validate.expectations

        assert self.data_docs_dir is not None
        digest = hashlib.sha256()
        for part in (
            gx_version.encode(),
            *sources,
            json.dumps(ROW_REASONS, sort_keys=True, ensure_ascii=False).encode(),
            Path(govbank.validate.expectations.__file__).read_bytes(),
        ):
            digest.update(hashlib.sha256(part).digest())
        marker = self.data_docs_dir / SUITE_PAGES_MARKER
        pages = [
            self.data_docs_dir / "expectations" / f"{s.name}.html" for s in self._suites.values()
        ]
        try:
            current = marker.read_text(encoding="ascii").strip() == digest.hexdigest()
        except OSError:
            current = False
        if current and all(p.is_file() for p in pages):
            return
        self._context.build_data_docs(
            site_names=[SITE_NAME],
            resource_identifiers=[
                ExpectationSuiteIdentifier(name=s.name) for s in self._suites.values()
            ],
            build_index=False,
        )
        marker.parent.mkdir(parents=True, exist_ok=True)
        partial = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        partial.write_text(digest.hexdigest() + "\n", encoding="ascii")
        partial.replace(marker)  # atomic: a concurrent Validator reads old or new

    def validate(
        self,
        dataset: str,
        frame: pd.DataFrame,
        *,
        run_name: str,
        params: dict[str, Any] | None = None,
        build_index: bool = True,
        publish: bool = True,
    ) -> ValidationOutcome:
        """Check ``frame`` (``source_line`` + canonical columns) against the dataset's suite.

        ``params`` fills the suite's ``$PARAMETER`` placeholders, e.g. ``file_date``.
        With a Data Docs site and ``publish`` the result is stored and gets its own page;
        ``build_index=False`` renders only that page (the index costs more than a page).
        ``publish=False`` only checks (``docs_page`` is None). For a file validated in
        chunks, :meth:`file_run` gives one page for the whole file instead.
        An expectation that cannot run (missing column, bad parameter) raises
        :class:`ConfigError`: it is our fault, never the bank's.
        """
        result, issues = self._check(dataset, frame, params)
        docs_page = None
        if publish and self.data_docs_dir is not None:
            _mask_personal(result)
            docs_page = self._publish(result, self._suites[dataset].name, run_name, build_index)
        return ValidationOutcome(
            success=not issues, issues=issues, evaluated=len(frame), docs_page=docs_page
        )

    def file_run(self, dataset: str, run_name: str) -> FileValidation:
        """Validate one file chunk by chunk, then :meth:`FileValidation.publish` it once."""
        if dataset not in self._suites:
            raise ConfigError(f"no expectation suite for dataset {dataset!r}")
        return FileValidation(self, dataset, run_name)

    def _check(
        self, dataset: str, frame: pd.DataFrame, params: dict[str, Any] | None
    ) -> tuple[Any, list[RowIssue]]:
        """GX's COMPLETE result for ``frame`` and the row issues it names."""
        if dataset not in self._suites:
            raise ConfigError(f"no expectation suite for dataset {dataset!r}")
        missing = (self._suite_columns[dataset] | {LINE_COLUMN}) - {ALL_COLUMNS} - set(frame.columns)
        if missing:
            raise ConfigError(f"{dataset} frame lacks columns: {', '.join(sorted(missing))}")
        from great_expectations.exceptions import GreatExpectationsError

        suite = self._suites[dataset]
        try:
            # only the columns the suite reads: GX filters whole frames per expectation
            needed = self._suite_columns[dataset]
            if ALL_COLUMNS not in needed:
                frame = frame[[LINE_COLUMN, *sorted(needed)]]
            batch = self._batch_definitions[dataset].get_batch(
                batch_parameters={"dataframe": _prepare(frame)}
            )
            _MEMO.configurations, _MEMO.filters = {}, {}
            result = batch.validate(
                suite,
                result_format={
                    "result_format": "COMPLETE",
                    "unexpected_index_column_names": [LINE_COLUMN],
                },
                expectation_parameters={k: _gx_param(v) for k, v in (params or {}).items()},
            )
        except GreatExpectationsError as exc:  # e.g. a $PARAMETER without a value
            raise ConfigError(f"{dataset} validation could not run: {exc}") from exc
        finally:
            _MEMO.configurations = _MEMO.filters = None
        return result, _issues(result)

    def _publish(self, result: Any, suite_name: str, run_name: str, build_index: bool) -> str:
        """Store the result and render its page (and the index) into the Data Docs site."""
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        assert self.data_docs_dir is not None
        run_id = RunIdentifier(
            run_name=_UNSAFE.sub("_", run_name) or "run",
            run_time=dt.datetime.now(dt.UTC),
        )
        result.meta["run_id"] = run_id
        result.meta["validation_time"] = run_id.run_time
        result.meta.setdefault("batch_spec", {})["data_asset_name"] = suite_name
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite_name),
            run_id=run_id,
            batch_identifier=result.batch_id,
        )
        self._context.validation_results_store.set(key, result)
        self._context.build_data_docs(
            site_names=[SITE_NAME], resource_identifiers=[key], build_index=build_index
        )
        urls = self._context.get_docs_sites_urls(
            resource_identifier=key, site_name=SITE_NAME, only_if_exists=True
        )
        url = urls[0]["site_url"] if urls else None
        if not url:
            raise ConfigError(f"Data Docs page for {run_name} was not written")
        return Path(unquote(urlparse(url).path)).relative_to(self.data_docs_dir).as_posix()


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
        if "unexpected_count" not in res:  # not a map expectation: the first chunk's result
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
        """Put the file's figures into ``evr`` (the first chunk's result)."""
        evr.success = self.success
        res = evr.result
        if not res or "unexpected_count" not in res:
            return
        element, missing, unexpected = self.element_count, self.missing_count, self.unexpected_count
        res["element_count"] = element
        res["unexpected_count"] = unexpected
        # the percents as GX's _format_map_output computes them
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
        if "partial_unexpected_list" in res:
            res["partial_unexpected_list"] = list(self.partial_list)
        if self.partial_index_list is not None:
            res["partial_unexpected_index_list"] = list(self.partial_index_list)
            if len(self.partial_index_list) == len(self.partial_list) == unexpected:
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


def _by_count(items: Any) -> list[tuple[str, list[Any]]]:
    """Most frequent first, ties by value like GX (by representation if not comparable)."""
    items = list(items)
    try:
        return sorted(items, key=lambda kv: (-kv[1][1], kv[1][0]))
    except TypeError:
        return sorted(items, key=lambda kv: (-kv[1][1], kv[0]))


class FileValidation:
    """One file validated in chunks; :meth:`publish` stores and renders one result.

    Holds the first chunk's result (without its per-row lists) as the template of the
    file's result and, per expectation, running sums and at most 20 samples: memory
    does not grow with the file.
    """

    def __init__(self, validator: Validator, dataset: str, run_name: str) -> None:
        self._validator = validator
        self.dataset = dataset
        self.run_name = run_name
        self.batches = 0
        self.rows = 0
        self._template: Any = None
        self._tallies: list[_Tally] = []

    def validate(
        self, frame: pd.DataFrame, *, params: dict[str, Any] | None = None
    ) -> ValidationOutcome:
        """Check one chunk: its row issues now, its figures kept for :meth:`publish`."""
        result, issues = self._validator._check(self.dataset, frame, params)
        _drop_complete_lists(result)
        _mask_personal(result)
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
        """The file-level ExpectationSuiteValidationResult (None before any chunk)."""
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
        if isinstance(markers, dict):  # the first chunk's fingerprint would mislead
            markers.pop("pandas_data_fingerprint", None)
            markers.update(gx_batches=self.batches, rows=self.rows)
        return result

    def publish(self) -> str | None:
        """Store the file's result and render its page and the index, once.

        Returns the page relative to ``data_docs_dir``; None without a Data Docs site
        or when no chunk was validated.
        """
        validator = self._validator
        result = self.result()
        if result is None or validator.data_docs_dir is None:
            return None
        suite_name = validator._suites[self.dataset].name
        return validator._publish(result, suite_name, self.run_name, build_index=True)


def _drop_complete_lists(result: Any) -> None:
    """Keep GX's partial (≤20) lists, drop the lists of every failing row."""
    for evr in result.results:
        res = evr.result
        if res:
            for key in _COMPLETE_ONLY:
                res.pop(key, None)


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """Make column types what GX's pandas metrics compare correctly.

    GX compares datetimes vectorised only at nanosecond resolution (pandas 3 parses to
    microseconds), and needs floats rather than ``Decimal`` objects for bounds.
    """
    import pandas as pd

    changed: dict[str, pd.Series] = {}
    for name in frame.columns:
        col = frame[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col):
            if not pd.api.types.is_datetime64_ns_dtype(col) and not (
                isinstance(col.dtype, pd.DatetimeTZDtype) and col.dtype.unit == "ns"
            ):
                changed[name] = col.dt.as_unit("ns")
        elif col.dtype == object and len(col):
            sample = col.dropna()
            if len(sample) and isinstance(sample.iloc[0], dt.date):
                changed[name] = pd.to_datetime(col).dt.as_unit("ns")
            elif len(sample) and type(sample.iloc[0]).__name__ == "Decimal":
                changed[name] = col.astype("float64")
    return frame.assign(**changed) if changed else frame


def _issues(result: Any) -> list[RowIssue]:
    """Failed expectations -> one RowIssue per failing row, ordered by line."""
    seen: set[tuple[int, str, str]] = set()
    for evr in result.results:
        if evr.success:
            continue
        config = evr.expectation_config
        if evr.exception_info and evr.exception_info.get("raised_exception", False):
            raise ConfigError(
                f"expectation {config.type} on {config.kwargs.get('column')} could not run: "
                f"{evr.exception_info.get('exception_message')}"
            )
        for info in (evr.exception_info or {}).values():
            if isinstance(info, dict) and info.get("raised_exception"):
                raise ConfigError(
                    f"expectation {config.type} on {config.kwargs.get('column')} could not "
                    f"run: {info.get('exception_message')}"
                )
        index_list = (evr.result or {}).get("unexpected_index_list")
        if not index_list:
            raise ConfigError(f"expectation {config.type} failed without naming rows")
        code, field = config.meta["reason_code"], config.meta["field"]
        for row in index_list:
            seen.add((int(row[LINE_COLUMN]), field, code))
    return [RowIssue(line, field, code, ROW_REASONS[code]) for line, field, code in sorted(seen)]


def _mask_personal(result: Any) -> None:
    """Personal values never reach stored results or Data Docs pages."""
    for evr in result.results:
        if evr.expectation_config.kwargs.get("column") not in PERSONAL_FIELDS:
            continue
        res = evr.result or {}
        column = evr.expectation_config.kwargs["column"]
        for key in ("partial_unexpected_list", "unexpected_list"):
            if key in res:
                res[key] = [_mask(v) for v in res[key]]
        for key in ("partial_unexpected_counts",):
            if key in res:
                res[key] = [{**c, "value": _mask(c["value"])} for c in res[key]]
        for key in ("partial_unexpected_index_list", "unexpected_index_list"):
            if key in res:
                res[key] = [{**d, column: _mask(d[column])} if column in d else d for d in res[key]]
