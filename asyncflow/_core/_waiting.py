"""`wait` and `as_completed` over many futures, for sync and async callers alike.

Both register one done callback per pending future; the sync side blocks on a
threading primitive, the async side on an asyncio future of the caller's loop.
`drain` / `drain_async` wait until a scope has no unfinished run left.

    >>> import asyncio
    >>> from asyncflow import task
    >>> @task
    ... def square(x: int) -> int:
    ...     return x * x
    >>> futures = square.map([1, 2, 3])
    >>> done, not_done = wait(futures, timeout=5)
    >>> len(done), not_done
    (3, set())
    >>> sorted(f.result() for f in as_completed(futures))
    [1, 4, 9]
    >>> async def main() -> list[int]:
    ...     done, _ = await wait(futures, timeout=5)
    ...     return sorted([f.result() async for f in as_completed(done)])
    >>> asyncio.run(main())
    [1, 4, 9]
"""

from __future__ import annotations

import asyncio
import math
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import Any, Generic, TypeVar

if sys.version_info >= (3, 11):
    from typing import NamedTuple
else:  # a generic NamedTuple needs 3.11; typing_extensions has it for 3.10
    from typing_extensions import NamedTuple

from . import _validate
from ._context import enter_blocking, exit_blocking, sync_scope
from ._future import Suspend, TaskFuture, check_can_block, iter_futures
from ._signals import wait_interruptibly

__all__ = (
    "AsCompleted",
    "DoneAndNotDone",
    "WaitCall",
    "as_completed",
    "drain",
    "drain_async",
    "wait",
)

_get_running_loop = asyncio._get_running_loop
# The futures' result type: `wait()` and `as_completed()` hand back the futures they were
# given, so a checker keeps `TaskFuture[int]` through them (for futures of several types,
# their common type: `TaskFuture` is covariant).
T = TypeVar("T")


class DoneAndNotDone(NamedTuple, Generic[T]):
    """What `wait()` gives: the futures that are final (`done`) and the others
    (`not_done`), as `concurrent.futures.wait` does; unpack it as a pair."""

    done: set[TaskFuture[T]]
    not_done: set[TaskFuture[T]]


def _split(futures: list[TaskFuture[T]]) -> DoneAndNotDone[T]:
    done = {f for f in futures if f.done()}
    return DoneAndNotDone(done, {f for f in futures if f not in done})


class _Countdown:
    """Done callback that fires `on_zero` once `n` futures are final."""

    __slots__ = ("lock", "n", "on_zero")

    def __init__(self, n: int, on_zero: Any) -> None:
        self.n = n
        self.on_zero = on_zero
        self.lock = threading.Lock()

    def __call__(self, _fut: object) -> None:
        with self.lock:
            self.n -= 1
            last = self.n == 0
        if last:
            self.on_zero()


def _wait_sync(futures: list[TaskFuture[T]], timeout: float | None) -> DoneAndNotDone[T]:
    pending = [f for f in futures if not f.done()]
    if pending:
        for fut in pending:
            check_can_block(fut)
        event = threading.Event()
        countdown = _Countdown(len(pending), event.set)
        for fut in pending:
            fut.add_done_callback(countdown)
        pool = enter_blocking()
        try:
            wait_interruptibly(event.wait, timeout)
        finally:
            exit_blocking(pool)
            for fut in pending:
                fut._remove_callback(countdown)
    return _split(futures)


async def _wait_until(futures: list[TaskFuture[Any]], deadline: float) -> None:
    """Await until every future is final, or the loop's clock reaches `deadline` (inf:
    no deadline). One future at a time: a final one costs nothing."""
    loop = asyncio.get_running_loop()
    for fut in futures:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        await Suspend(fut, None if remaining == math.inf else remaining)


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else asyncio.get_running_loop().time() + timeout


# ---- draining a scope: the one way to wait until every run of a scope is final -------


def drain(unfinished: Callable[[], list[TaskFuture[Any]]]) -> None:
    """Block until `unfinished()` is empty: the futures it gives are final, and so are
    those added meanwhile (the runs of a scope may submit more)."""
    while futures := unfinished():
        _wait_sync(futures, None)


async def drain_async(
    unfinished: Callable[[], list[TaskFuture[Any]]], timeout: float | None = None
) -> int:
    """`drain` for async code, bounded by `timeout`: how many are unfinished (0: none)."""
    loop = asyncio.get_running_loop()
    deadline = _deadline(timeout)
    while futures := unfinished():
        if loop.time() >= deadline:
            return len(futures)
        await _wait_until(futures, deadline)
    return 0


