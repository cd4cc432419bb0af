"""The Great Expectations context: suites, batches, the Data Docs site.

One :class:`Validator` per process, reused for every batch: building the context costs
seconds. With a Data Docs folder every file's merged result is stored (personal values
masked) under ``<data_docs_dir>/.gx/validations`` and rendered as its own page plus
the index; earlier pages are not re-rendered.

``import great_expectations`` costs seconds, so it happens only when a
:class:`Validator` is built: importing this module stays cheap (DAG files may do it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from govbank.domain.errors import ConfigError
from govbank.domain.issues import RowIssue
from govbank.validate import gx_runtime
from govbank.validate.file_result import FileValidation, ValidationOutcome, row_issues
from govbank.validate.suites import ALL_COLUMNS, LINE_COLUMN, pages_digest, read_suites

if TYPE_CHECKING:
    import pandas as pd

SITE_NAME = "govbank"
RESULTS_SUBDIR = ".gx/validations"
# hash of what the suite pages were last rendered from: a new Validator skips
# rebuilding them when it matches (and the pages exist)
SUITE_PAGES_MARKER = ".gx/suite_pages.sha256"
# the index page reloads every result it lists on each build; older pages stay on
# disk, unlisted
INDEX_LIMIT = 30
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PARAMETER = re.compile(r'"\$PARAMETER": "([^"]+)"')


class Validator:
    """Checks frames (``source_line`` + canonical columns) against a dataset's suite.

    :meth:`file_run` is the one path: a file validated batch by batch, one Data Docs
    page for it. :meth:`validate` is that path for a frame that is a whole run on its
    own (a page of the e-licence API).
    """

    def __init__(self, expectations_dir: Path, data_docs_dir: Path | None = None) -> None:
        gx = gx_runtime.import_gx()
        self.expectations_dir = Path(expectations_dir)
        self.data_docs_dir = Path(data_docs_dir).resolve() if data_docs_dir else None
        self._context = gx.get_context(mode="ephemeral", project_config=self._config())
        source = self._context.data_sources.add_pandas(SITE_NAME)
        self._read = read_suites(self.expectations_dir)
        self._read_as = _suites_text(self._read)  # before GX adds to the suites' meta
        self._suites: dict[str, Any] = {}
        self._batch_definitions: dict[str, Any] = {}
        for dataset, suite in self._read.items():
            self._suites[dataset] = self._context.suites.add(suite.gx_suite(gx))
            asset = source.add_dataframe_asset(suite.name)
            self._batch_definitions[dataset] = asset.add_batch_definition_whole_dataframe("frame")
        if self.data_docs_dir is not None:
            self._build_suite_pages(pages_digest(gx.__version__, self._read))

    def rehearse(self) -> None:
        """Validate a one-row frame of nulls against each suite, results thrown away.

        GX's first validation in a process costs a few tenths of a second more than the
        next (lazy imports and registries); a warm worker pays it once, before it forks.
        """
        import pandas as pd

        for dataset, suite in self._read.items():
            if ALL_COLUMNS in suite.columns:
                continue  # its frame's columns are the file's: nothing to rehearse with
            frame = pd.DataFrame({LINE_COLUMN: [1], **{c: [None] for c in sorted(suite.columns)}})
            params = dict.fromkeys(_PARAMETER.findall(json.dumps(suite.data)), "2000-01-01")
            self._check(dataset, frame, params)

    def matches_disk(self) -> bool:
        """Whether the suite files still say what this Validator was built from and its
        suite pages are still there: one built long before its use (a warm worker's) is
        reused only then. Reads the JSON files, no GX."""
        try:
            if _suites_text(read_suites(self.expectations_dir)) != self._read_as:
                return False
        except ConfigError:
            return False
        if self.data_docs_dir is None:
            return True
        pages = [self.data_docs_dir / "expectations" / f"{s.name}.html" for s in self._suites.values()]
        return (self.data_docs_dir / SUITE_PAGES_MARKER).is_file() and all(p.is_file() for p in pages)

    def file_run(self, dataset: str, run_name: str) -> FileValidation:
        """Validate one file batch by batch, then :meth:`FileValidation.publish` it once.

        An expectation that cannot run (missing column, bad parameter) raises
        :class:`ConfigError`: it is our fault, never the bank's.
        """
        if dataset not in self._suites:
            raise ConfigError(f"no expectation suite for dataset {dataset!r}")

        def check(frame: pd.DataFrame, params: dict[str, Any] | None) -> tuple[Any, list[RowIssue]]:
            return self._check(dataset, frame, params)

        def store(result: Any, build_index: bool) -> str:
            return self._publish(result, self._suites[dataset].name, run_name, build_index)

        return FileValidation(dataset, run_name, check, store if self.data_docs_dir else None)

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
        """:meth:`file_run` of one batch, published unless ``publish`` is False.

        ``params`` fills the suite's ``$PARAMETER`` placeholders, e.g. ``file_date``.
        """
        run = self.file_run(dataset, run_name)
        outcome = run.validate(frame, params=params)
        if not publish:
            return outcome
        return dataclasses.replace(outcome, docs_page=run.publish(build_index=build_index))

    def _config(self) -> Any:
        """GX's project config: results and Data Docs on disk only with a Data Docs folder."""
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

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
        return DataContextConfig(
            store_backend_defaults=defaults,
            stores=stores,
            data_docs_sites=sites,
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
        )

    def _build_suite_pages(self, digest: str) -> None:
        """Render the suite pages, unless they exist and were rendered from these inputs."""
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
        )

        assert self.data_docs_dir is not None
        marker = self.data_docs_dir / SUITE_PAGES_MARKER
        pages = [
            self.data_docs_dir / "expectations" / f"{s.name}.html" for s in self._suites.values()
        ]
        try:
            current = marker.read_text(encoding="ascii").strip() == digest
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
        partial.write_text(digest + "\n", encoding="ascii")
        partial.replace(marker)  # atomic: a concurrent Validator reads old or new

    def _check(
        self, dataset: str, frame: pd.DataFrame, params: dict[str, Any] | None
    ) -> tuple[Any, list[RowIssue]]:
        """GX's COMPLETE result for ``frame`` and the row issues it names."""
        needed = self._read[dataset].columns
        missing = (needed | {LINE_COLUMN}) - {ALL_COLUMNS} - set(frame.columns)
        if missing:
            raise ConfigError(f"{dataset} frame lacks columns: {', '.join(sorted(missing))}")
        from great_expectations.exceptions import GreatExpectationsError

        try:
            # only the columns the suite reads: GX filters whole frames per expectation
            if ALL_COLUMNS not in needed:
                frame = frame[[LINE_COLUMN, *sorted(needed)]]
            batch = self._batch_definitions[dataset].get_batch(
                batch_parameters={"dataframe": _prepare(frame)}
            )
            with gx_runtime.memoised():
                result = batch.validate(
                    self._suites[dataset],
                    result_format={
                        "result_format": "COMPLETE",
                        "unexpected_index_column_names": [LINE_COLUMN],
                    },
                    expectation_parameters={k: _gx_param(v) for k, v in (params or {}).items()},
                )
        except GreatExpectationsError as exc:  # e.g. a $PARAMETER without a value
            raise ConfigError(f"{dataset} validation could not run: {exc}") from exc
        return result, row_issues(result)

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


def _suites_text(suites: dict[str, Any]) -> str:
    return json.dumps({k: s.data for k, s in suites.items()}, sort_keys=True, default=str)


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
