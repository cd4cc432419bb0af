"""Great Expectations is pinned: an upgrade is a conscious step.

``govbank.validate.gx_runtime`` patches GX internals and ``file_result`` rebuilds GX's
figures for a file of many batches. When the installed GX is not the pinned one, or an
internal they rely on is gone, these tests fail: re-read each patch against the new GX
(``gx_runtime.patches_disabled`` compares results with and without them), then move
``PINNED_GX_VERSION``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import tomllib
from importlib import metadata

import pytest

from govbank.validate import gx_runtime
from tests.conftest import ROOT


def _resolve(name: str) -> object:
    module, _, path = name.partition(":")
    target: object = importlib.import_module(module)
    for part in path.split("."):
        # class attributes as defined (a property itself, not its value)
        found = vars(target).get(part) if inspect.isclass(target) else getattr(target, part, None)
        assert found is not None, f"{name}: {part} is gone"
        target = found
    return target


def test_installed_gx_is_the_pinned_one() -> None:
    import great_expectations

    assert great_expectations.__version__ == gx_runtime.PINNED_GX_VERSION
    assert metadata.version("great_expectations") == gx_runtime.PINNED_GX_VERSION
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert f"great-expectations=={gx_runtime.PINNED_GX_VERSION}" in declared["project"]["dependencies"]


@pytest.mark.parametrize("name", gx_runtime.PATCHED_INTERNALS + gx_runtime.MIRRORED_INTERNALS)
def test_internals_we_rely_on_exist(name: str) -> None:
    gx_runtime.import_gx()
    _resolve(name)


def test_every_patch_is_installed_on_the_named_internal() -> None:
    gx_runtime.import_gx()
    configuration, row_filter, threshold = (_resolve(n) for n in gx_runtime.PATCHED_INTERNALS)
    assert isinstance(configuration, gx_runtime.MemoisedConfiguration)
    assert isinstance(configuration.original, property)
    assert getattr(row_filter, "memoised", False) and callable(row_filter.original)  # type: ignore[attr-defined]
    assert threshold == 0
    with gx_runtime.patches_disabled():  # GX's own objects come back, then ours again
        assert type(_resolve(gx_runtime.PATCHED_INTERNALS[0])) is property
        assert not getattr(_resolve(gx_runtime.PATCHED_INTERNALS[1]), "memoised", False)
        assert _resolve(gx_runtime.PATCHED_INTERNALS[2]) != 0
    assert _resolve(gx_runtime.PATCHED_INTERNALS[0]) is configuration


def test_deferred_modules_are_installed() -> None:
    for name in gx_runtime.DEFERRED_MODULES:
        assert importlib.util.find_spec(name) is not None, name
