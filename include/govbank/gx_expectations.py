"""Custom Great Expectations for Chinese identifiers (GB 32100 USCC, GB 11643 resident ID).

Importing this module registers ``expect_column_values_to_be_valid_uscc`` and
``expect_column_values_to_be_valid_resident_id`` with GX, so suites stored as JSON in
``expectations/`` can name them. The rules themselves live in :mod:`govbank.checks`;
these classes only adapt them to GX's column-map machinery. Like every GX map
expectation they skip nulls, so optional fields (``legal_rep_id``) pass when empty.

Only the pandas engine is implemented: a weighted modulo-31 check character has no
portable SQL spelling, and the pipeline validates pandas frames.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
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

from govbank.checks import is_valid_resident_id, is_valid_uscc
from govbank.reference import uscc_exceptions

__all__ = [
    "ColumnValuesValidResidentId",
    "ColumnValuesValidUscc",
    "ExpectColumnValuesToBeValidResidentId",
    "ExpectColumnValuesToBeValidUscc",
]


def _uscc_ok(value: object, exceptions: frozenset[str]) -> bool:
    return value in exceptions or is_valid_uscc(value)


class ColumnValuesValidUscc(ColumnMapMetricProvider):
    """Row-wise metric: the value is a valid USCC or on the pilot-era exception list."""

    condition_metric_name = "column_values.valid_uscc"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        exceptions = uscc_exceptions()
        return column.map(lambda v: _uscc_ok(v, exceptions)).astype(bool)


class ColumnValuesValidResidentId(ColumnMapMetricProvider):
    """Row-wise metric: the value is an 18-character resident ID with a valid check digit."""

    condition_metric_name = "column_values.valid_resident_id"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return column.map(is_valid_resident_id).astype(bool)


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
    (``include/reference/uscc_exceptions.csv``) pass even when their check fails.
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
