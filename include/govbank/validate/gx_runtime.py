"""Every change we make to Great Expectations' internals, in one place.

GX is pinned (:data:`PINNED_GX_VERSION`); each patch below names the GX attribute it
replaces in :data:`PATCHED_INTERNALS`, and ``tests/unit/test_gx_pin.py`` fails when the
installed GX differs or one of those attributes is gone, so an upgrade is a conscious
step: re-read each patch against the new GX, then move the pin. What each patch saves
is measured in ``bench/README.md`` ("Great Expectations: what its internals cost").

Importing this module is cheap; :func:`import_gx` imports GX and installs the patches.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

PINNED_GX_VERSION = "1.24.1"

# "module:attribute" of every GX internal replaced by a patch here
PATCHED_INTERNALS: tuple[str, ...] = (
    "great_expectations.expectations.expectation:Expectation.configuration",
    "great_expectations.execution_engine.pandas_execution_engine:"
    "PandasExecutionEngine._apply_row_condition_filter",
    "great_expectations.execution_engine.pandas_execution_engine:HASH_THRESHOLD",
)
# GX code whose output govbank.validate.file_result rebuilds for a file of many batches
MIRRORED_INTERNALS: tuple[str, ...] = (
    "great_expectations.expectations.expectation:_format_map_output",
    "great_expectations.validator.validation_statistics:calc_validation_statistics",
)
# imported by GX at import time only for expectations our suites do not have (KL
# divergence, KS tests); deferred until something reads an attribute of them
DEFERRED_MODULES = ("scipy.stats", "altair")

_EXPECTATION = "great_expectations.expectations.expectation"
_PANDAS_ENGINE = "great_expectations.execution_engine.pandas_execution_engine"


def import_gx() -> types.ModuleType:
    """Import GX (and register our custom expectations) with every patch installed.

    GX logs and warns freely at INFO and on import; task logs should show our lines.
    """
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    with warnings.catch_warnings(), deferring():
        warnings.simplefilter("ignore")
        import great_expectations as gx

        import govbank.validate.expectations  # noqa: F401  (registers the custom expectations)
    install()
    return gx


def install() -> None:
    """Install every patch into the imported GX; installing twice changes nothing."""
    skip_frame_fingerprint()
    memoise_configurations()
    memoise_row_conditions()


_ORIGINALS: dict[str, Any] = {}  # GX's own objects, replaced by install()


@contextlib.contextmanager
def patches_disabled() -> Iterator[None]:
    """GX's own code for the duration (process-wide): to compare results with and without
    the patches, e.g. after an upgrade. Not for concurrent validations."""
    install()
    engine = importlib.import_module(_PANDAS_ENGINE)
    expectation = importlib.import_module(_EXPECTATION).Expectation
    installed = (
        engine.HASH_THRESHOLD,
        expectation.__dict__["configuration"],
        engine.PandasExecutionEngine._apply_row_condition_filter,
    )
    engine.HASH_THRESHOLD = _ORIGINALS["HASH_THRESHOLD"]
    expectation.configuration = _ORIGINALS["configuration"]
    engine.PandasExecutionEngine._apply_row_condition_filter = _ORIGINALS["row_condition_filter"]
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = installed[0]
        expectation.configuration = installed[1]
        engine.PandasExecutionEngine._apply_row_condition_filter = installed[2]


def skip_frame_fingerprint() -> None:
    """No md5 of every pandas batch (``HASH_THRESHOLD`` 0: every frame is "too large").

    GX fingerprints a batch by hashing the whole frame; a batch's fingerprint says
    nothing of the file, and the file's result drops it, so the hash is pure cost.
    """
    engine = importlib.import_module(_PANDAS_ENGINE)
    _ORIGINALS.setdefault("HASH_THRESHOLD", engine.HASH_THRESHOLD)
    engine.HASH_THRESHOLD = 0


def memoise_configurations() -> None:
    """``Expectation.configuration`` built once per expectation per validation
    (:class:`MemoisedConfiguration`)."""
    expectation = importlib.import_module(_EXPECTATION).Expectation
    current = expectation.__dict__["configuration"]
    if not isinstance(current, MemoisedConfiguration):
        _ORIGINALS["configuration"] = current
        expectation.configuration = MemoisedConfiguration(current)


def memoise_row_conditions() -> None:
    """GX's row-condition filter run once per condition per validation
    (:func:`memoised_filter`)."""
    engine = importlib.import_module(_PANDAS_ENGINE).PandasExecutionEngine
    current = engine._apply_row_condition_filter
    if not getattr(current, "memoised", False):
        _ORIGINALS["row_condition_filter"] = current
        engine._apply_row_condition_filter = memoised_filter(current)


# ---------------------------------------------------------------- deferred imports


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
def deferring(names: tuple[str, ...] = DEFERRED_MODULES) -> Iterator[None]:
    """Stand-ins for ``names`` in ``sys.modules`` while GX imports, and only then.

    GX imports these for expectations our suites lack; a stand-in spares every task
    that validates their import. GX keeps the stand-ins it was handed; whoever imports
    these modules afterwards gets the real ones, loaded once (a stand-in left in
    ``sys.modules`` would make Python load a submodule imported through it twice).
    Nothing happens once GX is imported.
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


