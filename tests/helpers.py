"""Helpers the test modules share: the WAIT bound, cross-process gates, and the small
tasks every module used to define for itself.

Gates order events between the test and a task run wherever the run executes: a
thread, a worker process or a Dask worker. A `threading.Event` only works in the
test's own process, so a `FileGate` is a path: `open()` creates the file, `wait()`
polls for it with a bounded loop (a gate, not a sleep for timing: it returns as soon
as the file appears and fails the test after `WAIT` seconds). A gate pickles as its
path, so it travels to any runner unchanged. `Tally` is the same idea for counting
and recording: one line appended per event, read back in the test.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
import threading
import time
import types
from pathlib import Path
from typing import Any

import asyncflow
from asyncflow import task
from asyncflow._public import is_private_path

__all__ = (
    "DASK_THREADS",
    "POLL",
    "SHORT_WAIT",
    "WAIT",
    "Boom",
    "FileGate",
    "Tally",
    "aident",
    "boom",
    "gate",
    "ident",
    "pid_alive",
    "public_modules",
    "public_objects",
    "wait_for_state",
    "wait_gone",
)

WAIT = 10.0  # seconds any gate may take before a test fails instead of hanging
# Where a known defect may leave a run unfinished, the test waits this long instead, so
# the (strict) xfail costs seconds, not WAIT.
SHORT_WAIT = 3.0
POLL = 0.002  # seconds between two looks at a gate's file

# Threads Dask starts on demand and keeps for the life of the process (process-wide
# executors) or of a module's cluster (its workers' executors, named after the
# workers "0" and "1"). A runner's own completion thread is joined on exit.
DASK_THREADS = (
    "Dask-Offload",
    "Dask-Callback-Thread",
    "0-Dask-Default-Threads",
    "1-Dask-Default-Threads",
)


class FileGate:
    """A one-shot gate between processes: a file that exists once the gate is open."""

    __slots__ = ("path",)

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def __repr__(self) -> str:
        return f"FileGate({self.path!r})"

    def __reduce__(self) -> tuple[type[FileGate], tuple[str]]:
        return (FileGate, (self.path,))

    def open(self, text: str = "") -> None:
        """Open the gate, leaving `text` (e.g. a pid) for whoever waits on it."""
        partial = f"{self.path}.{os.getpid()}.tmp"
        with open(partial, "w") as fh:
            fh.write(text)
        os.replace(partial, self.path)  # atomic: a waiter never reads half a text

    def is_open(self) -> bool:
        return os.path.exists(self.path)

    def wait(self, timeout: float = WAIT) -> str:
        """Block until the gate is open and return its text; `TimeoutError` after
        `timeout` seconds, so a broken order fails instead of hanging."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self} was not opened within {timeout} s")
            time.sleep(POLL)  # polling the file system: bounded by the deadline
        with open(self.path) as fh:
            return fh.read()

    async def wait_async(self, timeout: float = WAIT) -> str:
        """`wait()` for coroutines: polls without blocking the loop, so a cancellation
        of the awaiting task lands here."""
        deadline = time.monotonic() + timeout
        # ASYNC240: one stat of a local file per poll: cheaper than a thread hop.
        while not self.is_open():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self} was not opened within {timeout} s")
            await asyncio.sleep(POLL)
        return self.wait(0)


class Tally:
    """An append-only record shared between processes: one line per `add()`."""

    __slots__ = ("path",)

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def __repr__(self) -> str:
        return f"Tally({self.path!r})"

    def __reduce__(self) -> tuple[type[Tally], tuple[str]]:
        return (Tally, (self.path,))

    def add(self, line: str = "") -> int:
        """Append a line (one `write` in append mode: atomic for short lines) and
        return how many lines there are now."""
        with open(self.path, "a") as fh:
            fh.write(f"{line}\n")
        return len(self.lines())

    def lines(self) -> list[str]:
        try:
            with open(self.path) as fh:
                return fh.read().splitlines()
        except FileNotFoundError:
            return []

    def __len__(self) -> int:
        return len(self.lines())


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    """The pids still alive after waiting up to `timeout` seconds for them to exit."""
    deadline = time.monotonic() + timeout
    while (alive := {p for p in pids if pid_alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.01)  # polling the kernel for exits, bounded
    return alive


class Boom(Exception):
    """A task's own exception type, to check that it is kept."""


@task
def ident(x: Any) -> Any:
    return x


@task
async def aident(x: Any) -> Any:
    return x


@task
def boom(message: str = "boom") -> None:
    raise Boom(message)


@task
def gate(event: threading.Event, value: Any = None) -> Any:
    """Blocks its worker until `event` is set (threads of this process only)."""
    assert event.wait(WAIT)
    return value


def wait_for_state(fut: Any, name: str, timeout: float = WAIT) -> None:
    """Block until `fut` reports the state `name` (a gate on the run's state events:
    e.g. a process run turns Running a few ms after its worker started it)."""
    from asyncflow._core import _events

    reached = threading.Event()

    def on_state(f: Any, state: Any) -> None:
        if f is fut and state.name == name:
            reached.set()

    _events.add_listener(on_state)  # first, so a change right after the check is seen
    try:
        if fut.state.name != name:
            assert reached.wait(timeout), f"{fut!r} never reported {name!r}"
    finally:
        _events.remove_listener(on_state)


def public_modules() -> list[str]:
    """Every module of asyncflow with no private (`_`) part in its path, found by
    walking the package (a new public module is included without editing a list)."""
    names = ["asyncflow"]
    for info in pkgutil.walk_packages(asyncflow.__path__, "asyncflow."):
        if not is_private_path(info.name):
            names.append(info.name)
    return sorted(names)


def public_objects() -> list[tuple[str, str, Any]]:
    """(module, name, object) for each class and function a public `__all__` names."""
    found = []
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, (type, types.FunctionType)):
                found.append((module_name, name, obj))
    return found
