"""The sans-I/O core of named limits (`asyncflow/_concurrency/_slots.py`), without
threads, loops or clocks: fair FIFO granting, all-or-nothing tickets, slot decay, and
a hypothesis state machine against a plain reference model in exact arithmetic."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from asyncflow._concurrency._slots import CONCURRENCY, RATE_LIMIT, Slots, Ticket


def ticket(*names: str, occupy: int = 1, mode: str = CONCURRENCY) -> Ticket:
    return Ticket(names, occupy, mode)


def test_fifo_a_big_request_is_not_starved_by_small_ones() -> None:
    slots = Slots()
    slots.set_limit("db", 2, None, now=0)
    small, big, late = ticket("db"), ticket("db", occupy=2), ticket("db")
    assert slots.request(small, now=0) == [small]
    assert slots.request(big, now=0) == []
    assert slots.request(late, now=0) == []  # one slot is free, but `big` is first in line
    assert slots.release(small, now=1) == [big]
    assert slots.release(big, now=2) == [late]


def test_waiters_on_other_names_pass_a_blocked_one() -> None:
    slots = Slots()
    slots.set_limit("db", 1, None, now=0)
    slots.set_limit("api", 1, None, now=0)
    holder, blocked, other = ticket("db"), ticket("db"), ticket("api")
    slots.request(holder, now=0)
    assert slots.request(blocked, now=0) == []
    assert slots.request(other, now=0) == [other]


def test_a_ticket_takes_all_its_names_at_once_or_none() -> None:
    slots = Slots()
    slots.set_limit("a", 1, None, now=0)
    slots.set_limit("b", 1, None, now=0)
    on_b = ticket("b")
    slots.request(on_b, now=0)
    both = ticket("a", "b")
    assert slots.request(both, now=0) == []
    assert slots.active("a", now=0) == 0  # nothing of "a" taken while "b" is full
    assert slots.release(on_b, now=1) == [both]
    assert (slots.active("a", now=1), slots.active("b", now=1)) == (1, 1)


def test_withdrawing_the_head_lets_the_next_in() -> None:
    slots = Slots()
    slots.set_limit("db", 2, None, now=0)
    holder, big, small = ticket("db"), ticket("db", occupy=2), ticket("db")
    slots.request(holder, now=0)
    slots.request(big, now=0)
    slots.request(small, now=0)
    assert slots.withdraw(big, now=1) == (False, [small])
    assert slots.withdraw(big, now=1) == (False, [])  # again: nothing more
    assert slots.withdraw(holder, now=1) == (True, [])  # granted: its holder must release


def test_decay_frees_slots_over_time_and_says_when() -> None:
    slots = Slots()
    slots.set_limit("api", 2, 0.5, now=0)
    first, second, third = (ticket("api", mode=RATE_LIMIT) for _ in range(3))
    assert slots.request(first, now=0) == [first]
    assert slots.request(second, now=0) == [second]
    assert slots.request(third, now=0) == []
    assert slots.next_change(now=0) == 2.0  # one slot decays in 1 / 0.5 s
    assert slots.poll(now=1.5) == []
    assert slots.active("api", now=1.5) == pytest.approx(1.25)
    assert slots.poll(now=2.0) == [third]
    assert slots.next_change(now=2.0) is None  # nobody waits


def test_without_decay_only_a_release_helps() -> None:
    slots = Slots()
    slots.set_limit("db", 1, None, now=0)
    slots.request(ticket("db"), now=0)
    slots.request(ticket("db"), now=0)
    assert slots.next_change(now=0) is None
    assert slots.poll(now=10**6) == []


def test_raising_a_limit_lets_waiters_in() -> None:
    slots = Slots()
    slots.set_limit("db", 1, None, now=0)
    slots.request(ticket("db"), now=0)
    waiter = ticket("db")
    slots.request(waiter, now=0)
    assert slots.set_limit("db", 2, None, now=1) == [waiter]
    assert slots.limit_of("db") == (2, None)
    assert slots.limit_of("nope") is None


def test_driver_mistakes_are_refused() -> None:
    slots = Slots()
    slots.set_limit("db", 1, None, now=0)
    with pytest.raises(KeyError):
        slots.request(ticket("unknown"), now=0)
    held = ticket("db")
    slots.request(held, now=0)
    with pytest.raises(ValueError, match="already requested"):
        slots.request(held, now=0)
    slots.release(held, now=0)
    with pytest.raises(ValueError, match="holds no slots"):
        slots.release(held, now=0)


# ---- the state machine ------------------------------------------------------------------------

NAMES = ("a", "b", "c")
# Binary fractions only: float arithmetic on them is exact, so the core (floats) and
# the reference (Fractions) must agree exactly, boundaries included.
DECAYS = (None, 0.25, 0.5, 1.0, 2.0)
STEPS = (0.0, 0.25, 0.5, 1.0, 1.5)


class Reference:
    """The rules as plainly as they can be said, in exact arithmetic: grant, again
    and again, the first waiting ticket that fits and has no earlier waiter on any of
    its names, until none does."""

    def __init__(self) -> None:
        self.limits: dict[str, tuple[int, Fraction]] = {}
        self.active: dict[str, Fraction] = {}
        self.waiting: list[Ticket] = []
        self.now = Fraction(0)

    def advance(self, to: Fraction) -> None:
        for name, (_, decay) in self.limits.items():
            self.active[name] = max(Fraction(0), self.active[name] - decay * (to - self.now))
        self.now = to

    def fits(self, t: Ticket) -> bool:
        return all(self.active[n] + t.occupy <= self.limits[n][0] for n in t.names)

    def first_in_line(self, t: Ticket) -> bool:
        earlier = self.waiting[: self.waiting.index(t)]
        return all(set(e.names).isdisjoint(t.names) for e in earlier)

    def earliest(self) -> Fraction | None:
        """When decay alone first lets a first-in-line waiter in (None: never)."""
        times: list[Fraction] = []
        for t in self.waiting:
            if not self.first_in_line(t):
                continue
            per_name: list[Fraction] = []
            for n in t.names:
                limit, decay = self.limits[n]
                excess = self.active[n] + t.occupy - limit
                if excess > 0 and decay == 0:
                    break
                per_name.append(self.now + max(Fraction(0), excess) / (decay or 1))
            else:
                times.append(max(per_name))
        return min(times, default=None)

    def grant(self) -> list[Ticket]:
        granted: list[Ticket] = []
        while True:
            ready = [t for t in self.waiting if self.first_in_line(t) and self.fits(t)]
            if not ready:
                return granted
            chosen = ready[0]
            self.waiting.remove(chosen)
            for n in chosen.names:
                self.active[n] += chosen.occupy
            granted.append(chosen)


class SlotsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.slots = Slots()
        self.ref = Reference()
        self.holders: list[Ticket] = []  # granted concurrency tickets not released yet
        self.queued: list[Ticket] = []

    def _now(self) -> float:
        return float(self.ref.now)

    def _check_same(self, got: list[Ticket], want: list[Ticket]) -> None:
        assert got == want  # the same tickets, in the same order
        for t in got:
            self.queued.remove(t)
            if t.mode == CONCURRENCY:
                self.holders.append(t)

    @initialize()
    def limits(self) -> None:
        for name, (limit, decay) in zip(NAMES, ((2, None), (3, 0.5), (1, 1.0)), strict=True):
            self.slots.set_limit(name, limit, decay, 0.0)
            self.ref.limits[name] = (limit, Fraction(decay or 0))
            self.ref.active[name] = Fraction(0)

    @rule(
        names=st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True),
        occupy=st.integers(1, 2),
        rate=st.booleans(),
    )
    def request(self, names: list[str], occupy: int, rate: bool) -> None:
        if any(occupy > self.ref.limits[n][0] for n in names):
            return  # the driver refuses these before they reach the core
        t = ticket(*names, occupy=occupy, mode=RATE_LIMIT if rate else CONCURRENCY)
        self.queued.append(t)
        self.ref.waiting.append(t)
        self._check_same(self.slots.request(t, self._now()), self.ref.grant())

    @precondition(lambda self: self.holders)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(self.holders))
        self.holders.remove(t)
        for n in t.names:
            self.ref.active[n] = max(Fraction(0), self.ref.active[n] - t.occupy)
        self._check_same(self.slots.release(t, self._now()), self.ref.grant())

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(self.queued))
        self.queued.remove(t)
        self.ref.waiting.remove(t)
        holds, granted = self.slots.withdraw(t, self._now())
        assert not holds
        self._check_same(granted, self.ref.grant())

    @rule(step=st.sampled_from(STEPS))
    def time_passes(self, step: float) -> None:
        self.ref.advance(self.ref.now + Fraction(step))
        self._check_same(self.slots.poll(self._now()), self.ref.grant())

    @rule()
    def wake_at_next_change(self) -> None:
        at = self.slots.next_change(self._now())
        want = self.ref.earliest()
        assert at == (None if want is None else float(want))
        if at is None:
            # Decay alone never lets anyone in: prove it far in the future.
            self.ref.advance(self.ref.now + 1000)
            assert self.ref.grant() == []
            self.slots.poll(self._now())
            return
        assert at >= self._now()
        self.ref.advance(Fraction(at))
        granted = self.slots.poll(at)
        assert granted, "woken at next_change(), nobody got in"
        self._check_same(granted, self.ref.grant())

    @invariant()
    def counts_agree_and_never_exceed_the_limit(self) -> None:
        for name in NAMES:
            active = self.slots.active(name, self._now())
            assert active == self.ref.active[name]
            assert active <= self.ref.limits[name][0]
        assert self.slots.waiting() == len(self.ref.waiting)

    @invariant()
    def nobody_waits_who_could_go_in(self) -> None:
        for t in self.ref.waiting:
            assert not (self.ref.first_in_line(t) and self.ref.fits(t))


SlotsMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_slots_against_the_reference = SlotsMachine.TestCase
