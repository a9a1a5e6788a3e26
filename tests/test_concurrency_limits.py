"""Named concurrency and rate limits through their drivers (issue 15): threads,
coroutines and both at once on one name; timeouts, cancellation, exceptions, strict,
settings, bad input. Ordered by gates and by watching the queue, never by sleeping;
rate limits run on an injected clock."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from asyncflow import exceptions, flow, task
from asyncflow._concurrency import _registry
from asyncflow.concurrency import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    get_limit,
    set_limit,
)
from asyncflow.concurrency import asyncio as aconcurrency
from asyncflow.concurrency.sync import concurrency, rate_limit
from asyncflow.task_runners import ThreadPoolTaskRunner

WAIT = 10.0  # seconds a gate may take before a test fails instead of hanging


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        _registry.poll()  # what a waiter's own timer would do, at once


@pytest.fixture(autouse=True)
def fresh_limits() -> Iterator[None]:
    _registry.use_clock(None)  # forget limits, holders and waiters of other tests
    yield
    _registry.use_clock(None)


@pytest.fixture
def clock() -> FakeClock:
    fake = FakeClock()
    _registry.use_clock(fake)
    return fake


def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) for another thread to reach a state we can observe."""
    gate = threading.Event()
    for _ in range(int(WAIT / 0.001)):
        if condition():
            return
        gate.wait(0.001)
    raise AssertionError("condition not reached")


async def until_async(condition: Callable[[], bool]) -> None:
    for _ in range(int(WAIT / 0.001)):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def enter_and_leave(*args: Any, **kwargs: Any) -> None:
    with concurrency(*args, **kwargs):
        pass


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="test-limit-waiter")
    thread.start()
    return thread, outcome


# ---- threads ----------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_a_thread_waits_for_the_holder_to_leave() -> None:
    set_limit("db", 1)
    order: list[str] = []

    def second() -> None:
        with concurrency("db"):
            order.append("second in")

    with concurrency("db"):
        thread, outcome = in_thread(second)
        until(lambda: _registry.waiting() == 1)
        order.append("first out")
    thread.join(WAIT)
    assert outcome == [None]
    assert order == ["first out", "second in"]
    assert _registry.active("db") == 0


@pytest.mark.timeout(20)
def test_threads_get_in_first_come_first_served() -> None:
    set_limit("db", 1)
    order: list[int] = []
    threads = []
    with concurrency("db"):
        for i in range(3):

            def enter(i: int = i) -> None:
                with concurrency("db"):
                    order.append(i)

            threads.append(in_thread(enter)[0])
            until(lambda i=i: _registry.waiting() == i + 1)  # queued in this order
    for thread in threads:
        thread.join(WAIT)
    assert order == [0, 1, 2]


def test_occupy_counts_slots_and_a_limit_of_two_admits_two() -> None:
    set_limit("db", 3)
    with concurrency("db", occupy=2):
        assert _registry.active("db") == 2
        with concurrency("db"):
            assert _registry.active("db") == 3
            with pytest.raises(AcquireConcurrencySlotTimeoutError):
                enter_and_leave("db", timeout_seconds=0)
    assert _registry.active("db") == 0


def test_an_exception_in_the_block_gives_the_slots_back() -> None:
    set_limit("db", 1)
    with pytest.raises(KeyError), concurrency("db"):
        raise KeyError("inside")
    assert _registry.active("db") == 0
    with concurrency("db", timeout_seconds=0):  # free at once
        pass


def test_several_names_are_taken_together() -> None:
    set_limit("a", 1)
    set_limit("b", 1)
    with concurrency(["a", "b"]):
        assert (_registry.active("a"), _registry.active("b")) == (1, 1)
        with pytest.raises(TimeoutError), concurrency("b", timeout_seconds=0):
            pass
    with concurrency("a"), pytest.raises(TimeoutError):
        enter_and_leave(["b", "a"], timeout_seconds=0)
    assert _registry.active("b") == 0  # nothing of "b" kept by the refused pair


@pytest.mark.timeout(20)
def test_timeout_raises_a_timeout_error_and_leaves_the_queue() -> None:
    set_limit("db", 1)
    with concurrency("db"):
        with pytest.raises(AcquireConcurrencySlotTimeoutError, match=r"1 slot\(s\) of \['db'\]"):
            enter_and_leave("db", timeout_seconds=0.02)
        assert _registry.waiting() == 0
        assert _registry.active("db") == 1
    assert issubclass(AcquireConcurrencySlotTimeoutError, TimeoutError)
    assert issubclass(AcquireConcurrencySlotTimeoutError, exceptions.AsyncflowError)


