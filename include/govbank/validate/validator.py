"""The former home of the Validator: a thin re-export until callers import
:mod:`govbank.validate` (or :mod:`govbank.validate.context`) instead."""

from govbank.validate.context import Validator
from govbank.validate.file_result import FileValidation, ValidationOutcome
from govbank.validate.suites import ALL_COLUMNS, LINE_COLUMN, SUITE_FILES

__all__ = [
    "ALL_COLUMNS",
    "LINE_COLUMN",
    "SUITE_FILES",
    "FileValidation",
    "ValidationOutcome",
    "Validator",
]
