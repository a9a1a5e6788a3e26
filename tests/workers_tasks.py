"""Module-level tasks for the task worker tests (workers import them by key)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from helpers import WAIT, FileGate, Tally

from asyncflow import task


@task
def noop(i: int = 0) -> int:
    return i


@task
async def anoop(i: int = 0) -> int:
    return i


@task
def hold(tally: Tally, release: FileGate) -> int:
    """Record this worker's pid, wait for `release`, return the pid."""
    tally.add(str(os.getpid()))
    release.wait(WAIT)
    return os.getpid()


@task
def hold_for(seconds: float, tally: Tally) -> int:
    """Record the pid, then run (without any gate) for `seconds`."""
    tally.add(str(os.getpid()))
    time.sleep(seconds)  # a long task: its lease must be renewed meanwhile
    return os.getpid()


@task
async def ahold(tally: Tally, release: FileGate) -> int:
    tally.add(str(os.getpid()))
    await release.wait_async(WAIT)
    return os.getpid()


@task
def kill_worker(tally: Tally) -> None:
    """Kill the process running this, every time (a poison message)."""
    tally.add(str(os.getpid()))
    os._exit(9)


@task
def numbered(i: int, tally: Tally) -> int:
    """Record that run `i` executed (once per delivery), return i."""
    tally.add(str(i))
    return i


@task
def big_result(n: int) -> bytes:
    return b"x" * n


@task
def unrelated(x: Any) -> Any:  # served by no test worker unless asked for
    return x


@task
def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)  # a task that takes a while, deliberately
    return value


@task
async def asleep_then(seconds: float, value: Any) -> Any:
    await asyncio.sleep(seconds)
    return value


@task
def hold_then_mark(tally: Tally, release: FileGate, done: Tally) -> int:
    """`hold`, then record in `done` that this worker got to the end."""
    pid = os.getpid()
    tally.add(str(pid))
    release.wait(WAIT)
    done.add(str(pid))
    return pid


@task
def announce_then_hold(started: FileGate, release: FileGate) -> int:
    """Open `started` once a worker runs this, then wait for `release`."""
    started.open(str(os.getpid()))
    release.wait(WAIT)
    return os.getpid()