def test_an_interrupted_waiter_leaves_nothing_behind() -> None:
    set_limit("db", 1)
    holder = _registry.Request("db", 1, None, False, "concurrency")
    held, _ = _registry.enter(holder, lambda: None)
    assert held is not None
    assert held.granted
    waiter, _ = _registry.enter(holder, lambda: None)
    assert waiter is not None
    assert not waiter.granted
    _registry.abandon(waiter)  # what the driver does on KeyboardInterrupt
    assert _registry.waiting() == 0
    _registry.abandon(held)  # granted, then abandoned: its slot goes back
    assert _registry.active("db") == 0
    _registry.abandon(held)  # twice: nothing more
    assert _registry.active("db") == 0


CTRL_C_WHILE_WAITING = """
import os, signal, threading
from asyncflow._concurrency import _registry
from asyncflow.concurrency import set_limit
from asyncflow.concurrency.sync import concurrency

set_limit("db", 1)
holding, done = threading.Event(), threading.Event()

def holder():
    with concurrency("db"):
        holding.set()
        done.wait(10)

def press_ctrl_c():
    for _ in range(10000):
        if _registry.waiting() == 1:
            os.kill(os.getpid(), signal.SIGINT)
            return
        done.wait(0.001)

threading.Thread(target=holder).start()
holding.wait(10)
threading.Thread(target=press_ctrl_c).start()
try:
    with concurrency("db"):
        print("entered")
except KeyboardInterrupt:
    print("interrupted", _registry.waiting(), _registry.active("db"))
done.set()
"""