# ---------------------------------------------------------------- memo of one validation


@dataclass
class Memo:
    """What the patches remember during one validation, and how often GX asked."""

    configurations: dict[int, tuple[Any, Any]] = field(default_factory=dict)
    filters: dict[tuple[Any, ...], tuple[Any, Any]] = field(default_factory=dict)
    configuration_reads: int = 0  # builds GX's own code would have made
    filter_calls: int = 0  # filters GX's own code would have run


_STATE = threading.local()  # ``memo``: this thread's Memo, None outside a validation


def current_memo() -> Memo | None:
    """This thread's memo: None outside :func:`memoised`."""
    return getattr(_STATE, "memo", None)


@contextlib.contextmanager
def memoised() -> Iterator[Memo]:
    """Memoise GX's configurations and row-condition filters on this thread, for one
    validation: its expectations and frame do not change while it runs.

    Entered while a memo is active it reuses that memo (and leaves it active), so a
    caller can look at what one validation asked for.
    """
    outer = current_memo()
    if outer is not None:
        yield outer
        return
    memo = _STATE.memo = Memo()
    try:
        yield memo
    finally:
        _STATE.memo = None


class MemoisedConfiguration(property):
    """GX's ``Expectation.configuration``, built once per expectation per validation.

    GX reads the property many times per expectation while it plans a validation, and
    each read rebuilds the whole configuration from the pydantic model. Within
    :func:`memoised` the expectation objects are GX's fresh copies, unchanged while it
    runs, so one build serves.
    """

    def __init__(self, original: property) -> None:
        self.original = original

        def configuration(expectation: Any) -> Any:
            memo = current_memo()
            if memo is None:
                return original.fget(expectation)  # type: ignore[misc]
            memo.configuration_reads += 1
            cache = memo.configurations
            hit = cache.get(id(expectation))
            if hit is None or hit[0] is not expectation:  # holding it keeps its id unique
                hit = cache[id(expectation)] = (expectation, original.fget(expectation))  # type: ignore[misc]
            return hit[1]

        super().__init__(configuration, doc=original.__doc__)


def memoised_filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """GX's row-condition filter, run once per condition per validation.

    GX filters the whole frame with ``DataFrame.query`` for every metric of an
    expectation that has a ``row_condition``; within :func:`memoised` the frame does not
    change, so the rows one condition selects are filtered once.
    """

    def apply(engine: Any, data: Any, row_condition: Any, domain_kwargs: dict) -> Any:
        memo = current_memo()
        if memo is None:
            return original(engine, data, row_condition, domain_kwargs)
        memo.filter_calls += 1
        # JSON tells x == "1" from x == 1, which GX's repr of a condition does not
        shown = row_condition.json() if hasattr(row_condition, "json") else repr(row_condition)
        key = (id(data), shown, domain_kwargs.get("condition_parser"))
        hit = memo.filters.get(key)
        if hit is None or hit[0] is not data:  # holding the frame keeps its id unique
            hit = memo.filters[key] = (data, original(engine, data, row_condition, domain_kwargs))
        return hit[1]

    apply.memoised = True  # type: ignore[attr-defined]
    apply.original = original  # type: ignore[attr-defined]
    return apply
