"""Warm workers: what an ingest task needs, imported and built once per worker.

Airflow 3 runs every task in a fork of its worker (the Task SDK supervisor's
``os.fork``), so what the worker holds when it forks is already in the task. A cold
task pays seconds to ``import great_expectations`` (with pandas and pyarrow) and to build
its GX context; :func:`warm_up` does that once, in the worker, before it forks, and
:func:`validator` hands the built :class:`~govbank.validate.Validator` to the task.
:mod:`govbank.orchestration.workers` calls :func:`warm_up` where each executor's workers
start (docs/scale-out.md, "Warm workers").

Importing this module is cheap: nothing heavy is imported before :func:`warm_up` runs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from govbank.config.settings import Settings

if TYPE_CHECKING:
    from govbank.validate import Validator

log = logging.getLogger(__name__)

WARM_UP_ENV = "GOVBANK_WARM_UP"  # "off": workers start cold, each task imports GX itself
_OFF = {"0", "off", "false", "no"}

_Key = tuple[Path, Path | None]
_lock = threading.Lock()
# the validators warm_up built, by folders; each is handed out once per process, so a
# forked task gets its own untouched copy and two runs in one process never share one
_warm: dict[_Key, Validator] = {}


def warm_up(settings: Settings | None = None) -> bool:
    """Import what a task imports and build the validator its settings call for.

    Call it in a worker process before it forks tasks. It opens no connection and leaves
    no thread running (a fork would copy neither safely). Never raises: a worker that
    cannot warm up still runs tasks, which then import cold. True when it warmed.
    """
    if os.environ.get(WARM_UP_ENV, "").strip().lower() in _OFF:
        log.info("govbank warm-up off (%s): tasks import Great Expectations themselves", WARM_UP_ENV)
        return False
    started = time.perf_counter()
    threads = set(threading.enumerate())
    try:
        settings = settings or Settings.from_env()
        key = _key(settings.expectations_dir, settings.data_docs_dir)
        from govbank.validate import gx_runtime

        gx_runtime.import_gx()  # GX with our patches and custom expectations
        import pandas  # noqa: F401
        import psycopg  # noqa: F401
        import pyarrow  # noqa: F401
        import pyarrow.csv  # noqa: F401

        from govbank.util.arrow_memory import use_preferred_pool

        use_preferred_pool()  # before anything allocates: the tasks inherit it
        import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401

        import govbank.ingest.run  # noqa: F401  (every stage a task runs)
        from govbank.validate import Validator

        with _lock:
            if key not in _warm:
                built = Validator(settings.expectations_dir, settings.data_docs_dir)
                import tqdm

                # GX's progress bars would start tqdm's monitor thread, which a fork does not copy
                tqdm.tqdm.monitor_interval = 0
                built.rehearse()  # GX's first validation costs more than the next
                _warm[key] = built
    except Exception:
        log.warning("govbank warm-up failed: tasks will import Great Expectations themselves", exc_info=True)
        return False
    left = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    if left:  # a fork copies only the forking thread: say so rather than hide it
        log.warning("govbank warm-up left threads running: %s", ", ".join(sorted(left)))
    log.info(
        "govbank warm-up: great_expectations, pandas, pyarrow, psycopg imported, validator built "
        "in %.1f s (pid %d)", time.perf_counter() - started, os.getpid(),
    )
    return True


def validator(expectations_dir: Path, data_docs_dir: Path | None) -> Validator:
    """The validator :func:`warm_up` built for these folders, else a new one.

    The warm one is handed out once per process and only while the suite files still
    say what it was built from. Logs one line saying whether GX was preloaded: a task's
    log tells operators whether its worker was warm.
    """
    started = time.perf_counter()
    preloaded = "great_expectations" in sys.modules
    with _lock:
        warm = _warm.pop(_key(expectations_dir, data_docs_dir), None)
    if warm is not None:
        if warm.matches_disk():
            log.info("great_expectations preloaded: yes (validator reused)")
            return warm
        log.info("the warm validator's suites changed on disk since the worker started: building anew")
    from govbank.validate import Validator

    built = Validator(expectations_dir, data_docs_dir)
    took = time.perf_counter() - started
    if preloaded:
        log.info("great_expectations preloaded: yes (validator built, %.1f s)", took)
    else:
        log.info("great_expectations preloaded: no (imported cold, %.1f s)", took)
    return built


def _key(expectations_dir: Path, data_docs_dir: Path | None) -> _Key:
    return Path(expectations_dir).resolve(), Path(data_docs_dir).resolve() if data_docs_dir else None
