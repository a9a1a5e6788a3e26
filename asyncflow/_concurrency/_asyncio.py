"""The coroutine driver of named limits: `concurrency()` and `rate_limit()` for async code.

A waiter awaits its own loop future, which the registry resolves (thread-safely: the
grant may come from a thread releasing slots) when the ticket is granted; it also
wakes when slot decay may let it in or its deadline passes, and each time takes one
`_registry.step`. Cancelling a waiting coroutine takes its ticket out of the queue;
if it was granted in the meantime, the slots go straight back: a cancelled waiter
keeps nothing and releases nothing it did not take.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from . import _registry
from ._registry import GRANTED, Request
from ._slots import CONCURRENCY, RATE_LIMIT, Ticket

__all__ = ("concurrency", "rate_limit")


def _make_waker(loop: asyncio.AbstractEventLoop, woken: asyncio.Future[None]) -> Callable[[], None]:
    """What the registry calls, from any thread, once the ticket is granted."""

    def set_woken() -> None:
        if not woken.done():  # cancelled meanwhile: nothing to resolve
            woken.set_result(None)

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(set_woken)
        except RuntimeError:  # the loop is closed: nobody is left to wake
            pass

    return wake


async def _acquire(request: Request) -> Ticket | None:
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    ticket, deadline = _registry.enter(request, _make_waker(loop, woken))
    if ticket is None:
        return None
    try:
        while True:
            pause = _registry.step(ticket, deadline, request.timeout)
            if pause == GRANTED:
                return ticket
            await asyncio.wait([woken], timeout=pause)
    except BaseException:
        _registry.abandon(ticket)
        raise


@asynccontextmanager
async def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
) -> AsyncIterator[None]:
    """Hold `occupy` slots of each limit in `names` for the `async with` block.

    The async twin of `asyncflow.concurrency.sync.concurrency`, sharing its limits
    (a thread and a coroutine waiting on one name queue in one line): same arguments,
    same errors, `AcquireConcurrencySlotTimeoutError` (a `TimeoutError`) on timeout.
    """
    ticket = await _acquire(
        Request(names, occupy, timeout_seconds, strict, CONCURRENCY, max_retries, lease_duration)
    )
    try:
        yield
    finally:
        if ticket is not None:
            _registry.release(ticket)


async def rate_limit(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Wait until `occupy` slots of each rate limit in `names` are free, and take them
    (the async twin of `asyncflow.concurrency.sync.rate_limit`)."""
    await _acquire(Request(names, occupy, timeout_seconds, strict, RATE_LIMIT))
