"""`ProcessPoolTaskRunner`: tasks (sync and async) in worker processes.

    >>> from asyncflow import flow, task
    >>> @task
    ... def heavy(x: int) -> int:
    ...     return sum(range(x))
    >>> @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    ... def crunch(xs: list[int]) -> list[int]:
    ...     return heavy.map(xs)
    >>> crunch([10, 100])
    [45, 4950]

- Functions and values cross by pickle, or cloudpickle when needed, so tasks defined
  in `__main__`, in a test function or as closures work. Futures among the arguments
  are resolved here, in the parent, before sending.
- A worker that dies (segfault, `os._exit`, SIGKILL, out of memory) fails only the run
  it was executing: CRASHED, with `exceptions.TaskCrashed` naming the task and the exit
  code or signal. The worker is replaced; everything else runs on.
  A crash is retried like a failure (on another worker) when the task has retries
  and its `retry_condition_fn` does not refuse `TaskCrashed`.
- The runs of a `.map` go to workers in batches, sized from the queue length
  (`chunksize=` fixes the size); each keeps its own future and state. A `.submit()`
  goes alone to an idle worker. A run turns Running when its worker starts it.
- A run cancelled before it started never runs (its worker skips it); a timed-out or
  cancelled running task has its worker killed (and replaced).
- Workers start with "forkserver" where available (safe beside the engine's threads,
  and quick once the server runs), else "spawn"; `mp_context=` overrides ("fork"
  beside running threads warns: a thread holding a lock at fork time can hang the
  worker; asyncflow resets its own locks in forked children). As with
  `concurrent.futures`, a script must guard its entry point with
  `if __name__ == "__main__":`, since workers import the main module.
- `initializer(*initargs)` runs once in each worker process, when it starts (and in
  every replacement worker), before its first call, as in `concurrent.futures`. Both
  are pickled when the runner is made (a clear error there if they cannot be). A
  worker whose initializer raises runs nothing: its runs go to the next worker, and
  after `MAX_FAILED_STARTS` (3) such workers in a row the waiting runs end CRASHED
  with `TaskCrashed` naming the initializer and its exception (the `__cause__`).
  No pool-wide "broken" state as in `concurrent.futures`: a later submission starts
  workers again.
- Tasks that submit tasks inside a worker use that worker's own default thread runner
  (a runner cannot span processes).
"""

from __future__ import annotations

import os
import reprlib
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._core import Run, StateType, cancelled, state_of
from ..settings import get_settings
from ._base import TaskRunner, check_max_workers

if TYPE_CHECKING:  # multiprocessing is imported when a runner is configured or started
    from multiprocessing.context import BaseContext

    from ._process_pool import Initializer, ProcessPool

__all__ = ("ProcessPoolTaskRunner",)


def _default_max_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the CPUs this process may run on
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check_context(mp_context: str | BaseContext) -> BaseContext:
    import multiprocessing
    from multiprocessing.context import BaseContext

    if isinstance(mp_context, str):
        return multiprocessing.get_context(mp_context)  # ValueError if unknown
    if not isinstance(mp_context, BaseContext):
        raise TypeError(f"mp_context must be a start method name or context, got {mp_context!r}")
    return mp_context


