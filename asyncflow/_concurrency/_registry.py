"""The process's named limits: one `Slots` core under one lock, shared by the sync
and the async driver, so a thread and a coroutine waiting on the same name queue in
the same line.

Everything the two drivers have in common lives here, once: checking the arguments,
resolving names (a name without a limit: skipped with one warning per name, or
`ConcurrencySlotAcquisitionError` when `strict=True`), queueing a ticket, the step a
waiter takes each time it wakes (`step`), and giving slots back when a holder
leaves or a waiter gives up (`abandon`). A driver only supplies how to sleep and how
to be woken (`Ticket.waker`, called after the lock is released).

Limits come from `set_limit` and from `ASYNCFLOW_CONCURRENCY_LIMITS` (read once, on
first use; a limit set in code wins over the environment). The clock is
`time.monotonic`, replaceable for tests (`use_clock`). A forked child keeps the
limits but starts with no slots held and nobody waiting (the parent's holders are
not its own).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

from .._core import check_count, check_factor, check_timeout
from ..settings import concurrency_limits
from ._errors import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
from ._slots import RATE_LIMIT, Slots, Ticket

__all__ = (
    "GRANTED",
    "Request",
    "abandon",
    "active",
    "enter",
    "get_limit",
    "limited",
    "poll",
    "queue_run",
    "release",
    "set_limit",
    "step",
    "use_clock",
    "waiting",
)

logger = logging.getLogger("asyncflow")


GRANTED = -1.0  # what `step` returns once the ticket holds its slots

_lock = threading.Lock()
_slots = Slots()
_clock: Callable[[], float] = time.monotonic
_loaded = False  # ASYNCFLOW_CONCURRENCY_LIMITS read yet?
_warned: set[str] = set()  # names without a limit, warned about once


def _after_fork_in_child() -> None:
    # The lock may have been held by another thread of the parent; the parent's
    # holders and waiters are not the child's. The limits themselves carry over.
    global _lock, _slots
    _lock = threading.Lock()
    configured = _slots.limits()
    _slots = Slots()
    now = _clock()
    for name, (limit, decay) in configured.items():
        _slots.set_limit(name, limit, decay, now)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def use_clock(clock: Callable[[], float] | None) -> None:
    """Tests: measure time (slot decay, timeouts) with `clock`; None restores
    `time.monotonic`. Also forgets every limit, holder and waiter."""
    global _clock, _slots, _loaded
    with _lock:
        _clock = time.monotonic if clock is None else clock
        _slots = Slots()
        _loaded = False
        _warned.clear()


def _wake(tickets: list[Ticket]) -> None:
    for ticket in tickets:  # outside the lock: a waker may take other locks
        ticket.waker()


def _load_environment_locked() -> None:
    global _loaded
    if _loaded:
        return
    configured = concurrency_limits()  # a bad variable raises here, on every call
    now = _clock()
    for name, (limit, decay) in configured.items():
        _slots.set_limit(name, limit, decay, now)
    _loaded = True


# ---- configuration ----------------------------------------------------------------------


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"a concurrency limit's name must be a non-empty string, got {name!r}")
    return name


def set_limit(name: str, limit: int, *, slot_decay_per_second: float | None = None) -> None:
    """Create or change the limit `name` to `limit` slots (>= 1)."""
    _check_name(name)
    check_count("limit", limit, minimum=1)
    decay = check_factor("slot_decay_per_second", slot_decay_per_second)
    with _lock:
        _load_environment_locked()
        granted = _slots.set_limit(name, limit, decay, _clock())
    _wake(granted)


def get_limit(name: str) -> tuple[int, float | None] | None:
    """`(limit, slot_decay_per_second)` of `name`, or None if it has no limit."""
    _check_name(name)
    with _lock:
        _load_environment_locked()
        return _slots.limit_of(name)


# ---- acquiring ----------------------------------------------------------------------------


class Request:
    """Checked arguments of one `concurrency()` / `rate_limit()` call."""

    __slots__ = ("mode", "names", "occupy", "strict", "timeout")

    def __init__(
        self,
        names: str | Iterable[str],
        occupy: int,
        timeout_seconds: float | None,
        strict: bool,
        mode: str,
        max_retries: int | None = None,
        lease_duration: float = 300,
    ) -> None:
        raw = [names] if isinstance(names, str) else names
        if not isinstance(raw, Iterable):
            raise TypeError(f"names must be a string or a list of strings, got {names!r}")
        self.names = tuple(dict.fromkeys(_check_name(n) for n in raw))  # in order, once each
        self.occupy = check_count("occupy", occupy, minimum=1)
        self.timeout = check_timeout("timeout_seconds", timeout_seconds)
        if not isinstance(strict, bool):
            raise TypeError(f"strict must be True or False, got {strict!r}")
        self.strict = strict
        self.mode = mode
        # Prefect's server options, meaningless in one process: checked, then unused.
        if max_retries is not None:
            check_count("max_retries", max_retries)
        check_timeout("lease_duration", lease_duration, allow_zero=False)


def _limited_names_locked(request: Request) -> tuple[str, ...]:
    """The names of `request` that have a limit; the others are skipped (or refused)."""
    known: list[str] = []
    for name in request.names:
        found = _slots.limit_of(name)
        if found is None:
            if request.strict:
                raise ConcurrencySlotAcquisitionError(
                    f"concurrency limit {name!r} does not exist (strict=True): create it "
                    f"first with asyncflow.concurrency.set_limit({name!r}, N) or "
                    f"ASYNCFLOW_CONCURRENCY_LIMITS"
                )
            if name not in _warned:
                _warned.add(name)
                logger.warning(
                    "concurrency limit %r does not exist: not limiting it (create it with "
                    "asyncflow.concurrency.set_limit or ASYNCFLOW_CONCURRENCY_LIMITS; "
                    "strict=True makes this an error)",
                    name,
                )
            continue
        limit, decay = found
        if request.mode == RATE_LIMIT and decay is None:
            raise ConcurrencySlotAcquisitionError(
                f"rate_limit({name!r}) needs a limit with slot_decay_per_second; {name!r} "
                f"has none (set_limit({name!r}, {limit}, slot_decay_per_second=...))"
            )
        if request.occupy > limit:
            raise ValueError(
                f"occupy={request.occupy} is more than the limit of {name!r} ({limit} slots): "
                "it could never be acquired"
            )
        known.append(name)
    return tuple(known)


def enter(request: Request, waker: Callable[[], None]) -> tuple[Ticket | None, float | None]:
    """Queue `request`: its ticket (None when no name has a limit: nothing to hold)
    and its deadline on the registry's clock (None: no timeout)."""
    with _lock:
        _load_environment_locked()
        names = _limited_names_locked(request)
        if not names:
            return None, None
        ticket = Ticket(names, request.occupy, request.mode, waker)
        now = _clock()
        granted = _slots.request(ticket, now)
    _wake([t for t in granted if t is not ticket])
    deadline = None if request.timeout is None else now + request.timeout
    return ticket, deadline


