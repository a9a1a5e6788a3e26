"""Shared fixtures: every test is checked for leaked threads, child processes and
tasks left on the engine loop; the session is checked for unclosed event loops.

A test that legitimately leaves long-lived threads (a library's own pool, say) names
their prefixes with `@pytest.mark.allow_threads("prefix", ...)`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from asyncflow._core import _portal

# Long-lived by design: the engine loop's thread and the process-wide default runner.
ALWAYS_ALLOWED = ("asyncflow-portal", "asyncflow-default")
GRACE_SECONDS = 5.0  # bound on how long finished work may take to be joined/reaped


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_threads(*prefixes): threads with these name prefixes may outlive the test"
    )
    config.addinivalue_line(
        "markers",
        "fault: slow fault-injection and soak runs (subprocesses, kills, signals); .ci/run "
        "runs them, deselect locally with -m 'not fault'",
    )


def _children_of(pid: int) -> set[int]:
    pids: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:  # gone, or not Linux: nothing to check
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                pids.update(int(p) for p in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def _multiprocessing_servers() -> set[int]:
    """multiprocessing's long-lived helpers (forkserver, resource tracker): they live
    as long as the interpreter by design; their own children are still checked."""
    servers = set()
    for module, attr in (("forkserver", "_forkserver"), ("resource_tracker", "_resource_tracker")):
        mod = sys.modules.get(f"multiprocessing.{module}")
        pid = getattr(getattr(mod, attr, None), "_forkserver_pid", None) or getattr(
            getattr(mod, attr, None), "_pid", None
        )
        if pid:
            servers.add(pid)
    return servers


def child_pids() -> set[int]:
    """Live (non-zombie) children of this process, and of multiprocessing's forkserver
    (process-pool workers are forked from it), from /proc."""
    pids = _children_of(os.getpid())
    for server in _multiprocessing_servers() & pids:
        pids.discard(server)
        pids |= _children_of(server)
    return {pid for pid in pids if not _is_zombie(pid)}


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def portal_task_count() -> int:
    """Tasks alive on the engine loop (0 if it never started)."""
    loop = _portal._loop
    if loop is None or loop.is_closed():
        return 0
    result: concurrent.futures.Future[int] = concurrent.futures.Future()
    loop.call_soon_threadsafe(lambda: result.set_result(len(asyncio.all_tasks(loop))))
    return result.result(timeout=GRACE_SECONDS)


def _leaked_threads(
    before: set[threading.Thread], allowed: tuple[str, ...], grace: float = GRACE_SECONDS
) -> list[str]:
    deadline = time.monotonic() + grace
    leaked = []
    for thread in threading.enumerate():
        if thread in before or thread.name.startswith(allowed):
            continue
        # A runner that exited has told its workers to stop; give them time to do so.
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            leaked.append(thread.name)
    return leaked


def _leaked_children(before: set[int], grace: float = GRACE_SECONDS) -> set[int]:
    deadline = time.monotonic() + grace
    while True:
        new = child_pids() - before
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.02)  # polling the kernel for exits; bounded by GRACE_SECONDS


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("allow_threads")
    allowed = ALWAYS_ALLOWED + (tuple(marker.args) if marker else ())
    threads_before = set(threading.enumerate())
    children_before = child_pids()
    yield
    leaked = _leaked_threads(threads_before, allowed)
    assert not leaked, f"test left threads running: {leaked}"
    children = _leaked_children(children_before)
    assert not children, f"test left child processes running: {sorted(children)}"
    deadline = time.monotonic() + GRACE_SECONDS
    while (count := portal_task_count()) and time.monotonic() < deadline:
        time.sleep(0.01)  # cancelled tasks need a loop iteration or two to finish
    assert count == 0, f"test left {count} task(s) on the engine loop"


@pytest.fixture(autouse=True, scope="session")
def _no_unclosed_loops() -> Iterator[None]:
    yield
    gc.collect()
    portal = _portal._loop
    open_loops = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, asyncio.AbstractEventLoop) and obj is not portal and not obj.is_closed()
    ]
    assert not open_loops, f"tests left event loops open: {open_loops}"
