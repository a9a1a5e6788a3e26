"""`ThreadPoolTaskRunner`: sync tasks on threads, async tasks on an event loop.

Sync runs go to a `WorkerPool` (bounded, but a worker blocked on a child's future
lends its slot, so nested submission cannot deadlock). A thread cannot be killed: a
run that times out while it runs (task or flow timeout) has its worker *abandoned*,
so the slot goes to a new thread, shutdown and interpreter exit do not wait for it,
and its late result is discarded. Async runs go to the loop the
runner was entered on with `async with` (the caller's loop), or else to the
background engine loop.

    >>> with ThreadPoolTaskRunner(max_workers=4) as runner:     # doctest: +SKIP
    ...     runner.submit(double, {"x": 2}).result()
    4
"""

from __future__ import annotations

import os
import sys
import threading

from .._core import _engine, _portal, _signals
from .._core._attempt import CancelReason
from .._core._workers import WorkerPool
from ..settings import get_settings
from ._base import TaskRunner, check_max_workers

__all__ = (
    "ThreadPoolTaskRunner",
    "default_runner",
    "install_default_runner",
    "installed_runner",
)


def _default_max_workers() -> int:
    # As concurrent.futures: I/O-bound work benefits from more threads than cores.
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadPoolTaskRunner(TaskRunner):
    """Runs sync tasks on up to `max_workers` threads and async tasks on a loop.

    `max_workers` defaults to `ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS`, else
    `min(32, cpu_count + 4)`.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        max_workers = check_max_workers(
            max_workers, get_settings().thread_pool_max_workers, _default_max_workers()
        )
        self._max_workers = max_workers
        self._pool: WorkerPool | None = None
        self._thread_name = "asyncflow-worker"

    @property
    def max_workers(self) -> int:
        return self._max_workers

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self._max_workers)

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self._max_workers})"

    def _start_resources(self) -> None:
        self._pool = WorkerPool(self._max_workers, self._thread_name)

    def _stop_resources(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=not self._abandoned)

    def start_run(self, run: _engine.Run) -> None:
        if run.is_async:
            assert run.loop is not None
            _engine.start_on_loop(run, run.loop)
            return
        pool = self._pool
        if pool is None:
            _engine.cancelled(run, "cancelled: its runner shut down before it started")
            return
        pool.submit(_engine.execute_sync, run)

    def release_run(self, run: _engine.Run) -> None:
        super().release_run(run)
        # A running thread cannot be stopped. But a run that timed out must not keep
        # its slot, nor be joined: its worker is abandoned (a no-op once the call has
        # returned). On Ctrl-C/SIGTERM the whole pool is left unjoined instead, and a
        # web app's shutdown still waits a moment for workers that call
        # check_cancelled(): those stay in the pool.
        if run.cancel_reason is CancelReason.TIMED_OUT and not run.is_async:
            pool = self._pool
            if pool is not None:
                pool.abandon(run)


# ---- the process-wide default runner ---------------------------------------------------

_default: ThreadPoolTaskRunner | None = None
_default_lock = threading.Lock()
# A started runner an application installed as the default (e.g. in a web server's
# lifespan, so request handlers share it); takes precedence over `_default`.
_installed: TaskRunner | None = None


def install_default_runner(runner: TaskRunner | None) -> TaskRunner | None:
    """Make a started `runner` the default for `.submit()` outside flows; None restores
    the built-in default. Returns the previously installed runner."""
    global _installed
    if runner is not None and not runner._started:
        raise RuntimeError(f"{runner.name} must be started before it is installed as default")
    previous, _installed = _installed, runner
    return previous


def installed_runner() -> TaskRunner | None:
    """The runner an application installed as the default, if any."""
    return _installed


def default_runner() -> TaskRunner:
    """The runner used by `.submit()` outside any flow or `with runner:` block.

    Started on first use; at interpreter exit it waits for its runs, then stops.
    """
    runner: TaskRunner | None = _installed or _default
    if runner is not None:
        return runner
    with _default_lock:
        if _default is None:
            _create_default()
        assert _default is not None
        return _default


def _create_default() -> None:
    global _default
    runner = ThreadPoolTaskRunner()
    runner._thread_name = "asyncflow-default"
    runner._track_failures = False  # process-wide: would grow for ever
    runner._start_resources()
    runner._started = True
    # Process-wide, so its SIGTERM claim (if any) lasts until the interpreter exits.
    runner._sigterm_claims.append(_signals.claim(lambda: get_settings().handle_sigterm))
    _default = runner


def _shutdown_default() -> None:
    global _default
    with _default_lock:
        runner, _default = _default, None
    try:
        if runner is not None:
            runner._started = False
            if _interrupted():
                runner._abandon("interrupted: the program is exiting")
            while runs := runner._pending_runs():
                for run in runs:
                    run.future._wait(None)
            runner._stop_resources()
            if runner._sigterm_claims.pop():
                _signals.release()
    finally:
        _portal.stop()


def _interrupted() -> bool:
    """Is the program exiting because of SIGTERM, or of a Ctrl-C nobody caught? Then
    the default runner's runs are abandoned (Cancelled) rather than waited for."""
    return _signals.terminating() or isinstance(getattr(sys, "last_value", None), KeyboardInterrupt)


def _after_fork_in_child() -> None:
    global _default, _default_lock, _installed
    _default = _installed = None
    _default_lock = threading.Lock()


# Runs before non-daemon threads are joined at exit, like concurrent.futures' pools.
threading._register_atexit(_shutdown_default)  # type: ignore[attr-defined]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
