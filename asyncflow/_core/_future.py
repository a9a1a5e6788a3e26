"""The dual sync/async future.

A `TaskFuture` is completed by the engine from any thread (a pool worker, the
engine loop, a caller's loop). Sync code blocks on it with `.result()`; async code
awaits it on any loop. State transitions happen under one module lock shared with
the engine, so "is it final?" and "who depends on it?" are decided atomically.

    >>> import asyncio
    >>> from asyncflow import task
    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> fut = double.submit(21)
    >>> fut.result()                       # sync world
    42
    >>> async def main() -> int:
    ...     return await fut               # async world, any loop
    >>> asyncio.run(main())
    42
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _validate
from ._context import current_run, enter_blocking, exit_blocking
from ._exceptions import CircularDependency, TaskCancelled, WouldDeadlock
from ._signals import wait_interruptibly
from ._states import PENDING, State, StateType

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = (
    "LOCK",
    "Deferred",
    "FutureList",
    "Suspend",
    "TaskFuture",
    "block_until_final",
    "check_can_block",
    "check_not_self",
    "error_of",
    "outcome",
    "run_callbacks",
    "running_loop",
    "state_of",
    "suspend_until_final",
    "was_observed",
)

R = TypeVar("R")
# A future only gives its result out: covariant, so a `TaskFuture[int]` is a
# `TaskFuture[float]` (and a `TaskFuture[list[int]]` a `TaskFuture[Iterable[int]]`).
# `FutureList`, a `list`, keeps the invariant `R`.
R_co = TypeVar("R_co", covariant=True)
logger = logging.getLogger("asyncflow")

# One lock for every future's state and callback list and for the engine's resolver.
# Critical sections are a few attribute writes, so contention stays negligible, and a
# single lock makes "final?" and "has dependents?" one atomic fact.
LOCK = threading.Lock()
if hasattr(os, "register_at_fork"):  # a forked child must not inherit it held
    # `_at_fork_reinit` is private (concurrent.futures uses it too); typeshed omits it.
    os.register_at_fork(after_in_child=LOCK._at_fork_reinit)  # type: ignore[attr-defined]

_get_running_loop = asyncio._get_running_loop  # C function; no exception when none runs
running_loop = _get_running_loop  # the running loop of this thread, or None (for outer layers)


class _Waiter:
    """A one-shot wake-up for one blocked thread (cheaper than a Condition per future)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def __call__(self, _fut: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None) -> bool:
        return wait_interruptibly(self._acquire, timeout)

    def _acquire(self, timeout: float | None) -> bool:
        return self._lock.acquire(timeout=-1 if timeout is None else timeout)