class WaitCall(Generic[T]):
    """What `wait()` returns: unpack it in sync code, await it in async code.

    Called where no event loop runs (plain sync code), or in a sync flow, it has
    already blocked, so a bare `wait(futures)` waits, as in Prefect.
    """

    __slots__ = ("_futures", "_result", "_timeout")

    def __init__(self, futures: list[TaskFuture[T]], timeout: float | None) -> None:
        self._futures = futures
        self._timeout = timeout
        self._result: DoneAndNotDone[T] | None = None
        if _get_running_loop() is None or sync_scope.get():
            self._result = _wait_sync(futures, timeout)

    def _sync(self) -> DoneAndNotDone[T]:
        if self._result is None:
            self._result = _wait_sync(self._futures, self._timeout)
        return self._result

    @property
    def done(self) -> set[TaskFuture[T]]:
        return self._sync().done

    @property
    def not_done(self) -> set[TaskFuture[T]]:
        return self._sync().not_done

    def __iter__(self) -> Iterator[set[TaskFuture[T]]]:
        return iter(self._sync())

    def __await__(self) -> Generator[Any, None, DoneAndNotDone[T]]:
        if self._result is None:
            yield from _wait_until(self._futures, _deadline(self._timeout)).__await__()
            self._result = _split(self._futures)
        return self._result


def wait(futures: Iterable[TaskFuture[T]], timeout: float | None = None) -> WaitCall[T]:
    """Wait until every future is final or `timeout` passes; never raises on timeout.

    `done, not_done = wait(fs)` in sync code; `done, not_done = await wait(fs)` in async.

    Raises:
        ValueError: `timeout` is negative or NaN (`inf` means no timeout).
    """
    return WaitCall(list(iter_futures(futures)), _validate.timeout("timeout", timeout))


def _timeout_error(unfinished: int, total: int) -> TimeoutError:
    return TimeoutError(f"{unfinished} (of {total}) futures unfinished")


class AsCompleted(Generic[T]):
    """Iterate futures as they finish: `for f in ...` or `async for f in ...`."""

    __slots__ = ("_futures", "_timeout")

    def __init__(self, futures: list[TaskFuture[T]], timeout: float | None) -> None:
        self._futures = futures
        self._timeout = timeout

    def __iter__(self) -> Iterator[TaskFuture[T]]:
        futures = list(dict.fromkeys(self._futures))  # unique, in order
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        finished: queue.SimpleQueue[TaskFuture[T]] = queue.SimpleQueue()
        pending = [f for f in futures if not f.done()]
        for fut in pending:
            check_can_block(fut)
        try:
            for fut in pending:
                fut.add_done_callback(finished.put)
            waiting = set(pending)
            yield from (f for f in futures if f not in waiting)
            for left in range(len(pending), 0, -1):
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                pool = enter_blocking()
                try:
                    fut = finished.get(timeout=remaining)
                except queue.Empty:
                    raise _timeout_error(left, len(futures)) from None
                finally:
                    exit_blocking(pool)
                yield fut
        finally:
            for fut in pending:
                fut._remove_callback(finished.put)

    async def __aiter__(self) -> AsyncIterator[TaskFuture[T]]:
        futures = list(dict.fromkeys(self._futures))
        loop = asyncio.get_running_loop()
        deadline = None if self._timeout is None else loop.time() + self._timeout
        finished: asyncio.Queue[TaskFuture[T]] = asyncio.Queue()

        def put(fut: TaskFuture[T]) -> None:
            if _get_running_loop() is loop:
                finished.put_nowait(fut)
            else:
                loop.call_soon_threadsafe(finished.put_nowait, fut)

        pending = [f for f in futures if not f.done()]
        try:
            for fut in pending:
                fut.add_done_callback(put)
            waiting = set(pending)
            for fut in futures:
                if fut not in waiting:
                    yield fut
            for left in range(len(pending), 0, -1):
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    fut = await asyncio.wait_for(finished.get(), remaining)
                except asyncio.TimeoutError:  # TimeoutError's alias from 3.11 on
                    raise _timeout_error(left, len(futures)) from None
                yield fut
        finally:
            for fut in pending:
                fut._remove_callback(put)


def as_completed(futures: Iterable[TaskFuture[T]], timeout: float | None = None) -> AsCompleted[T]:
    """Yield futures as they finish (already-finished ones first).

    Works with `for` and `async for`; each future is yielded once.

    Raises:
        TimeoutError: `timeout` seconds passed with futures unfinished; the message
            gives both counts, e.g. "3 (of 10) futures unfinished".
        ValueError: `timeout` is negative or NaN.
    """
    return AsCompleted(list(iter_futures(futures)), _validate.timeout("timeout", timeout))
