"""Which allocator Arrow's buffers come from in a task process.

pyarrow's default pool is mimalloc, which keeps freed pages for reuse: a file's load
frees and allocates a GX batch's worth of buffers over and over, and its peak RSS crept
up with the file (1M rows 555-570 MB, 5M rows 601 MB). jemalloc, also built into
pyarrow's wheels, hands freed memory back: 527 and 523 MB, at the same speed
(bench/README.md). ``ARROW_DEFAULT_MEMORY_POOL`` set by an operator still wins.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def use_preferred_pool() -> str:
    """Make jemalloc Arrow's default pool (unless the environment chose one); its name."""
    import pyarrow as pa

    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        try:
            pool = pa.jemalloc_memory_pool()
        except NotImplementedError:  # a pyarrow built without it: keep the default
            log.info("Arrow has no jemalloc pool here: %s stays", pa.default_memory_pool().backend_name)
        else:
            if pa.default_memory_pool().backend_name != pool.backend_name:
                pa.set_memory_pool(pool)
    return pa.default_memory_pool().backend_name
