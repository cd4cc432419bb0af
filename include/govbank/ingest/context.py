"""What a run needs, passed explicitly: no globals, no secrets in logs.

Besides configuration it holds the run's seams: how the staging writer and the early
inserts are made, and a hook called at named points of a file's load. Tests and the
benchmark observe or fault a run through these instead of patching module names.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from govbank.config.contracts import BankContract
from govbank.ingest.stage import EarlyInsert
from govbank.transport import Landing
from govbank.util.concurrency import BackgroundWriter

log = logging.getLogger(__name__)


def no_hook(point: str, file_name: str, rows: int) -> None:
    """The default hook: a run is not observed."""


def log_alert(text: str) -> None:
    """The default alert seam: a warning in the log (orchestration injects the notifier)."""
    log.warning("ALERT %s", " | ".join(text.splitlines()))


@dataclass
class Context:
    """One run's configuration and seams (``build_context`` makes it from settings)."""

    engine: Engine
    landing: Landing
    contracts: dict[str, BankContract]
    archive_dir: Path
    pseudonym_key: bytes
    validator_factory: Callable[[], object]
    chunk_rows: int = 40_000
    gx_rows: int = 120_000  # rows per Great Expectations batch (several chunks)
    max_decompressed: int | None = None  # None: govbank.ingest.read's default
    # False: every delimited file goes to the exact reader, whose chunks are exactly
    # chunk_rows (the columnar reader hands out MiB blocks)
    fast_reader: bool = True
    # called with (point, file name, rows) at "registered" (before the envelope is
    # checked), "staged" (a chunk written to staging, in the writer's thread) and
    # "merged" (inside the file's transaction, before the commit)
    hook: Callable[[str, str, int], None] = no_hook
    writer_factory: Callable[[bool], BackgroundWriter] = BackgroundWriter  # arg: in a second thread
    early_insert: Callable[..., EarlyInsert] = EarlyInsert
    max_attempts: int = 3  # loads failed on our side before a file is set aside as poison
    max_reject_rows: int = 10_000  # row issues kept in detail per file; the rest counted per reason
    # how operators are told of a poison file (a test collects the texts)
    alert: Callable[[str], None] = log_alert
    _validator: object | None = field(default=None, repr=False)
    _warming: threading.Thread | None = field(default=None, repr=False)
    _warm_error: BaseException | None = field(default=None, repr=False)

    @property
    def validator(self):  # type: ignore[no-untyped-def]
        if self._warming is not None:
            self._warming.join()
            self._warming = None
            if self._warm_error is not None:
                err, self._warm_error = self._warm_error, None
                raise err
        if self._validator is None:
            self._validator = self.validator_factory()
        return self._validator

    def warm_validator(self) -> None:
        """Build the validator in a second thread while the file is fetched and read.

        ``import great_expectations`` and its context cost seconds of a task that is
        otherwise waiting on the file, the socket or Arrow's threads. An error is
        raised where the validator is first used, as if it were built there.
        """
        if self._validator is not None or self._warming is not None:
            return

        def build() -> None:
            try:
                self._validator = self.validator_factory()
            except BaseException as exc:  # handed to the thread that uses it
                self._warm_error = exc

        self._warming = threading.Thread(target=build, name="govbank-validator", daemon=True)
        self._warming.start()