@pytest.mark.timeout(40)
def test_ctrl_c_while_a_thread_waits_leaves_nothing_behind() -> None:
    # In a subprocess: a regression would hang the waiter, not the test run.
    out = subprocess.run(
        [sys.executable, "-c", CTRL_C_WHILE_WAITING],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout.split() == ["interrupted", "0", "1.0"], out.stderr


FORK_WHILE_HOLDING = """
import os
from asyncflow.concurrency import get_limit, set_limit
from asyncflow.concurrency.sync import concurrency

set_limit("db", 1)
with concurrency("db"):
    pid = os.fork()
    if pid == 0:
        try:
            with concurrency("db", timeout_seconds=0):  # the parent's slot is not the child's
                ok = get_limit("db") == (1, None)
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.timeout(40)
def test_a_forked_child_keeps_the_limits_but_not_the_parents_slots() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FORK_WHILE_HOLDING], capture_output=True, text=True, timeout=30
    )
    assert out.stdout.split() == ["child", "0"], out.stderr


def test_empty_names_hold_nothing_as_prefect() -> None:
    with concurrency([]):
        assert _registry.waiting() == 0
    rate_limit([])


# ---- coroutines ---------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_a_coroutine_waits_for_the_holder_to_leave() -> None:
    set_limit("db", 1)
    order: list[str] = []

    async def second() -> None:
        async with aconcurrency.concurrency("db"):
            order.append("second in")

    async with aconcurrency.concurrency("db"):
        waiter = asyncio.ensure_future(second())
        await until_async(lambda: _registry.waiting() == 1)
        order.append("first out")
    await asyncio.wait_for(waiter, WAIT)
    assert order == ["first out", "second in"]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_cancelling_a_waiting_coroutine_takes_and_releases_nothing() -> None:
    set_limit("db", 1)
    entered = False

    async def waiter() -> None:
        nonlocal entered
        async with aconcurrency.concurrency("db"):
            entered = True

    async with aconcurrency.concurrency("db"):
        job = asyncio.ensure_future(waiter())
        await until_async(lambda: _registry.waiting() == 1)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert _registry.waiting() == 0
        assert _registry.active("db") == 1  # the holder's slot was not given away
    assert not entered
    assert _registry.active("db") == 0


@pytest.mark.asyncio
async def test_async_timeout_and_errors_match_the_sync_ones() -> None:
    set_limit("db", 1)
    async with aconcurrency.concurrency("db"):
        with pytest.raises(AcquireConcurrencySlotTimeoutError):
            async with aconcurrency.concurrency("db", timeout_seconds=0):
                pass
    with pytest.raises(ConcurrencySlotAcquisitionError):
        async with aconcurrency.concurrency("nowhere", strict=True):
            pass
    with pytest.raises(ValueError, match="occupy"):
        async with aconcurrency.concurrency("db", occupy=0):
            pass
    assert _registry.active("db") == 0


# ---- threads and coroutines on one name -------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_a_thread_and_a_coroutine_share_one_limit_and_one_line() -> None:
    set_limit("db", 1)
    order: list[str] = []
    release_thread = threading.Event()

    def thread_holder() -> None:
        with concurrency("db"):
            order.append("thread in")
            assert release_thread.wait(WAIT)
            order.append("thread out")  # still holding: the coroutine cannot be in yet

    holder, outcome = in_thread(thread_holder)
    await until_async(lambda: _registry.active("db") == 1)

    async def coroutine_waiter() -> None:
        async with aconcurrency.concurrency("db"):
            order.append("coroutine in")

    job = asyncio.ensure_future(coroutine_waiter())
    await until_async(lambda: _registry.waiting() == 1)
    assert order == ["thread in"]
    release_thread.set()  # the grant comes from the thread, the coroutine wakes on its loop
    await asyncio.wait_for(job, WAIT)
    holder.join(WAIT)
    assert outcome == [None]
    assert order == ["thread in", "thread out", "coroutine in"]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_a_thread_waits_for_a_coroutine_holder() -> None:
    set_limit("db", 1)
    entered = threading.Event()
    leave = threading.Event()

    def thread_waiter() -> None:
        with concurrency("db"):
            entered.set()
            assert leave.wait(WAIT)

    async with aconcurrency.concurrency("db"):
        thread, outcome = in_thread(thread_waiter)
        await until_async(lambda: _registry.waiting() == 1)
        assert not entered.is_set()
    await until_async(entered.is_set)
    assert _registry.active("db") == 1  # the thread holds it now
    leave.set()
    thread.join(WAIT)
    assert outcome == [None]
    assert _registry.active("db") == 0


def test_sync_wait_on_a_running_loop_raises_would_deadlock() -> None:
    set_limit("db", 1)

    async def main() -> None:
        # Free: taken at once, as Prefect's examples do; full: refused, not blocked.
        with concurrency("db"), pytest.raises(exceptions.WouldDeadlock, match="asyncio"):
            enter_and_leave("db")
        assert _registry.waiting() == 0

    asyncio.run(main())


# ---- tasks ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_tasks_on_a_pool_never_exceed_the_limit() -> None:
    set_limit("database", 2)
    inside = 0
    most = 0
    lock = threading.Lock()
    gate = threading.Event()

    @task
    def query(i: int) -> int:
        nonlocal inside, most
        with concurrency("database", occupy=1):
            with lock:
                inside += 1
                most = max(most, inside)
            assert gate.wait(WAIT)
            with lock:
                inside -= 1
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=6))
    def pipeline() -> list[int]:
        futures = query.map(range(6))
        until(lambda: _registry.waiting() == 4)  # 2 inside, 4 queued
        assert inside == 2
        gate.set()
        return futures.result()

    assert pipeline() == list(range(6))
    assert most == 2


# ---- rate limits ---------------------------------------------------------------------------


def test_rate_limit_spaces_calls_by_the_decay(clock: FakeClock) -> None:
    set_limit("api", 2, slot_decay_per_second=0.5)
    rate_limit("api")
    rate_limit("api")
    with pytest.raises(AcquireConcurrencySlotTimeoutError):
        rate_limit("api", timeout_seconds=0)
    clock.advance(1.0)  # half a slot back: not enough
    with pytest.raises(AcquireConcurrencySlotTimeoutError):
        rate_limit("api", timeout_seconds=0)
    clock.advance(1.0)
    rate_limit("api", timeout_seconds=0)


@pytest.mark.timeout(20)
def test_a_rate_limited_thread_is_let_in_when_the_slot_decays(clock: FakeClock) -> None:
    set_limit("api", 1, slot_decay_per_second=1.0)
    rate_limit("api")
    thread, outcome = in_thread(lambda: rate_limit("api"))
    until(lambda: _registry.waiting() == 1)
    clock.advance(0.5)
    assert _registry.waiting() == 1
    clock.advance(0.5)
    thread.join(WAIT)
    assert outcome == [None]


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_a_rate_limited_coroutine_is_let_in_when_the_slot_decays(clock: FakeClock) -> None:
    set_limit("api", 1, slot_decay_per_second=2.0)
    await aconcurrency.rate_limit("api")
    job = asyncio.ensure_future(aconcurrency.rate_limit("api"))
    await until_async(lambda: _registry.waiting() == 1)
    clock.advance(0.5)
    await asyncio.wait_for(job, WAIT)


def test_rate_limit_needs_a_decay() -> None:
    set_limit("db", 2)
    with pytest.raises(ConcurrencySlotAcquisitionError, match="slot_decay_per_second"):
        rate_limit("db")


def test_concurrency_on_a_rate_limit_gives_slots_back_on_exit(clock: FakeClock) -> None:
    set_limit("api", 1, slot_decay_per_second=0.001)
    with concurrency("api"):
        assert _registry.active("api") == 1
    assert _registry.active("api") == 0


# ---- names without a limit ----------------------------------------------------------------


def test_an_unknown_name_is_not_limited_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="asyncflow"):
        enter_and_leave("ghost"), concurrency("ghost")
        rate_limit("ghost")
    warnings = [r for r in caplog.records if "'ghost'" in r.getMessage()]
    assert len(warnings) == 1
    assert "does not exist" in warnings[0].getMessage()


def test_strict_makes_an_unknown_name_an_error() -> None:
    with pytest.raises(ConcurrencySlotAcquisitionError, match=r"'ghost'.*set_limit"):
        enter_and_leave("ghost", strict=True)
    with pytest.raises(ConcurrencySlotAcquisitionError):
        rate_limit("ghost", strict=True)


def test_a_limit_set_later_applies_to_new_holders() -> None:
    with concurrency("late"):
        pass
    set_limit("late", 1)
    with concurrency("late"), pytest.raises(TimeoutError):
        enter_and_leave("late", timeout_seconds=0)


# ---- configuration --------------------------------------------------------------------------


def test_limits_from_the_environment_and_code_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_CONCURRENCY_LIMITS", " database=2, api = 10:0.5 ")
    _registry.use_clock(None)  # read again on next use
    assert get_limit("database") == (2, None)
    assert get_limit("api") == (10, 0.5)
    assert get_limit("other") is None
    set_limit("database", 5)
    assert get_limit("database") == (5, None)


@pytest.mark.parametrize(
    "raw", ["database", "database=two", "=2", "db=0", "db=2:-1", "db=2:nan", "db=2:x"]
)
def test_a_bad_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ASYNCFLOW_CONCURRENCY_LIMITS", raw)
    _registry.use_clock(None)
    with pytest.raises(ValueError, match="ASYNCFLOW_CONCURRENCY_LIMITS"):
        enter_and_leave("database")


def test_raising_a_limit_lets_a_waiter_in() -> None:
    set_limit("db", 1)
    with concurrency("db"):
        entered = threading.Event()

        def waiter() -> None:
            with concurrency("db", timeout_seconds=WAIT):
                entered.set()

        thread, outcome = in_thread(waiter)
        until(lambda: _registry.waiting() == 1)
        assert not entered.is_set()
        set_limit("db", 2)  # room for the waiter while the first holder stays
        thread.join(WAIT)
        assert outcome == [None]
        assert entered.is_set()


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"occupy": 0}, ValueError, "occupy"),
        ({"occupy": -1}, ValueError, "occupy"),
        ({"occupy": 1.5}, TypeError, "occupy"),
        ({"occupy": True}, TypeError, "occupy"),
        ({"occupy": 3}, ValueError, "occupy=3 is more than the limit"),
        ({"timeout_seconds": float("nan")}, ValueError, "timeout_seconds"),
        ({"timeout_seconds": -1}, ValueError, "timeout_seconds"),
        ({"timeout_seconds": "1"}, TypeError, "timeout_seconds"),
        ({"strict": "yes"}, TypeError, "strict"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"lease_duration": 0}, ValueError, "lease_duration"),
        ({"names": 3}, TypeError, "names"),
        ({"names": [""]}, TypeError, "name"),
        ({"names": ["db", None]}, TypeError, "name"),
    ],
)
def test_bad_arguments_are_named_before_anything_is_taken(
    kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    set_limit("db", 2)
    call = {"names": "db", **kwargs}
    with pytest.raises(error, match=param), concurrency(**call):
        pass
    assert (_registry.active("db"), _registry.waiting()) == (0, 0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "param"),
    [
        (("db", 0), {}, ValueError, "limit"),
        (("db", 2.0), {}, TypeError, "limit"),
        (("", 2), {}, TypeError, "name"),
        (("db", 2), {"slot_decay_per_second": float("nan")}, ValueError, "slot_decay"),
        (("db", 2), {"slot_decay_per_second": -1}, ValueError, "slot_decay"),
    ],
)
def test_bad_limits_are_named(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], param: str
) -> None:
    with pytest.raises(error, match=param):
        set_limit(*args, **kwargs)
