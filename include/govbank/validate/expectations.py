"""Custom Great Expectations for Chinese identifiers (GB 32100 USCC, GB 11643 resident ID).

Importing this module registers ``expect_column_values_to_be_valid_uscc`` and
``expect_column_values_to_be_valid_resident_id`` with GX, so suites stored as JSON in
``expectations/`` can name them. The rules (alphabet, weights, check characters) live
in :mod:`govbank.domain.identifiers`; here they run on a whole column at once (:func:`valid_uscc`,
:func:`valid_resident_id`: numpy over the code points, or the UTF-8 bytes of a
pyarrow-backed ``str`` column, of every 18-character string), giving exactly what the
scalar functions give value by value, for any values. Like every GX map expectation
they skip nulls, so optional fields (``legal_rep_id``) pass when empty.

Only the pandas engine is implemented: a weighted modulo-31 check character has no
portable SQL spelling, and the pipeline validates pandas frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    render_suite_parameter_string,
)
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from great_expectations.render import LegacyRendererType, RenderedStringTemplateContent
from great_expectations.render.renderer.renderer import renderer
from great_expectations.render.renderer_configuration import (
    RendererConfiguration,
    RendererValueType,
)
from great_expectations.render.util import num_to_str, substitute_none_for_missing

from govbank.domain.identifiers import (
    _ID_CHECK,
    _ID_WEIGHTS,
    _USCC_WEIGHTS,
    USCC_CHARSET,
    is_valid_uscc,
)
from govbank.domain.reference import uscc_exceptions

__all__ = [
    "ColumnValuesValidResidentId",
    "ColumnValuesValidUscc",
    "ExpectColumnValuesToBeValidResidentId",
    "ExpectColumnValuesToBeValidUscc",
    "valid_resident_id",
    "valid_uscc",
]

_LENGTH = 18  # both identifiers: 17 body characters and a check character
_BLOCK = 1 << 16  # rows checked at once


def _uscc_ok(value: object, exceptions: frozenset[str]) -> bool:
    """The scalar rule (one value): a valid code, or one on the exception list."""
    return value in exceptions or is_valid_uscc(value)


def _lookup(alphabet: str) -> np.ndarray:
    """Code point -> value of the character in ``alphabet`` (its position), -1 if absent.

    256 entries: indexed by code points of ASCII-checked strings or by UTF-8 bytes, where
    any byte >= 128 belongs to a non-ASCII character and is invalid in both alphabets.
    """
    table = np.full(256, -1, dtype=np.int32)
    for i, c in enumerate(alphabet):
        table[ord(c)] = i
    return table


_USCC_VALUE = _lookup(USCC_CHARSET)
_USCC_W = np.array(_USCC_WEIGHTS, dtype=np.int32)
_DIGIT_VALUE = _lookup("0123456789")
_ID_W = np.array(_ID_WEIGHTS, dtype=np.int32)
_ID_CHECK_CODE = np.array([ord(c) for c in _ID_CHECK], dtype=np.int32)


def _codes_from_arrow(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(mask of non-null rows of 18 UTF-8 bytes, those bytes as an (n, 18) array).

    A UTF-8 string of 18 bytes is 18 characters exactly when every byte is ASCII; any
    other string of 18 characters has a non-ASCII character, which neither alphabet
    has, so byte length 18 selects every string that can pass. Bytes >= 128 map to -1.
    """
    n = len(chunk)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros((0, _LENGTH), dtype=np.uint8)
    _, offsets_buf, data_buf = chunk.buffers()
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(offsets_buf, dtype=width)[chunk.offset : chunk.offset + n + 1]
    starts = offsets[:-1].astype(np.int64)
    candidate = (np.diff(offsets) == _LENGTH) & chunk.is_valid().to_numpy(zero_copy_only=False)
    if data_buf is None or not candidate.any():
        return candidate, np.zeros((0, _LENGTH), dtype=np.uint8)
    data = np.frombuffer(data_buf, dtype=np.uint8)
    index = starts[candidate][:, None] + np.arange(_LENGTH, dtype=np.int64)
    return candidate, data[index]