def limited(names: Iterable[str]) -> tuple[str, ...]:
    """The names among `names` that have a limit, silently (no warning for the others:
    a run's tags are labels first, and most have no limit)."""
    with _lock:
        _load_environment_locked()
        return tuple(name for name in names if _slots.limit_of(name) is not None)


def queue_run(ticket: Ticket) -> bool:
    """Queue a run's `ticket` (one slot of each of its names) in line with every other
    holder. True if it holds the slots now, or if none of its names has a limit any
    more (it holds nothing); else its waker is called once, from whichever thread
    frees them. The caller keeps the ticket before queueing it, so a waker that runs
    at once, from another thread, finds it."""
    with _lock:
        ticket.names = tuple(name for name in ticket.names if _slots.limit_of(name) is not None)
        if not ticket.names:
            return True
        granted = _slots.request(ticket, _clock())
    _wake([t for t in granted if t is not ticket])
    return ticket in granted


def step(ticket: Ticket, deadline: float | None, timeout: float | None) -> float | None:
    """One look by a waiter: `GRANTED` if it holds its slots; else how long to sleep
    before looking again (None: until woken). Raises the timeout error once the
    deadline has passed (the ticket then leaves the queue, holding nothing)."""
    timed_out = False
    with _lock:
        if ticket.granted:
            return GRANTED
        now = _clock()
        granted = _slots.poll(now)
        result: float | None = GRANTED
        if ticket in granted:  # time (slot decay) let it in
            pass
        elif deadline is not None and now >= deadline:
            _, more = _slots.withdraw(ticket, now)
            granted += more
            timed_out = True
        else:
            ends = [t for t in (_slots.next_change(now), deadline) if t is not None]
            result = max(0.0, min(ends) - now) if ends else None
    _wake([t for t in granted if t is not ticket])
    if timed_out:
        raise AcquireConcurrencySlotTimeoutError(
            f"could not acquire {ticket.occupy} slot(s) of {list(ticket.names)} within "
            f"{timeout} seconds"
        )
    return result


def poll() -> None:
    """Grant what time has let in (slot decay) and wake those waiters now. Waiters do
    this themselves when they wake; tests call it after moving an injected clock."""
    with _lock:
        granted = _slots.poll(_clock())
    _wake(granted)


def waiting() -> int:
    """How many tickets wait for slots, for observers (tests, metrics)."""
    with _lock:
        return _slots.waiting()


def active(name: str) -> float:
    """Slots of `name` taken now (0 for a name without a limit)."""
    with _lock:
        return _slots.active(name, _clock())


def release(ticket: Ticket) -> None:
    """A holder leaves: its slots go back (to the next waiters in line)."""
    with _lock:
        granted = _slots.release(ticket, _clock())
    _wake(granted)


def abandon(ticket: Ticket) -> None:
    """A waiter gives up (cancelled, interrupted, timed out): out of the queue if
    still waiting; if it was granted meanwhile, the slots it took but will not use go
    back. Abandoning twice, or after a timeout, does nothing more."""
    with _lock:
        now = _clock()
        holds, granted = _slots.withdraw(ticket, now)
        if holds:
            granted = _slots.release(ticket, now)
    _wake(granted)
