"""Module-level tasks of the conformance suite.

They are module-level so that the process and Dask runners ship them by name (the
worker imports this module). They talk to the test only through what travels:
their arguments (gates and tallies are paths, see tests/helpers.py) and their results.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from helpers import WAIT, Boom, FileGate, Tally

from asyncflow import State, task
from asyncflow.states import Cancelled, Completed, Crashed, Failed, Running


@task
def add(x: int, y: int) -> int:
    return x + y


@task
async def aadd(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@task
def pid() -> int:
    return os.getpid()


@task
def describe(value: Any) -> str:
    return f"{type(value).__name__}: {value}"


@task
def record(tally: Tally, name: str, gate: FileGate | None = None) -> str:
    """Wait for `gate` (if any), then append `name` to `tally`."""
    if gate is not None:
        gate.wait()
    tally.add(name)
    return name


@task
def blocker(started: FileGate, release: FileGate, finished: FileGate | None = None) -> int:
    """Announce the run (with this process's pid), block until released, then say so."""
    started.open(str(os.getpid()))
    release.wait()
    if finished is not None:
        finished.open()
    return os.getpid()


@task
async def ablocker(started: FileGate, release: FileGate, finished: FileGate | None = None) -> int:
    """`blocker` as a coroutine: the wait is awaited, so cancelling it stops the run."""
    started.open(str(os.getpid()))
    try:
        await release.wait_async()
    except asyncio.CancelledError:
        if finished is not None:
            finished.open("cancelled")
        raise
    if finished is not None:
        finished.open("finished")
    return os.getpid()


@task
def fail_until(tally: Tally, succeed_on: int, error: str = "ConnectionError") -> int:
    """Fail (with `error`) until the `succeed_on`-th call; record each call's time."""
    calls = tally.add(repr(time.monotonic()))
    if calls < succeed_on:
        raise {"ConnectionError": ConnectionError, "ValueError": ValueError}[error](
            f"attempt {calls}"
        )
    return calls


@task
async def afail_until(tally: Tally, succeed_on: int) -> int:
    calls = tally.add(repr(time.monotonic()))
    if calls < succeed_on:
        raise ConnectionError(f"attempt {calls}")
    return calls


@task
def crash_until(tally: Tally, succeed_on: int) -> int:
    """Kill this run's process until the `succeed_on`-th call."""
    calls = tally.add()
    if calls < succeed_on:
        os._exit(3)
    return calls


@task
def exit_with(code: int) -> None:
    sys.exit(code)


@task
def fail_with(message: str) -> None:
    raise Boom(message)


@task
def wait_then(gate: FileGate, value: Any) -> Any:
    gate.wait()
    return value


@task
def lengths(xs: list[Any]) -> int:
    return len(xs)


@task
def scale(x: int, factor: int = 10) -> int:
    return x * factor


@task
def pair(a: Any, b: Any) -> tuple[Any, Any]:
    return (a, b)


@task
def child_sum(n: int) -> tuple[int, int]:
    """Submit n children, block on them (nested submission); return (sum, pid)."""
    values = add.map(range(n), 1).result(timeout=WAIT)
    return sum(values), os.getpid()


@task
async def achild_sum(n: int) -> int:
    return sum(await aadd.map(range(n), 1))


@task
def child_pid() -> tuple[int, int]:
    """This run's pid and its child's."""
    return os.getpid(), pid.submit().result(timeout=WAIT)


class Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("Unpicklable refuses to be pickled")


@task
def make_unpicklable() -> Any:
    return Unpicklable()


# ---- returned states (issue 15, test_returned_states.py) ------------------------------


def returned(kind: str) -> Any:
    """The state (or value) a task returns, by name: the tasks below travel by name."""
    if kind == "completed":
        return Completed(message="from cache", name="Cached", data={"rows": 3})
    if kind == "failed":
        return Failed(message="validation failed")
    if kind == "failed-with-exception":
        return Failed(message="bad input", data=Boom("bad row"))
    if kind == "cancelled":
        return Cancelled(message="nothing to do")
    if kind == "crashed":
        return Crashed(message="lost the connection")
    if kind == "running":
        return Running()
    return kind


@task
def settle(kind: str, gate: FileGate | None = None) -> Any:
    if gate is not None:
        gate.wait()
    return returned(kind)


@task
async def asettle(kind: str) -> Any:
    return returned(kind)


@task(retries=2, retry_delay_seconds=0)
def settle_counted(tally: Tally) -> State:
    tally.add("called")
    return Failed(message="not worth retrying")
