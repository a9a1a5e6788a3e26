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
* a worker whose item was given up on (a timed-out run: a thread cannot be killed) can
  be *abandoned*: it leaves the pool at once, so its slot is free for a new thread,
  `shutdown` does not join it, and when its item finally returns the thread retires.

Which item a worker runs is kept in a per-worker `_Worker` cell, written without the
lock (one attribute store per item); `abandon` and the worker agree through the
item-specific flag `cell.abandoned` (see `abandon`).

    >>> import threading
    >>> pool = WorkerPool(2, "demo")
    >>> ran = threading.Event()
    >>> pool.submit(lambda event: event.set(), ran)      # items are (callable, argument)
    >>> ran.wait(10)
    True
    >>> pool.shutdown()
"""

from __future__ import annotations

import collections
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


class _Worker:
    """What the pool knows about one of its threads."""

    __slots__ = ("abandoned", "blocked", "item")

    def __init__(self) -> None:
        self.item: Any = None  # the argument of the item it runs, None while idle
        self.abandoned: Any = None  # the item it was abandoned in (see `abandon`)
        self.blocked = 0  # how many blocking waits it is in (counted in pool._blocked)


class WorkerPool:
    def __init__(self, max_workers: int, name: str) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        # One token per worker that finished an item and went back to the queue, as
        # ThreadPoolExecutor's idle semaphore counts them; a deque's append and pop are
        # atomic C calls, where `threading.Semaphore` runs Python code under a lock of
        # its own on both sides of every item.
        self._idle: collections.deque[None] = collections.deque()
        self._lock = threading.Lock()
        self._threads: dict[threading.Thread, _Worker] = {}
        self._blocked = 0
        self._closed = False
        self._ids = itertools.count(1)

    def submit(self, fn: Callable[[Any], object], arg: Any) -> None:
        if self._closed:
            raise RuntimeError(f"worker pool {self.name!r} is shut down")
        self._queue.put((fn, arg))
        idle = self._idle
        if idle:
            try:
                idle.pop()  # an idle worker will take the item
                return
            except IndexError:  # another submitter took the last token meanwhile
                pass
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

    def threads(self) -> list[threading.Thread]:
        """Its worker threads (an abandoned one is not its any more)."""
        with self._lock:
            return list(self._threads)

    def abandon(self, arg: Any) -> bool:
        """Give up on the worker running the item `arg`: it leaves the pool now (a new
        thread may take its slot; `shutdown` will not join it) and retires when `arg`
        returns. False if no worker runs `arg` (queued, finished, or run elsewhere).

        Lock-free handshake with the worker, which clears `cell.item` and *then* reads
        `cell.abandoned`: we set `cell.abandoned` and *then* check `cell.item` again. If
        it still holds `arg`, the worker has not cleared it yet and is bound to see the
        flag. If not, the item just returned and the worker may or may not have seen the
        flag; either way it is no longer running `arg`, which is all that matters: a
        worker that did see it retires by itself (see `_work`).
        """
        with self._lock:
            for thread, cell in self._threads.items():
                if cell.item is arg:
                    cell.abandoned = arg
                    if cell.item is not arg:
                        return False
                    del self._threads[thread]
                    self._blocked -= cell.blocked  # its waits no longer lend a slot
                    break
            else:
                return False
        if not self._queue.empty():
            self._spawn_if_allowed()
        return True

    # ---- blocking compensation (see _context.enter_blocking) --------------------------
    def blocking_enter(self) -> None:
        with self._lock:
            cell = self._threads.get(threading.current_thread())
            if cell is None:  # an abandoned worker: it holds no slot to lend
                return
            cell.blocked += 1
            self._blocked += 1
        if not self._queue.empty():
            self._spawn_if_allowed()

    def blocking_exit(self) -> None:
        with self._lock:
            cell = self._threads.get(threading.current_thread())
            if cell is not None and cell.blocked:
                cell.blocked -= 1
                self._blocked -= 1

    # ---- internals -----------------------------------------------------------------
    def _spawn_if_allowed(self) -> None:
        with self._lock:
            if self._closed or len(self._threads) >= self.max_workers + self._blocked:
                return
            cell = _Worker()
            t = threading.Thread(
                target=self._work, args=(cell,), name=f"{self.name}-{next(self._ids)}", daemon=True
            )
            # Started under the lock, so `shutdown` never sees a thread it cannot join.
            self._threads[t] = cell
            t.start()

    def _surplus(self) -> bool:
        # The caller checks without the lock first (it is almost always False).
        with self._lock:
            if len(self._threads) > self.max_workers + self._blocked:
                self._threads.pop(threading.current_thread(), None)
                return True
        return False

    def _work(self, cell: _Worker) -> None:
        set_worker_pool(self)
        get = self._queue.get
        idle_tokens = self._idle
        me = threading.current_thread()
        try:
            while True:
                item = get()
                if item is None:
                    break
                fn, arg = item
                cell.item = arg
                try:
                    fn(arg)
                except BaseException:  # the engine's wrappers catch everything; belt and braces
                    logger.exception("asyncflow worker %s: unexpected error", self.name)
                cell.item = None
                if cell.abandoned is arg:  # given up on while it ran: the pool replaced us
                    return
                del item, fn, arg  # drop references before blocking on the queue again
                # Checked without the lock first: almost always False, once per item.
                if len(self._threads) > self.max_workers + self._blocked and self._surplus():
                    return
                idle_tokens.append(None)
        finally:
            with self._lock:
                if self._threads.get(me) is cell:  # `abandon` may have removed us already
                    del self._threads[me]
                    self._blocked -= cell.blocked
            if cell.abandoned is not None and not self._closed and not self._queue.empty():
                self._spawn_if_allowed()  # we may have retired without `abandon` seeing it
