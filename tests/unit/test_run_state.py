"""A run turns red when any bank was late or failed: the decision, without Airflow."""

from __future__ import annotations

from govbank.orchestration.run_state import banks_needing_attention


def test_every_bank_ingested_needs_nobody() -> None:
    states = {
        "bank.wait_for_files_0": "success", "bank.ingest_bank_0": "success",
        "bank.wait_for_files_1": "success", "bank.ingest_bank_1": "success",
    }
    attention = banks_needing_attention(["ABC", "WZB"], states)
    assert not attention
    assert attention.message() == "every bank ingested"


def test_a_late_bank_and_a_failed_bank_are_named() -> None:
    states = {
        "bank.wait_for_files_0": "failed", "bank.ingest_bank_0": "success",  # late, answered what came
        "bank.wait_for_files_1": "success", "bank.ingest_bank_1": "failed",
        "bank.wait_for_files_2": "success", "bank.ingest_bank_2": "success",
    }
    attention = banks_needing_attention(["ABC", "CCB", "WZB"], states)
    assert attention.late == ("ABC",) and attention.failed == ("CCB",)
    assert "ABC" in attention.message() and "CCB" in attention.message()
    assert "WZB" not in attention.message()


def test_upstream_failed_counts_as_failed() -> None:
    attention = banks_needing_attention(["ABC"], {"bank.ingest_bank_0": "upstream_failed"})
    assert attention.failed == ("ABC",)
