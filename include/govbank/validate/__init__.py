"""Great Expectations: suites, custom expectations, one result per file.

- :mod:`~govbank.validate.suites`: the row rules, read from ``expectations/*.json``;
- :mod:`~govbank.validate.context`: :class:`Validator`, the GX context and Data Docs site;
- :mod:`~govbank.validate.file_result`: a file's batches merged into one result and page;
- :mod:`~govbank.validate.gx_runtime`: every patch of GX internals, and the GX version pin;
- :mod:`~govbank.validate.expectations`: our custom expectations (imports GX).

Importing this package does not import GX: DAG files may do it.
"""

from govbank.validate.context import Validator
from govbank.validate.file_result import FileValidation, ValidationOutcome
from govbank.validate.suites import SUITE_FILES

__all__ = ["SUITE_FILES", "FileValidation", "ValidationOutcome", "Validator"]
