"""A thread pool for sync task runs that cannot deadlock on nested submission.

Like `concurrent.futures.ThreadPoolExecutor` (idle-thread reuse, threads started on
demand up to `max_workers`), with two differences:

* items are fire-and-forget callables: the engine completes its own futures, so no
  `concurrent.futures.Future` is built per item;
* a worker that blocks on a future (a task waiting for its children) is not counted
  against `max_workers` while it blocks: the pool may start one more thread, and the
  surplus thread retires once the blocked one resumes. This is the "managed blocker"
  idea of Java's ForkJoinPool; it keeps the number of *runnable* workers bounded
  without letting parents starve their children.

    >>> pool = WorkerPool(2, "demo")          # doctest: +SKIP
    >>> pool.submit(print, "hello")
    >>> pool.shutdown()
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from ._context import set_worker_pool

__all__ = ("WorkerPool",)

logger = logging.getLogger("asyncflow")

_Item = tuple[Callable[[Any], object], Any]


class WorkerPool:
    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._blocked = 0
        self._closed = False
        self._ids = itertools.count(1)

    def submit(self, fn: Callable[[Any], object], arg: Any) -> None:
        if self._closed:
            raise RuntimeError(f"worker pool {self.name!r} is shut down")
        self._queue.put((fn, arg))
        if not self._idle.acquire(blocking=False):
            self._spawn_if_allowed()

    def drain(self) -> list[Any]:
        """Remove and return the arguments of every queued item not yet started."""
        out: list[Any] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            if item is None:  # a shutdown sentinel: put it back for its worker
                self._queue.put(None)
                return out
            out.append(item[1])

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            me = threading.current_thread()
            for t in threads:
                if t is not me:
                    t.join()

    @property
    def thread_count(self) -> int:
        return len(self._threads)

    # ---- blocking compensation (see _context.enter_blocking) --------------------------
    def blocking_enter(self) -> None:
        with self._lock:
            self._blocked += 1
        if not self._queue.empty():
            self._spawn_if_allowed()

    def blocking_exit(self) -> None:
        with self._lock:
            self._blocked -= 1

    # ---- internals -----------------------------------------------------------------
    def _spawn_if_allowed(self) -> None:
        with self._lock:
            if self._closed or len(self._threads) >= self.max_workers + self._blocked:
                return
            t = threading.Thread(
                target=self._work, name=f"{self.name}-{next(self._ids)}", daemon=True
            )
            # Started under the lock, so `shutdown` never sees a thread it cannot join.
            t.start()
            self._threads.add(t)

    def _surplus(self) -> bool:
        # Checked without the lock first: it is almost always False.
        if len(self._threads) <= self.max_workers + self._blocked:
            return False
        with self._lock:
            if len(self._threads) > self.max_workers + self._blocked:
                self._threads.discard(threading.current_thread())
                return True
        return False

    def _work(self) -> None:
        set_worker_pool(self)
        get = self._queue.get
        try:
            while True:
                item = get()
                if item is None:
                    break
                fn, arg = item
                try:
                    fn(arg)
                except BaseException:  # the engine's wrappers catch everything; belt and braces
                    logger.exception("asyncflow worker %s: unexpected error", self.name)
                del item, fn, arg  # drop references before blocking on the queue again
                if self._surplus():
                    return
                self._idle.release()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
