"""One error hierarchy, split by who has to act.

``BankInputError`` is what a bank sent wrong: the file is rejected with a receipt and
nobody retries. ``TransientError`` is what broke on our side or on the network:
raise it and let Airflow retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from govbank.domain.issues import RowIssue


class GovbankError(Exception):
    """Root of every error the package raises on purpose."""


class ConfigError(GovbankError):
    """A contract, setting or connection is wrong: fix the configuration, do not retry."""


class TransientError(GovbankError):
    """Worth retrying: a dropped connection, a locked database, a server hiccup."""


class BankInputError(GovbankError):
    """A whole file cannot be accepted; carries a reason code and a Chinese message."""

    def __init__(self, reason_code: str, message_zh: str, detail: str = "") -> None:
        super().__init__(f"{reason_code}: {message_zh}" + (f" ({detail})" if detail else ""))
        self.reason_code = reason_code
        self.message_zh = message_zh
        self.detail = detail


class FileRejected(BankInputError):
    """A file refused after its rows were read: its counts and row findings go into the receipt."""

    def __init__(
        self,
        reason_code: str,
        message_zh: str,
        detail: str = "",
        *,
        rows_total: int = 0,
        issues: Sequence[RowIssue] = (),
        data_docs: str | None = None,
    ) -> None:
        super().__init__(reason_code, message_zh, detail)
        self.rows_total = rows_total
        self.issues = list(issues)
        self.data_docs = data_docs


class FilesFailed(GovbankError):
    """Files of a bank failed on our side; its other files were processed (the task fails)."""
