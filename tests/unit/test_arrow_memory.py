"""A task's Arrow buffers come from jemalloc (flat peak memory, bench/README.md), unless the
operator chose another pool through ``ARROW_DEFAULT_MEMORY_POOL``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import pyarrow as pa
from govbank.util.arrow_memory import use_preferred_pool
before = pa.default_memory_pool().backend_name
print(before, use_preferred_pool(), pa.default_memory_pool().backend_name, pa.array(range(10)).sum())
"""


@pytest.mark.parametrize(("chosen", "want"), [(None, "jemalloc"), ("system", "system")])
def test_tasks_allocate_from_jemalloc_unless_the_operator_chose(chosen: str | None, want: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    env["PYTHONPATH"] = str(ROOT / "include")
    if chosen:
        env["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, returned, after, total = out.stdout.split()
    assert (returned, after, total) == (want, want, "45")
    assert before == (chosen or "mimalloc")  # what pyarrow would have used
