"""Where Airflow's workers call :func:`govbank.orchestration.warm.warm_up`, per executor.

Airflow 3 forks each task from a worker process (``os.fork`` in
``airflow/sdk/execution_time/supervisor.py``, ``WatchedSubprocess.start``), so a
worker that imported Great Expectations before it forks hands it to every task:

- **LocalExecutor** (``airflow standalone``, one machine): its workers are
  ``multiprocessing`` processes forked from the scheduler in ``LocalExecutor.start``
  (``airflow/executors/local_executor.py``, ``_spawn_workers_with_gc_freeze``).
  :class:`WarmLocalExecutor` warms the scheduler just before that, so every worker, and
  every task each worker forks, shares one warm copy. Configure it by module path:
  ``AIRFLOW__CORE__EXECUTOR=govbank.orchestration.workers.WarmLocalExecutor``.
- **CeleryExecutor**: ``airflow celery worker``'s main process imports Celery's
  ``imports`` modules (``celery/worker/worker.py``, ``loader.init_worker``) before it
  forks its pool, where Airflow preloads its own modules too
  (``on_celery_import_modules`` in ``airflow/providers/celery/executors/celery_executor_utils.py``).
  :data:`CELERY_CONFIG` is Airflow's default Celery configuration plus our module
  :mod:`govbank.orchestration.celery_worker`:
  ``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=govbank.orchestration.workers.CELERY_CONFIG``.

Both are read by the scheduler too; neither imports Great Expectations there unless a
LocalExecutor starts its workers. ``GOVBANK_WARM_UP=off`` turns warming off.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from airflow.executors.local_executor import LocalExecutor

from govbank.orchestration.warm import warm_up

CELERY_WORKER_MODULE = "govbank.orchestration.celery_worker"


class WarmLocalExecutor(LocalExecutor):
    """Airflow's LocalExecutor whose workers are forked from a warm scheduler."""

    def start(self) -> None:
        if multiprocessing.get_start_method() == "fork":
            warm_up()
        else:  # spawned workers import afresh: warming the scheduler would not reach them
            self.log.info("govbank warm-up skipped: LocalExecutor workers are not forked here")
        super().start()


def __getattr__(name: str) -> Any:
    """``CELERY_CONFIG``, built on first use: the Celery provider is imported only then."""
    if name != "CELERY_CONFIG":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    imports = tuple(DEFAULT_CELERY_CONFIG.get("imports") or ())
    config = {**DEFAULT_CELERY_CONFIG, "imports": (*imports, CELERY_WORKER_MODULE)}
    globals()["CELERY_CONFIG"] = config
    return config
