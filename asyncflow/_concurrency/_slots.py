"""The sans-I/O core of named concurrency and rate limits: slot counting, slot decay,
and a fair FIFO queue of waiters. No lock, no clock, no threads, no event loop: every
call is handed `now` (seconds on any monotonic clock), and every call that can let a
waiter in returns the tickets it granted, for the driver to wake. The drivers
(`_sync.py` for threads, `_asyncio.py` for coroutines) differ only in how they wait;
`_registry.py` holds the one instance, under one lock, for both.

A limit has `limit` slots. A `Ticket` asks for `occupy` slots on each of its names,
all at once or not at all (Prefect's bulk acquisition). A limit with a
`slot_decay_per_second` also frees slots by itself as time passes: that is what
makes it a rate limit. A ticket of mode CONCURRENCY gives its slots back when its
holder releases it; a RATE_LIMIT ticket never does, the decay frees them.

Fairness: tickets are granted in the order they arrived, per name. A ticket that
cannot be granted blocks every later ticket sharing a name with it, even one that
would fit (so a large `occupy` is not starved by a stream of small ones); tickets on
other names pass it.

    >>> slots = Slots()
    >>> _ = slots.set_limit("db", 1, None, now=0.0)
    >>> first, second = Ticket(("db",), 1, CONCURRENCY), Ticket(("db",), 1, CONCURRENCY)
    >>> slots.request(first, now=0.0) == [first], slots.request(second, now=0.0)
    (True, [])
    >>> slots.release(first, now=1.0) == [second]
    True
"""

from __future__ import annotations

import collections
from collections.abc import Callable

__all__ = ("CONCURRENCY", "RATE_LIMIT", "Slots", "Ticket")

CONCURRENCY = "concurrency"
RATE_LIMIT = "rate_limit"
# Decay is float arithmetic: a waiter woken at the instant its slots are free must
# not find them 1e-16 short.
_EPSILON = 1e-9


def _no_waker() -> None:
    """The waker of a ticket nobody waits on (the driver replaces it)."""


class Ticket:
    """One request for `occupy` slots on each of `names`: `queued` while it waits,
    `granted` while it holds them (neither once withdrawn or released)."""

    __slots__ = ("granted", "mode", "names", "occupy", "queued", "waker")

    def __init__(
        self,
        names: tuple[str, ...],
        occupy: int,
        mode: str,
        waker: Callable[[], None] = _no_waker,
    ) -> None:
        self.names = names
        self.occupy = occupy
        self.mode = mode
        self.granted = False
        self.queued = False
        self.waker = waker  # what the driver calls after the grant; never called here

    def __repr__(self) -> str:
        return f"Ticket({self.names!r}, occupy={self.occupy}, {self.mode}, granted={self.granted})"


class _Limit:
    __slots__ = ("active", "decay", "limit", "stamp")

    def __init__(self, limit: int, decay: float | None, now: float) -> None:
        self.limit = limit
        self.decay = decay or None  # 0 means no decay
        self.active = 0.0  # slots taken, fractional while decaying
        self.stamp = now  # when `active` was last brought up to date

    def catch_up(self, now: float) -> None:
        if self.decay is not None and now > self.stamp:
            self.active = max(0.0, self.active - self.decay * (now - self.stamp))
        self.stamp = max(self.stamp, now)

    def fits(self, occupy: int) -> bool:
        return self.active + occupy <= self.limit + _EPSILON

    def free_at(self, occupy: int, now: float) -> float | None:
        """When `occupy` more slots fit, with no release; None if only a release helps."""
        excess = self.active + occupy - self.limit
        if excess <= _EPSILON:
            return now
        if self.decay is None:
            return None
        return now + excess / self.decay