def _codes_from_objects(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of ``str`` values of length 18, their code points as an (n, 18) array)."""
    n = len(values)
    if pd.api.types.infer_dtype(values, skipna=False) == "string":  # all str: C-speed len
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
    else:
        lengths = np.fromiter(
            (len(v) if isinstance(v, str) else -1 for v in values), dtype=np.int64, count=n
        )
    candidate = lengths == _LENGTH
    codes = np.array(values[candidate], dtype=f"U{_LENGTH}").view(np.uint32).reshape(-1, _LENGTH)
    # code points beyond the tables are never valid: fold them onto 255, which is not
    return candidate, np.minimum(codes, 255)


def _string_chunks(column: pd.Series) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """The column's 18-character candidates, block by block, in order.

    Blocks of :data:`_BLOCK` rows (pyarrow slices or numpy views, no copies) keep the
    (rows, 18) temporaries small whatever the chunk size.
    """
    array = column.array
    if isinstance(array, pd.arrays.ArrowExtensionArray):
        chunked = array.__arrow_array__()
        if isinstance(chunked, pa.Array):
            chunked = pa.chunked_array([chunked])
        if pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type):
            for chunk in chunked.chunks:
                for start in range(0, len(chunk), _BLOCK):
                    yield _codes_from_arrow(chunk.slice(start, _BLOCK))
            return
    values = column.to_numpy(dtype=object)
    for start in range(0, len(values), _BLOCK):
        yield _codes_from_objects(values[start : start + _BLOCK])


def _check(column: pd.Series, rule: Any) -> np.ndarray:
    """``rule`` ((n, 18) codes -> n booleans) on the 18-character strings, False elsewhere."""
    parts = []
    for candidate, codes in _string_chunks(column):
        ok = np.zeros(len(candidate), dtype=bool)
        if len(codes):
            ok[candidate] = rule(codes)
        parts.append(ok)
    if not parts:
        return np.zeros(0, dtype=bool)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _uscc_rule(codes: np.ndarray) -> np.ndarray:
    values = _USCC_VALUE[codes]
    total = values[:, :17] @ _USCC_W
    return (values >= 0).all(axis=1) & (values[:, 17] == (31 - total % 31) % 31)


def _resident_id_rule(codes: np.ndarray) -> np.ndarray:
    digits = _DIGIT_VALUE[codes[:, :17]]
    total = digits @ _ID_W
    return (digits >= 0).all(axis=1) & (codes[:, 17] == _ID_CHECK_CODE[total % 11])


def _in_exceptions(column: pd.Series, exceptions: frozenset[str]) -> np.ndarray:
    """Exact matches with the exception list; only ``str`` values can be on it."""
    if not exceptions:
        return np.zeros(len(column), dtype=bool)
    array = column.array
    if isinstance(array, pd.arrays.ArrowExtensionArray):
        chunked = array.__arrow_array__()
        if pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type):
            listed = pa.array(sorted(exceptions), type=chunked.type)
            found = pc.is_in(chunked, value_set=listed, skip_nulls=True)
            return found.to_numpy(zero_copy_only=False).astype(bool, copy=False)
    values = column.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=False) != "string":  # keep str values only
        is_str = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
        out = np.zeros(len(values), dtype=bool)
        out[is_str] = _in_exceptions(pd.Series(values[is_str], dtype=object), exceptions)
        return out
    return pd.Index(values, dtype=object).isin(list(exceptions))


def valid_uscc(column: pd.Series, exceptions: frozenset[str] | None = None) -> pd.Series:
    """:func:`govbank.domain.identifiers.is_valid_uscc` for a whole column, or on ``exceptions``.

    ``exceptions`` defaults to the reference list (:func:`uscc_exceptions`). Returns a
    boolean Series with the column's index.
    """
    listed = uscc_exceptions() if exceptions is None else exceptions
    ok = _check(column, _uscc_rule) | _in_exceptions(column, listed)
    return pd.Series(ok, index=column.index, dtype=bool)


def valid_resident_id(column: pd.Series) -> pd.Series:
    """:func:`govbank.domain.identifiers.is_valid_resident_id` for a whole column, as a boolean Series."""
    return pd.Series(_check(column, _resident_id_rule), index=column.index, dtype=bool)


class ColumnValuesValidUscc(ColumnMapMetricProvider):
    """Row-wise metric: the value is a valid USCC or on the pilot-era exception list."""

    condition_metric_name = "column_values.valid_uscc"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return valid_uscc(column)


class ColumnValuesValidResidentId(ColumnMapMetricProvider):
    """Row-wise metric: the value is an 18-character resident ID with a valid check digit."""

    condition_metric_name = "column_values.valid_resident_id"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return valid_resident_id(column)


def _template(renderer_configuration: RendererConfiguration, what: str) -> RendererConfiguration:
    """Shared Data Docs sentence: '<column> values must be <what>'."""
    renderer_configuration.add_param(name="column", param_type=RendererValueType.STRING)
    renderer_configuration.add_param(name="mostly", param_type=RendererValueType.NUMBER)
    params = renderer_configuration.params
    template = f"$column values must be {what}"
    if not renderer_configuration.include_column_name:
        template = f"values must be {what}"
    if params.mostly and params.mostly.value < 1.0:
        renderer_configuration = ColumnMapExpectation._add_mostly_pct_param(
            renderer_configuration=renderer_configuration
        )
        template += ", at least $mostly_pct % of the time"
    renderer_configuration.template_str = template + "."
    return renderer_configuration


def _legacy_sentence(
    configuration: Any, runtime_configuration: dict | None, what: str
) -> list[RenderedStringTemplateContent]:
    """The sentence on Data Docs validation and suite pages (GX's legacy renderer)."""
    runtime_configuration = runtime_configuration or {}
    params = substitute_none_for_missing(configuration.kwargs, ["column", "mostly"])
    template = f"values must be {what}"
    if runtime_configuration.get("include_column_name") is not False:
        template = "$column " + template
    mostly = params["mostly"]
    if isinstance(mostly, (int, float)) and mostly < 1.0:
        params["mostly_pct"] = num_to_str(mostly * 100, no_scientific=True)
        template += ", at least $mostly_pct % of the time"
    return [
        RenderedStringTemplateContent(
            content_block_type="string_template",
            string_template={
                "template": template + ".",
                "params": params,
                "styling": runtime_configuration.get("styling"),
            },
        )
    ]


_USCC_SENTENCE = "valid unified social credit codes (GB 32100-2015)"
_RESIDENT_ID_SENTENCE = "valid resident ID numbers (GB 11643-1999)"


class ExpectColumnValuesToBeValidUscc(ColumnMapExpectation):
    """Expect column entries to be valid unified social credit codes (GB 32100-2015).

    A valid code has 18 characters from ``0-9A-HJ-NPQRTUWXY`` (no I, O, Z, S, V, no lower
    case) and an 18th character equal to the check character (weights 3^(i-1) mod 31).
    Codes on the reference list of legally valid pilot-era codes
    (``include/govbank/domain/data/uscc_exceptions.csv``) pass even when their check fails.
    Nulls are skipped.

    Args:
        column (str): The column to check.

    Other Parameters:
        mostly (float): Share of non-null rows that must pass. Default 1.

    Code Examples:
        Passing Case:
            Input:
                ExpectColumnValuesToBeValidUscc(column="uscc")
                on uscc = ["91330304MA2ABCDE0T", None]
            Output:
                {"success": true, "result": {"unexpected_count": 0}}

        Failing Case:
            Input:
                ExpectColumnValuesToBeValidUscc(column="uscc")
                on uscc = ["91330304MA2ABCDE0X", "91330304ma2abcde0t"]  # check char, case
            Output:
                {"success": false, "result": {"unexpected_count": 2,
                 "partial_unexpected_list": ["91330304MA2ABCDE0X", "91330304ma2abcde0t"]}}
    """

    map_metric = "column_values.valid_uscc"
    success_keys = ("mostly",)
    args_keys = ("column",)

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production",
        "tags": ["govbank", "column map expectation", "GB 32100-2015"],
        "contributors": ["govbank"],
        "requirements": [],
    }

    class Config:
        title = "Expect column values to be valid USCC"

    @classmethod
    def _prescriptive_template(
        cls, renderer_configuration: RendererConfiguration
    ) -> RendererConfiguration:
        return _template(renderer_configuration, _USCC_SENTENCE)

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    @render_suite_parameter_string
    def _prescriptive_renderer(
        cls,
        configuration: Any = None,
        result: Any = None,
        runtime_configuration: dict | None = None,
        **kwargs: Any,
    ) -> list[RenderedStringTemplateContent]:
        return _legacy_sentence(configuration, runtime_configuration, _USCC_SENTENCE)