def _check_initializer(
    initializer: Callable[..., object] | None, initargs: tuple[Any, ...]
) -> Initializer | None:
    """`initializer` and `initargs` checked and pickled once (None: no initializer):
    a clear error now, naming the runner and the value, rather than in every worker."""
    if initializer is not None and not callable(initializer):
        raise TypeError(
            f"ProcessPoolTaskRunner: initializer must be a callable or None, got "
            f"{type(initializer).__name__}: {initializer!r}"
        )
    if not isinstance(initargs, tuple):
        raise TypeError(
            f"ProcessPoolTaskRunner: initargs must be a tuple, got "
            f"{type(initargs).__name__}: {initargs!r}"
        )
    if initializer is None:
        if initargs:
            raise ValueError(
                f"ProcessPoolTaskRunner: initargs={initargs!r} given without an initializer"
            )
        return None
    from .._core import SerializationError
    from ._process_pool import Initializer
    from ._process_worker import dumps

    name = _callable_name(initializer)
    try:
        data = dumps((initializer, initargs))
    except Exception as exc:
        what = f"initargs of initializer {name!r}" if _pickles(initializer) else "initializer"
        raise SerializationError(
            f"ProcessPoolTaskRunner: the {what} cannot be pickled to send to its worker "
            f"processes ({initializer!r}, initargs={reprlib.repr(initargs)}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return Initializer(data, name, "ProcessPoolTaskRunner")


def _pickles(value: object) -> bool:
    from ._process_worker import dumps

    try:
        dumps(value)
    except Exception:
        return False
    return True


def _callable_name(fn: object) -> str:
    """`setup` for a function, the repr of a partial or a callable object."""
    name = getattr(fn, "__qualname__", None)
    return name if isinstance(name, str) else repr(fn)


class ProcessPoolTaskRunner(TaskRunner):
    """Runs tasks in up to `max_workers` worker processes.

    `max_workers` defaults to `ASYNCFLOW_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS`, else
    the number of CPUs this process may use. `mp_context` is a start method name
    ("forkserver", "spawn", "fork") or a `multiprocessing` context. `chunksize` fixes
    how many queued runs a worker receives at once (default: chosen from the queue).
    `initializer(*initargs)` runs once in each worker process before its first call
    (both are pickled, by cloudpickle when plain pickle cannot: checked here).
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        mp_context: str | BaseContext | None = None,
        chunksize: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        super().__init__()
        max_workers = check_max_workers(
            max_workers, get_settings().process_pool_max_workers, _default_max_workers()
        )
        if chunksize is not None and (
            isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1
        ):
            raise ValueError(f"chunksize must be a positive int or None, got {chunksize!r}")
        if mp_context is not None:
            mp_context = _check_context(mp_context)
        self._max_workers = max_workers
        self._mp_context = mp_context
        self._chunksize = chunksize
        self._init = _check_initializer(initializer, initargs)
        self._initializer = initializer
        self._initargs = initargs
        self._pool: ProcessPool | None = None

    @property
    def max_workers(self) -> int:
        """The number of worker processes."""
        return self._max_workers

    def duplicate(self) -> ProcessPoolTaskRunner:
        return type(self)(
            self._max_workers,
            mp_context=self._mp_context,
            chunksize=self._chunksize,
            initializer=self._initializer,
            initargs=self._initargs,
        )

    def __repr__(self) -> str:
        init = ""
        if self._init is not None:
            init = f", initializer={self._init.name}"
            if self._initargs:
                init += f", initargs={reprlib.repr(self._initargs)}"
        return f"ProcessPoolTaskRunner(max_workers={self._max_workers}{init})"

    def _start_resources(self) -> None:
        from ._process_pool import ProcessPool, default_context

        context = self._mp_context or default_context()
        if context.get_start_method() == "fork":
            _warn_if_threads()
        self._pool = ProcessPool(
            self._max_workers, context, self._chunksize, "asyncflow-process", self._init
        )

    def _stop_resources(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(kill=self._abandoned)

    def start_run(self, run: Run) -> None:
        # In a worker, an async run is as opaque to the engine as a thread run: its
        # deadline is armed by `begin` and enforced through `stop_running`.
        run.is_async = False
        pool = self._pool
        if pool is None:
            cancelled(run, "cancelled: its runner shut down before it started")
            return
        pool.submit(run)

    def _begin_batch(self) -> bool:
        return self._pool is not None and self._pool.begin_batch()

    def _end_batch(self) -> None:
        if self._pool is not None:
            self._pool.end_batch()

    def can_stop(self, run: Run) -> bool:
        pool = self._pool
        return pool is not None and pool.holds(run)

    def stop_running(self, run: Run) -> None:
        pool = self._pool
        if pool is not None:
            pool.stop_running(run)

    def release_run(self, run: Run) -> None:
        super().release_run(run)
        # Cancelled while Pending: it may sit in a worker's batch, which must skip it.
        if state_of(run.future).type is StateType.CANCELLED and self._pool is not None:
            self._pool.forget(run)


def _warn_if_threads() -> None:
    others = threading.active_count() - 1
    if others > 0:
        warnings.warn(
            f'ProcessPoolTaskRunner(mp_context="fork") starts while {others} other '
            f"thread{'s' if others > 1 else ''} run in this process: a forked worker "
            "copies whatever locks they hold, and one held at that moment hangs the "
            'worker for good. Use mp_context="forkserver" (the default) or "spawn".',
            RuntimeWarning,
            stacklevel=4,  # the `with` / `async with` (or flow call) that started it
        )