class Slots:
    """Every named limit of the process, its holders' slot counts, and its waiters."""

    def __init__(self) -> None:
        self._limits: dict[str, _Limit] = {}
        self._waiting: collections.deque[Ticket] = collections.deque()

    # ---- configuration --------------------------------------------------------------

    def set_limit(self, name: str, limit: int, decay: float | None, now: float) -> list[Ticket]:
        """Create or change a limit (slots held stay held); returns tickets it lets in."""
        current = self._limits.get(name)
        if current is None:
            self._limits[name] = _Limit(limit, decay, now)
        else:
            current.catch_up(now)
            current.limit = limit
            current.decay = decay or None
        return self._grant(now)

    def limit_of(self, name: str) -> tuple[int, float | None] | None:
        """`(limit, slot_decay_per_second)` of `name`, or None if it has no limit."""
        found = self._limits.get(name)
        return None if found is None else (found.limit, found.decay)

    def limits(self) -> dict[str, tuple[int, float | None]]:
        """Every limit's `(limit, slot_decay_per_second)`: the configuration alone."""
        return {name: (found.limit, found.decay) for name, found in self._limits.items()}

    def active(self, name: str, now: float) -> float:
        """Slots of `name` taken at `now` (0 for a name without a limit)."""
        found = self._limits.get(name)
        if found is None:
            return 0.0
        found.catch_up(now)
        return found.active

    def waiting(self) -> int:
        return len(self._waiting)

    # ---- a ticket's life ------------------------------------------------------------

    def request(self, ticket: Ticket, now: float) -> list[Ticket]:
        """Queue `ticket` (every name must have a limit); returns what is granted now,
        `ticket` included if it got in at once."""
        missing = [n for n in ticket.names if n not in self._limits]
        if missing:
            raise KeyError(missing[0])
        if ticket.queued or ticket.granted:
            raise ValueError(f"{ticket!r} was already requested")
        ticket.queued = True
        self._waiting.append(ticket)
        return self._grant(now)

    def withdraw(self, ticket: Ticket, now: float) -> tuple[bool, list[Ticket]]:
        """Take `ticket` out of the queue if it waits there (again: no effect).
        Returns whether it holds slots (it was granted: its holder must release them)
        and the tickets its leaving lets in."""
        if not ticket.queued:
            return ticket.granted, []
        ticket.queued = False
        self._waiting.remove(ticket)
        return False, self._grant(now)

    def release(self, ticket: Ticket, now: float) -> list[Ticket]:
        """Give a granted ticket's slots back; returns the tickets that now get in."""
        if not ticket.granted:
            raise ValueError(f"{ticket!r} holds no slots")
        ticket.granted = False  # released once; a second release is a driver bug
        for name in ticket.names:
            found = self._limits[name]
            found.catch_up(now)
            found.active = max(0.0, found.active - ticket.occupy)
        return self._grant(now)

    def poll(self, now: float) -> list[Ticket]:
        """Grant what time (slot decay) has let in since the last call."""
        return self._grant(now)

    def next_change(self, now: float) -> float | None:
        """The earliest time at which decay alone lets a waiter in; None if only a
        release (or a new limit) can."""
        soonest: float | None = None
        for ticket in self._first_in_line():
            times = [self._limits[n].free_at(ticket.occupy, now) for n in ticket.names]
            if None in times:
                continue
            at = max(t for t in times if t is not None)
            soonest = at if soonest is None else min(soonest, at)
        return soonest

    # ---- the one granting rule ------------------------------------------------------

    def _first_in_line(self) -> list[Ticket]:
        """Waiting tickets with no earlier waiter on any of their names."""
        blocked: set[str] = set()
        first: list[Ticket] = []
        for ticket in self._waiting:
            if blocked.isdisjoint(ticket.names):
                first.append(ticket)
            blocked.update(ticket.names)
        return first

    def _grant(self, now: float) -> list[Ticket]:
        for found in self._limits.values():
            found.catch_up(now)
        granted: list[Ticket] = []
        blocked: set[str] = set()
        for ticket in list(self._waiting):
            limits = [self._limits[n] for n in ticket.names]
            if blocked.isdisjoint(ticket.names) and all(lim.fits(ticket.occupy) for lim in limits):
                for lim in limits:
                    lim.active += ticket.occupy
                ticket.granted = True
                ticket.queued = False
                self._waiting.remove(ticket)
                granted.append(ticket)
            else:
                blocked.update(ticket.names)
        return granted