class ExpectColumnValuesToBeValidResidentId(ColumnMapExpectation):
    """Expect column entries to be valid 18-character resident ID numbers (GB 11643-1999).

    Seventeen ASCII digits then a check character ``0-9`` or upper-case ``X`` computed
    with the ISO 7064 MOD 11-2 weights. Nulls are skipped, so an optional ID passes
    when empty.

    Args:
        column (str): The column to check.

    Other Parameters:
        mostly (float): Share of non-null rows that must pass. Default 1.

    Code Examples:
        Passing Case:
            Input:
                ExpectColumnValuesToBeValidResidentId(column="legal_rep_id")
                on legal_rep_id = ["11010519491231002X", None]
            Output:
                {"success": true, "result": {"unexpected_count": 0}}

        Failing Case:
            Input:
                ExpectColumnValuesToBeValidResidentId(column="legal_rep_id")
                on legal_rep_id = ["110105194912310021"]  # check digit should be X
            Output:
                {"success": false, "result": {"unexpected_count": 1}}
    """

    map_metric = "column_values.valid_resident_id"
    success_keys = ("mostly",)
    args_keys = ("column",)

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production",
        "tags": ["govbank", "column map expectation", "GB 11643-1999"],
        "contributors": ["govbank"],
        "requirements": [],
    }

    class Config:
        title = "Expect column values to be valid resident IDs"

    @classmethod
    def _prescriptive_template(
        cls, renderer_configuration: RendererConfiguration
    ) -> RendererConfiguration:
        return _template(renderer_configuration, _RESIDENT_ID_SENTENCE)

    @classmethod
    @renderer(renderer_type=LegacyRendererType.PRESCRIPTIVE)
    @render_suite_parameter_string
    def _prescriptive_renderer(
        cls,
        configuration: Any = None,
        result: Any = None,
        runtime_configuration: dict | None = None,
        **kwargs: Any,
    ) -> list[RenderedStringTemplateContent]:
        return _legacy_sentence(configuration, runtime_configuration, _RESIDENT_ID_SENTENCE)
