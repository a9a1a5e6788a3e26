"""`ThreadPoolTaskRunner`: sync tasks on threads, async tasks on an event loop.

Sync runs go to a `WorkerPool` (bounded, but a worker blocked on a child's future
lends its slot, so nested submission cannot deadlock). A thread cannot be killed: a
run that times out while it runs (task or flow timeout) has its worker *abandoned*,
so the slot goes to a new thread, shutdown and interpreter exit do not wait for it,
and its late result is discarded. Async runs go to the loop the
runner was entered on with `async with` (the caller's loop), or else to the
background engine loop.

    >>> from asyncflow import task
    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> with ThreadPoolTaskRunner(max_workers=4) as runner:
    ...     runner.submit(double, {"x": 2}).result()
    4
"""

from __future__ import annotations

import os
import threading

from .._core import CancelReason, Run, WorkerPool, cancelled, execute_sync, start_on_loop
from ..settings import get_settings
from ._base import TaskRunner, check_max_workers
from ._current import set_default_factory

__all__ = ("ThreadPoolTaskRunner",)


def _default_max_workers() -> int:
    # As concurrent.futures: I/O-bound work benefits from more threads than cores.
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadPoolTaskRunner(TaskRunner):
    """Runs sync tasks on up to `max_workers` threads and async tasks on a loop.

    `max_workers` defaults to `ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS`, else
    `min(32, cpu_count + 4)`. Worker threads are named `{thread_name_prefix}-N`, as
    `concurrent.futures.ThreadPoolExecutor`'s.
    """

    def __init__(
        self, max_workers: int | None = None, *, thread_name_prefix: str = "asyncflow-worker"
    ) -> None:
        super().__init__()
        max_workers = check_max_workers(
            max_workers, get_settings().thread_pool_max_workers, _default_max_workers()
        )
        self._max_workers = max_workers
        self._pool: WorkerPool | None = None
        self.thread_name_prefix = thread_name_prefix

    @property
    def max_workers(self) -> int:
        """The most sync runs executing at once (threads lent while a run blocks on a
        future do not count)."""
        return self._max_workers

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(self._max_workers, thread_name_prefix=self.thread_name_prefix)

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self._max_workers})"

    def _start_resources(self) -> None:
        self._pool = WorkerPool(self._max_workers, self.thread_name_prefix)

    def _stop_resources(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=not self._abandoned)

    def start_run(self, run: Run) -> None:
        if run.is_async:
            assert run.loop is not None
            start_on_loop(run, run.loop)
            return
        pool = self._pool
        if pool is None:
            cancelled(run, "cancelled: its runner shut down before it started")
            return
        pool.submit(execute_sync, run)

    @property
    def worker_threads(self) -> list[threading.Thread]:
        """The pool's live worker threads (empty when not started)."""
        return [] if self._pool is None else self._pool.threads()

    def _release_stopped(self, run: Run) -> None:
        # A running thread cannot be stopped. But a run that timed out must not keep
        # its slot, nor be joined: its worker is abandoned (a no-op once the call has
        # returned). On Ctrl-C/SIGTERM the whole pool is left unjoined instead, and a
        # web app's shutdown still waits a moment for workers that call
        # check_cancelled(): those stay in the pool.
        if run.cancel_reason is CancelReason.TIMED_OUT and not run.is_async:
            pool = self._pool
            if pool is not None:
                pool.abandon(run)


def _default_runner() -> ThreadPoolTaskRunner:
    return ThreadPoolTaskRunner(thread_name_prefix="asyncflow-default")


set_default_factory(_default_runner)  # the process-wide default (see _current)
