"""`task.map_iter(...)`: map over inputs too large to hold as futures.

The input is consumed lazily and at most `max_concurrency` runs are in flight, so
memory stays bounded by the window, not by the input. Results come back in input
order (`ordered=True`, the default) or as they finish.

    >>> import asyncio
    >>> from asyncflow import task
    >>> @task
    ... def parse(line: str) -> int:
    ...     return int(line)
    >>> lines = (str(i) for i in range(1000))       # lazy: read as the window moves
    >>> sum(parse.map_iter(lines, max_concurrency=32))
    499500
    >>> @task
    ... async def fetch(url: str) -> int:
    ...     return len(url)
    >>> async def sizes(urls: list[str]) -> list[int]:
    ...     return [n async for n in fetch.map_iter(urls, max_concurrency=10, ordered=False)]
    >>> sorted(asyncio.run(sizes(["a", "bb", "ccc"])))
    [1, 2, 3]

A failed run raises its exception from the iteration (as `Executor.map` does); runs
still queued are then cancelled. Leaving the loop early cancels them too.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from ._core import (
    Suspend,
    TaskFuture,
    block_until_final,
    check_can_block,
    enter_blocking,
    exit_blocking,
    running_loop,
)
from ._runners._base import TaskSpec
from ._runners._current import current_runner

__all__ = ("MapIter",)

T = TypeVar("T")


class _Window:
    """The loop-free core shared by `for` and `async for`: which runs are in flight,
    which result may be yielded next, and when to submit more input."""

    def __init__(
        self,
        task: TaskSpec,
        iterables: tuple[Iterable[Any], ...],
        static: dict[str, Any],
        bind: Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]],
        limit: int,
        ordered: bool,
        wake: Callable[[], None],
    ) -> None:
        self._runner = current_runner()
        self._task = task
        # Lazy; unequal lengths raise at the end.
        self._inputs: Iterator[tuple[Any, ...]] | None = zip(*iterables, strict=True)
        self._static = static
        self._bind = bind
        self._limit = limit
        self.ordered = ordered
        self._wake = wake
        self._in_flight: collections.deque[TaskFuture[Any]] = collections.deque()
        self._finished: collections.deque[TaskFuture[Any]] = collections.deque()

    def _on_done(self, fut: TaskFuture[Any]) -> None:
        self._finished.append(fut)  # deque.append is atomic: callbacks run anywhere
        self._wake()

    def fill(self) -> None:
        while self._inputs is not None and len(self._in_flight) < self._limit:
            args = next(self._inputs, None)
            if args is None:
                self._inputs = None
                return
            fut = self._runner.submit(self._task, self._bind(args, self._static))
            self._in_flight.append(fut)
            if not self.ordered:  # ordered: the consumer waits on the head future itself
                fut.add_done_callback(self._on_done)

    def pop_ready(self) -> TaskFuture[Any] | None:
        """The next future to yield, if it is final; None if the caller must wait."""
        if self.ordered:
            if self._in_flight and self._in_flight[0].done():
                return self._in_flight.popleft()
            return None
        if self._finished:
            fut = self._finished.popleft()
            self._in_flight.remove(fut)
            return fut
        return None

    @property
    def head(self) -> TaskFuture[Any]:
        """The future an ordered consumer waits for (the window is not empty)."""
        return self._in_flight[0]

    def check_can_block(self) -> None:
        for fut in self._in_flight:
            check_can_block(fut)

    @property
    def exhausted(self) -> bool:
        return self._inputs is None and not self._in_flight

    def close(self) -> None:
        """Stop consuming input and cancel runs not started (running ones finish)."""
        self._inputs = None
        for fut in self._in_flight:
            fut.cancel()


class MapIter(Generic[T]):
    """What `task.map_iter(...)` returns: iterate it with `for` or `async for`."""

    def __init__(
        self,
        task: TaskSpec,
        iterables: tuple[Iterable[Any], ...],
        static: dict[str, Any],
        bind: Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]],
        max_concurrency: int,
        ordered: bool,
    ) -> None:
        if not iterables:
            raise TypeError(f"task {task.name!r}: map_iter() needs at least one iterable")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(f"max_concurrency must be an int, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        for it in iterables:
            if not isinstance(it, Iterable) or isinstance(it, (str, bytes)):
                raise TypeError(
                    f"task {task.name!r}: map_iter() arguments must be iterables, got {it!r}"
                )
        # Each iteration (`for` or `async for`) opens a window of its own.
        self._window = functools.partial(
            _Window, task, iterables, static, bind, max_concurrency, ordered
        )

    def __iter__(self) -> Iterator[T]:
        event = threading.Event()
        window = self._window(event.set)
        try:
            window.fill()
            while not window.exhausted:
                event.clear()
                fut = window.pop_ready()
                if fut is None:
                    if window.ordered:
                        block_until_final(window.head)  # lends this worker's slot while it blocks
                        continue
                    window.check_can_block()
                    pool = enter_blocking()
                    try:
                        event.wait()  # woken by the next completion
                    finally:
                        exit_blocking(pool)
                    continue
                window.fill()
                yield fut.result()
        finally:
            window.close()

    async def __aiter__(self) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            if running_loop() is loop:
                event.set()
            else:
                loop.call_soon_threadsafe(event.set)

        window = self._window(wake)
        try:
            window.fill()
            while not window.exhausted:
                event.clear()
                fut = window.pop_ready()
                if fut is None:
                    if window.ordered:
                        await Suspend(window.head)
                    else:
                        await event.wait()
                    continue
                window.fill()
                yield await fut
        finally:
            window.close()
