"""Slow subprocess work started at the beginning of the session, while other tests run.

Some tests spend minutes waiting for processes of their own: ``scripts/demo.sh`` twice,
``airflow dags test`` runs, an Airflow set up with the FAB auth manager. Those processes
need nothing from the test process, so a module registers them as a job::

    @background.job
    def demo_runs(folder: Path) -> dict: ...      # runs the processes, returns what they left

and its fixture asks for the outcome with ``background.result(demo_runs)``. When the
session selects a test of the module, ``tests/conftest.py`` queues the job at the start
of the session on one worker thread (one job at a time: the machine has two cores, and
the test process keeps one busy), so it runs while the in-process tests do. A test run
on its own runs its job when it asks. Either way the job runs the same processes in a
fresh folder of its own, and the test asserts the same outcomes on what they left. An
exception in a job (a failed assertion included) is raised where the test asks.

A job takes its processes' environment from ``background.environ()``, the session's as
it was when the jobs were queued, never from ``os.environ``, which a test running
meanwhile may patch.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

Job = Callable[[Path], Any]
J = TypeVar("J", bound=Job)

_jobs: dict[str, list[Job]] = {}  # module name -> its jobs, in definition order
_futures: dict[Job, Future] = {}
_executor: ThreadPoolExecutor | None = None
_base: Path | None = None
_environ: dict[str, str] | None = None


def environ() -> dict[str, str]:
    """The session's environment as it was when the jobs were queued. A job builds its
    processes' environment from this, not from os.environ: a test running meanwhile may
    have patched os.environ for itself."""
    return dict(_environ if _environ is not None else os.environ)


def job(fn: J) -> J:
    """Register fn(folder) as a job of its module."""
    _jobs.setdefault(fn.__module__, []).append(fn)
    return fn


def _folder(fn: Job) -> Path:
    base = _base or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{fn.__name__}-", dir=base))


def start(modules: Iterable[str], base: Path) -> list[str]:
    """Queue the jobs of these modules, in this order; returns their names."""
    global _executor, _base, _environ
    _base = base
    _environ = dict(os.environ)
    started = []
    for module in dict.fromkeys(modules):
        for fn in _jobs.get(module, ()):
            if fn in _futures:
                continue
            if _executor is None:
                # not "govbank-": tests look for threads of the package by that prefix
                _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tests-background")
            _futures[fn] = _executor.submit(fn, _folder(fn))
            started.append(f"{module}.{fn.__name__}")
    if _executor is not None:
        _executor.shutdown(wait=False)  # the queued jobs still run; then the thread ends
    return started


def result(fn: Job) -> Any:
    """The job's outcome: waits for it if it was queued, runs it now if it was not."""
    future = _futures.get(fn)
    if future is None:
        return fn(_folder(fn))
    return future.result()


def finish() -> None:
    """At the end of the session: jobs not started are dropped, a running one is waited for
    (its processes must not outlive the session)."""
    if _executor is not None:
        _executor.shutdown(wait=True, cancel_futures=True)
