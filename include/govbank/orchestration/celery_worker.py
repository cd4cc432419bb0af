"""Imported once by each Celery worker's main process before it forks its pool (the
``imports`` of :data:`govbank.orchestration.workers.CELERY_CONFIG`): warms it.

Nothing else should import this module: importing it is the warm-up.
"""

import gc

from govbank.orchestration.warm import warm_up

warm_up()
# what the warm-up built joins what Airflow froze before the imports (its own preload):
# the pool's forks then share those pages instead of copying them as GC touches them
gc.freeze()
