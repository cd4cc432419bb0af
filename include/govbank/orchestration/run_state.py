"""Which banks need a person after an ingest run, from the states Airflow reports.

A late bank fails its ``wait_for_files`` sensor while its ``ingest_bank`` still answers
whatever did arrive; the run must end red either way, and say which banks and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WAIT_TASK = "bank.wait_for_files"
INGEST_TASK = "bank.ingest_bank"
_BAD = frozenset({"failed", "upstream_failed"})


@dataclass(frozen=True)
class BankAttention:
    late: tuple[str, ...]
    failed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.late or self.failed)

    def message(self) -> str:
        parts = []
        if self.late:
            parts.append("late (no complete files by the deadline): " + ", ".join(self.late))
        if self.failed:
            parts.append("ingest failed: " + ", ".join(self.failed))
        return "; ".join(parts) or "every bank ingested"


def banks_needing_attention(
    bank_codes: Sequence[str], task_states: Mapping[str, str | None]
) -> BankAttention:
    """``task_states`` as Airflow's ``get_task_states`` gives one run: ``"<task_id>_<map_index>"``."""
    late, failed = [], []
    for index, bank in enumerate(bank_codes):
        if task_states.get(f"{WAIT_TASK}_{index}") in _BAD:
            late.append(bank)
        if task_states.get(f"{INGEST_TASK}_{index}") in _BAD:
            failed.append(bank)
    return BankAttention(tuple(late), tuple(failed))
