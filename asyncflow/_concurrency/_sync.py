"""The thread driver of named limits: `concurrency()` and `rate_limit()` for sync code.

A waiter sleeps on its own `threading.Event`, which the registry sets when the
ticket is granted, or until slot decay may let it in, or until its deadline; each
time it wakes it takes one `_registry.step`. Whatever interrupts the wait
(`KeyboardInterrupt`, an async exception) abandons the ticket, so a thread never
leaves slots behind; the `with` block gives its slots back however it exits.

On a thread whose event loop is running, waiting would stop that loop, and with it
any coroutine holding the slots: there, slots that are free are taken at once and a
wait raises `WouldDeadlock` instead (use `asyncflow.concurrency.asyncio`), except in
a sync scope (a sync flow in a notebook), where blocking is safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .._core import WouldDeadlock, running_loop, sync_scope
from . import _registry
from ._registry import GRANTED, Request
from ._slots import CONCURRENCY, RATE_LIMIT, Ticket

__all__ = ("concurrency", "rate_limit")


def _acquire(request: Request) -> Ticket | None:
    woken = threading.Event()
    ticket, deadline = _registry.enter(request, woken.set)
    if ticket is None:
        return None
    try:
        while True:
            pause = _registry.step(ticket, deadline, request.timeout)
            if pause == GRANTED:
                return ticket
            _check_can_wait(request)
            woken.wait(pause)
    except BaseException:
        _registry.abandon(ticket)
        raise


def _check_can_wait(request: Request) -> None:
    if running_loop() is not None and not sync_scope.get():
        raise WouldDeadlock(
            f"concurrency limits {list(request.names)} are full, and waiting for them here "
            "would block this thread's running event loop (which may be what holds "
            "them): in async code use `async with asyncflow.concurrency.asyncio."
            "concurrency(...)` / `await ...asyncio.rate_limit(...)`"
        )


@contextmanager
def concurrency(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    max_retries: int | None = None,
    lease_duration: float = 300,
    strict: bool = False,
) -> Iterator[None]:
    """Hold `occupy` slots of each limit in `names` for the `with` block.

    Waits (first come, first served) until every limit has room, then takes the slots
    of all names at once. `timeout_seconds`: give up after that long with
    `AcquireConcurrencySlotTimeoutError` (a `TimeoutError`); None waits for ever. A
    name without a limit is not limited (warned about once), or is an error with
    `strict=True`. `max_retries` and `lease_duration` are Prefect's server options:
    accepted, without effect in one process (slots are released when the block exits).
    """
    ticket = _acquire(
        Request(names, occupy, timeout_seconds, strict, CONCURRENCY, max_retries, lease_duration)
    )
    try:
        yield
    finally:
        if ticket is not None:
            _registry.release(ticket)


def rate_limit(
    names: str | list[str],
    occupy: int = 1,
    timeout_seconds: float | None = None,
    strict: bool = False,
) -> None:
    """Wait until `occupy` slots of each rate limit in `names` are free, and take them.

    The slots are not given back: the limits' `slot_decay_per_second` frees them over
    time, which is what spaces the callers out. Every limit named must have a decay
    (else `ConcurrencySlotAcquisitionError`). Timeouts and `strict` as `concurrency`.
    """
    _acquire(Request(names, occupy, timeout_seconds, strict, RATE_LIMIT))