class _LoopWaker:
    """Wakes an asyncio future on its own loop, from whatever thread completes us."""

    __slots__ = ("loop", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
        self.loop = loop
        self.waiter = waiter

    def __call__(self, _fut: object) -> None:
        if _get_running_loop() is self.loop:
            _wake(self.waiter)
        else:
            try:
                self.loop.call_soon_threadsafe(_wake, self.waiter)
            except RuntimeError:  # the waiting loop is closed: nobody is left to wake
                pass


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Deferred:
    """A completed run's value that its runner left elsewhere (e.g. on a Dask
    cluster): `load()` fetches it the first time someone reads the future."""

    __slots__ = ("load",)

    def __init__(self, load: Callable[[], Any]) -> None:
        self.load = load

    def __repr__(self) -> str:
        return "<value not fetched yet>"


class TaskFuture(Generic[R_co]):
    """Handle on one task run: `.result()` in sync code, `await` in async code.

    Created by the engine, never by users. Thread-safe. Done callbacks behave as in
    `concurrent.futures`: called with the future, from the completing thread, or at
    once if already done; one that raises is logged and the others still run.
    """

    __slots__ = (
        "__weakref__",
        "_callbacks",
        "_exception",
        "_has_dependents",
        "_loop",
        "_observed",
        "_run",
        "_state",
        "_value",
        "name",
    )

    def __init__(self, name: str, run: Any = None) -> None:
        self.name = name
        self._state: State = PENDING
        self._value: Any = None
        self._exception: BaseException | None = None
        self._callbacks: list[Callable[[TaskFuture[R_co]], object]] | None = None
        self._run = run
        # The event loop that must run for this future to complete (its own async run,
        # or an upstream's); blocking on that loop's thread would deadlock.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observed = False
        self._has_dependents = False

    # ---- inspection (never blocks, never does I/O) ----------------------------------
    @property
    def state(self) -> State:
        """The run's current `State` (a snapshot; reading it never blocks or does I/O).

        Reading it counts as looking at the run: a failure whose state was read is
        not reported again when the flow ends.
        """
        self._observed = True
        return self._state

    def done(self) -> bool:
        """True once the run is final (completed, failed, cancelled, crashed or
        NotReady); never blocks."""
        return self._state._final

    def __repr__(self) -> str:
        return f"<TaskFuture {self.name!r} {self._state.name}>"

    # ---- sync world ------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is final or `timeout` passes (does not raise on timeout).

        Raises:
            ValueError: `timeout` is negative or NaN (`inf` means no timeout).
            WouldDeadlock: called on the thread of the event loop that must complete
                this run; `await future.wait_async()` there instead.
        """
        self._wait(_validate.timeout("timeout", timeout))

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R_co:
        """The run's value; re-raises its exception (or returns it if not raise_on_failure).

        Blocks until the run is final. A run that did not complete raises its own
        exception, unchanged (same type, traceback kept); a NotReady run raises
        `UpstreamFailed`; a cancelled one `TaskCancelled`; a timed-out one
        `TaskTimeout`. With `raise_on_failure=False` that exception is returned instead.

        Raises:
            TimeoutError: the run is not final within `timeout` seconds (the run goes on).
            ValueError: `timeout` is negative or NaN.
            WouldDeadlock: called on the thread of the event loop that must complete
                this run; `await future` there instead.
            CircularDependency: a task waits for its own result.
        """
        if not self._state._final:  # a final future skips the waiting machinery
            self._wait_or_raise(timeout)
        elif timeout is not None:
            _validate.timeout("timeout", timeout)  # bad input is an error either way
        return self._outcome(raise_on_failure)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The run's exception, or None if it completed. Blocks until the run is final.

        Raises:
            TaskCancelled: the run was cancelled (as `concurrent.futures` raises
                `CancelledError`).
            TimeoutError: the run is not final within `timeout` seconds.
            ValueError: `timeout` is negative or NaN.
        """
        self._wait_or_raise(timeout)
        self._observed = True
        if self._state.type is StateType.CANCELLED:
            raise self._exception or TaskCancelled(f"task {self.name!r} was cancelled")
        return self._exception

    def _wait_or_raise(self, timeout: float | None) -> None:
        if not self._wait(_validate.timeout("timeout", timeout)):
            raise TimeoutError(f"task {self.name!r} did not finish within {timeout} s")

    def cancel(self) -> bool:
        """Cancel the run if it has not started (or is an async run). True if cancelled.

        A sync run already executing on a thread cannot be interrupted: it finishes
        and `cancel()` returns False (a task can poll `check_cancelled()`). A process
        or Dask run that started is stopped by its runner where it can be.
        """
        run = self._run
        if run is None:
            return self._state.type is StateType.CANCELLED
        return bool(run.cancel())

    def add_done_callback(self, fn: Callable[[TaskFuture[R_co]], object]) -> None:
        """Call `fn(future)` once the run is final (at once if it already is).

        As in `concurrent.futures`: `fn` runs on the thread that completes the run;
        one that raises is logged on the "asyncflow" logger and the others still run.
        """
        with LOCK:
            if not self._state._final:
                if self._callbacks is None:
                    self._callbacks = [fn]
                else:
                    self._callbacks.append(fn)
                return
        _call_callback(fn, self)

    # ---- async world -----------------------------------------------------------------
    def __await__(self) -> Generator[Any, None, R_co]:
        if not self._state._final:
            check_not_self(self)
            yield from suspend_until_final(self, None)
        return self._outcome(True)

    async def wait_async(self, timeout: float | None = None) -> None:
        """Await until the run is final or `timeout` passes (does not raise on timeout).

        Raises:
            ValueError: `timeout` is negative or NaN.
        """
        seconds = _validate.timeout("timeout", timeout)
        if not self._state._final:
            check_not_self(self)
            await Suspend(self, seconds)

    # ---- engine side -----------------------------------------------------------------
    def _outcome(self, raise_on_failure: bool = True) -> R_co:
        self._observed = True
        exc = self._exception
        if exc is None:
            value = self._value
            if type(value) is Deferred:  # left where its runner ran it: load it now
                value = self._get_value()
            return value  # type: ignore[no-any-return]  # R_co is erased at runtime
        if raise_on_failure:
            raise exc
        return exc  # type: ignore[return-value]  # documented: the exception object

    def _get_value(self) -> Any:
        """The value of a completed run, loaded now if its runner deferred it."""
        value = self._value
        if type(value) is Deferred:
            value = self._value = value.load()  # racing readers both load: same value
        return value

    def _wait(self, timeout: float | None) -> bool:
        if self._state._final:
            return True
        check_can_block(self)
        waiter = _Waiter()
        with LOCK:
            if self.done():  # re-checked under the lock: it may have finished meanwhile
                return True
            if self._callbacks is None:
                self._callbacks = [waiter]
            else:
                # Waking blocked threads first keeps `.result()` latency low.
                self._callbacks.insert(0, waiter)
        pool = enter_blocking()
        try:
            if waiter.wait(timeout):
                return True
        finally:
            exit_blocking(pool)
        self._remove_callback(waiter)
        return self._state._final

    def _remove_callback(self, fn: Callable[..., object]) -> None:
        with LOCK:
            cbs = self._callbacks
            if cbs is not None:
                try:
                    cbs.remove(fn)
                except ValueError:
                    pass


# ---- what the outer layers read and do to a future, without marking it looked at --------
# (`.state`, `.result()` and `.exception()` mark a future as observed: the runner
# reports failures nobody observed, so asyncflow's own bookkeeping must not.)


# A C-level attribute getter, not a function: runners read it once per run (the
# per-run hot path costs no Python frame for it).
state_of: Callable[[TaskFuture[Any]], State] = operator.attrgetter("_state")


def has_dependents(fut: TaskFuture[Any]) -> bool:
    """Did a run register to wait for `fut` (its value is likely read elsewhere)?"""
    return fut._has_dependents


def is_deferred(fut: TaskFuture[Any]) -> bool:
    """Is `fut`'s value still where its runner left it (a `Deferred`, not loaded)?"""
    return type(fut._value) is Deferred


def load_deferred(fut: TaskFuture[Any], value: Any = Deferred) -> None:
    """Load a deferred value now: `value` if the runner fetched it, else by the
    `Deferred`'s own loader (which may raise)."""
    if value is Deferred:
        fut._get_value()
    else:
        fut._value = value


def error_of(fut: TaskFuture[Any]) -> BaseException | None:
    """The exception a final future ended with (None if it completed)."""
    return fut._exception


def was_observed(fut: TaskFuture[Any]) -> bool:
    return fut._observed


# A final future's value (or its exception: raised, or returned if not
# `raise_on_failure`); marks it observed. The method itself, not a wrapper: a direct
# call of a task reads its outcome through it.
outcome = TaskFuture._outcome


def block_until_final(fut: TaskFuture[Any], timeout: float | None = None) -> bool:
    """Block this thread until `fut` is final (True) or `timeout` passes (False); a
    `WouldDeadlock` where that could never end (see `check_can_block`)."""
    return fut._wait(timeout)


def check_not_self(fut: TaskFuture[Any]) -> None:
    """`CircularDependency` if the task run executing here is `fut`'s own."""
    run = current_run.get()
    if run is not None and run.future is fut:
        raise CircularDependency(
            f"task {fut.name!r} is waiting for its own result, which can never arrive"
        )


def check_can_block(fut: TaskFuture[Any]) -> None:
    """Raise instead of blocking on `fut` where blocking could never end."""
    check_not_self(fut)
    loop = fut._loop
    if loop is not None and _get_running_loop() is loop:
        raise WouldDeadlock(
            f"blocking on task {fut.name!r} from the event loop that must run it would "
            "deadlock: use `await future` (or `await future.wait_async()`) in async code"
        )


def suspend_until_final(fut: TaskFuture[Any], timeout: float | None) -> Generator[Any, None, None]:
    """Suspend the awaiting coroutine until `fut` is final (or `timeout` passes).

    The one place where async code waits on a future, whatever loop or thread
    completes it; it never raises the future's exception.
    """
    if fut._state._final:
        return
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    waker = _LoopWaker(loop, waiter)
    fut.add_done_callback(waker)
    timer = None if timeout is None else loop.call_later(timeout, _wake, waiter)
    try:
        yield from waiter.__await__()
    finally:
        if timer is not None:
            timer.cancel()
        if not fut._state._final:
            fut._remove_callback(waker)


class Suspend:
    """`await Suspend(fut)`: wait for `fut` to be final without raising its error."""

    __slots__ = ("fut", "timeout")

    def __init__(self, fut: TaskFuture[Any], timeout: float | None = None) -> None:
        self.fut = fut
        self.timeout = timeout

    def __await__(self) -> Generator[Any, None, None]:
        return suspend_until_final(self.fut, self.timeout)


def _call_callback(fn: Callable[[Any], object], fut: TaskFuture[Any]) -> None:
    try:
        fn(fut)
    except Exception:
        logger.exception("done callback %r of task %r raised", fn, fut.name)


def run_callbacks(fut: TaskFuture[Any], cbs: list[Callable[[Any], object]] | None) -> None:
    if cbs:
        for cb in cbs:
            _call_callback(cb, fut)


class FutureList(list[TaskFuture[R]]):
    """A `list` of futures, e.g. from `.map()`, with bulk `result`, `wait` and `await`.

    Examples:
        >>> from asyncflow import task
        >>> @task
        ... def square(x: int) -> int:
        ...     return x * x
        >>> squares = square.map([1, 2, 3])
        >>> squares.result()
        [1, 4, 9]
    """

    def wait(self, timeout: float | None = None) -> None:
        """Block until every future is final or `timeout` passes (does not raise on timeout).

        Raises:
            ValueError: `timeout` is negative or NaN.
            WouldDeadlock: called on the thread of the event loop that must complete
                one of the runs; `await futures` there instead.
        """
        deadline = _deadline(_validate.timeout("timeout", timeout))
        for fut in self:
            if not fut._wait(_remaining(deadline)):
                return

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[R]:
        """Every future's result, in order; `timeout` bounds the whole call.

        Raises:
            TimeoutError: not every run is final within `timeout` seconds; the message
                says how many (of how many) are unfinished.
            ValueError: `timeout` is negative or NaN.
            Exception: the first failed run's own exception (in list order), unless
                `raise_on_failure=False`, which puts exceptions in the list instead.
        """
        deadline = _deadline(_validate.timeout("timeout", timeout))
        out: list[R] = []
        for fut in self:
            if not fut._state._final and not fut._wait(_remaining(deadline)):
                unfinished = sum(1 for f in self if not f.done())
                raise TimeoutError(
                    f"{unfinished} (of {len(self)}) futures unfinished after {timeout} s"
                )
            out.append(fut._outcome(raise_on_failure))
        return out

    def __await__(self) -> Generator[Any, None, list[R]]:
        out: list[R] = []
        for fut in self:
            out.append((yield from fut.__await__()))
        return out

    def __repr__(self) -> str:
        return f"FutureList({list.__repr__(self)})"

    if TYPE_CHECKING:

        def copy(self) -> Self: ...


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def iter_futures(futures: Iterable[TaskFuture[Any]]) -> Iterator[TaskFuture[Any]]:
    for fut in futures:
        if not isinstance(fut, TaskFuture):
            raise TypeError(f"expected TaskFuture objects, got {type(fut).__name__}: {fut!r}")
        yield fut
