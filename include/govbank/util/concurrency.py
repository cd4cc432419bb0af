"""Two second threads of a file's load: one reads ahead, one writes behind.

The load is a pipeline of three kinds of work that hold the GIL at different times:
Arrow's parsing (releases it), Great Expectations (holds it), PostgreSQL's COPY (waits on
the socket, releases it). Running the first and the last beside GX keeps two cores busy.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import Future

T = TypeVar("T")
R = TypeVar("R")


class BackgroundWriter:
    """Runs writes in a second thread while the next chunks are read and checked.

    PostgreSQL parses a COPY on its own core; the Python side waits on the socket with
    the GIL released. A few writes in flight at most (one GX batch hands over several
    at once), so memory stays flat; the connection is used by one thread at a time
    (:meth:`wait` before anything else uses it). SQLite connections stay in their own
    thread: with ``background=False`` the write happens inline.
    """

    def __init__(self, background: bool, depth: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="govbank-stage") if background else None
        self._pending: deque[Future] = deque()
        self._depth = depth

    @property
    def background(self) -> bool:
        """Whether writes run in a second thread (else inline, in the caller's)."""
        return self._pool is not None

    @property
    def in_flight(self) -> int:
        """Writes handed over and not yet waited for."""
        return len(self._pending)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)``, in the second thread if there is one; blocks while ``depth`` wait."""
        if self._pool is None:
            fn(*args)
            return
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        """Until every write handed over is done; the first error of one is raised here."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Let writes in flight finish (an error, if any, is raised by :meth:`wait`)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class Prefetch(Generic[T, R]):
    """Iterates ``fn(item)`` for each item of ``source``, computed in a second thread ahead.

    Arrow parses and computes without the GIL, so the read runs on the core that GX's
    Python leaves idle. ``depth`` results wait at most (flat memory). Whatever the
    source or ``fn`` raises is raised where that item was due, after the items before it.
    """

    _DONE = object()

    def __init__(self, source: Iterator[T], fn: Callable[[T], R], depth: int = 1) -> None:
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(source, fn), name="govbank-read", daemon=True
        )
        self._thread.start()

    def _run(self, source: Iterator[T], fn: Callable[[T], R]) -> None:
        try:
            for item in source:
                if not self._put(fn(item)):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[R]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop reading (the consumer is done or failed) and wait for the thread."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()
