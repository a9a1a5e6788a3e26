"""`ASYNCFLOW_MAX_PENDING_RUNS`: `.submit()` in a loop waits once a runner has that
many runs not final; an event-loop thread gets a clear error instead (issue 11, 10b;
docs/policies.md "Backpressure"). Ordered with gates, never with sleeps."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import WAIT, boom, gate, ident

from asyncflow import exceptions, task
from asyncflow.task_runners import ThreadPoolTaskRunner

ENV = "ASYNCFLOW_MAX_PENDING_RUNS"


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a gated worker behind


def _blocked_in_acquire(thread: threading.Thread) -> bool:
    """True once `thread` waits inside `threading.Semaphore.acquire` (the bound)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == "acquire" and frame.f_code.co_filename.endswith("threading.py"):
            return True
        frame = frame.f_back
    return False


def _wait_until_blocked(thread: threading.Thread) -> None:
    deadline = time.monotonic() + WAIT
    while not _blocked_in_acquire(thread):
        assert thread.is_alive(), "the submitter returned instead of waiting"
        assert time.monotonic() < deadline, "the submitter never reached the bound"
        threading.Event().wait(0.001)


def _in_this_context(fn: Any) -> threading.Thread:
    """Start `fn` in a thread that sees this context's runner (as `.submit` needs)."""
    ctx = contextvars.copy_context()
    thread = threading.Thread(target=ctx.run, args=(fn,))
    thread.start()
    return thread


def test_unset_means_unbounded(monkeypatch: pytest.MonkeyPatch, release: threading.Event) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with ThreadPoolTaskRunner(max_workers=1) as runner:
        assert runner._pending_limit is None
        futures = [gate.submit(release, i) for i in range(50)]  # never waits
        release.set()
        assert [f.result(timeout=WAIT) for f in futures] == list(range(50))


def test_submit_waits_in_a_thread_until_a_run_finishes(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    monkeypatch.setenv(ENV, "2")
    with ThreadPoolTaskRunner(max_workers=4) as runner:
        first = gate.submit(release, "first")
        second = ident.submit("second")  # may already be final: its slot then is free
        second.wait(WAIT)
        third = gate.submit(release, "third")
        assert len(runner.pending_runs()) == 2  # first and third hold the two slots
        got: list[Any] = []
        submitter = _in_this_context(lambda: got.append(ident.submit("fourth")))
        _wait_until_blocked(submitter)
        assert got == []
        release.set()  # first and third finish: a slot frees up, the submit goes on
        submitter.join(WAIT)
        assert not submitter.is_alive()
        assert [f.result(timeout=WAIT) for f in (first, second, third)] == [
            "first",
            "second",
            "third",
        ]
        assert got[0].result(timeout=WAIT) == "fourth"


def test_every_final_state_gives_the_slot_back(
    monkeypatch: pytest.MonkeyPatch, release: threading.Event
) -> None:
    monkeypatch.setenv(ENV, "3")
    with ThreadPoolTaskRunner(max_workers=1) as runner:
        blocker = gate.submit(release)  # holds the only worker
        queued = boom.submit()
        waiting = ident.submit(queued)  # waits on an upstream
        assert runner.cancel_all() >= 1  # `waiting` may end NotReady first
        assert queued.state.is_cancelled()
        assert waiting.state.name in ("Cancelled", "NotReady")
        release.set()
        assert blocker.result(timeout=WAIT) is None
        for _ in range(3):  # a failure and the NotReady skip below it, three times
            assert ident.submit(boom.submit()).exception(timeout=WAIT) is not None
        # No slot leaked: three submits in a row do not wait (a leak would block here).
        got: list[Any] = []
        submitter = _in_this_context(lambda: got.extend(ident.submit(i) for i in range(3)))
        submitter.join(WAIT)
        assert not submitter.is_alive(), "a slot was not given back"
        assert [f.result(timeout=WAIT) for f in got] == [0, 1, 2]


@pytest.mark.asyncio
async def test_on_an_event_loop_a_full_runner_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "1")
    opened = asyncio.Event()

    @task
    async def waits() -> str:
        await opened.wait()
        return "done"

    async with ThreadPoolTaskRunner(max_workers=1) as runner:
        first = waits.submit()
        with pytest.raises(exceptions.WouldDeadlock) as info:
            waits.submit()
        message = str(info.value)
        assert ENV in message
        assert "map_iter" in message
        assert "'waits'" in message
        assert isinstance(info.value, RuntimeError)
        assert len(runner.pending_runs()) == 1  # the refused submit left no run behind
        opened.set()
        assert await first == "done"
        assert await waits.submit() == "done"  # room again


def test_map_iter_streams_under_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "4")
    with ThreadPoolTaskRunner(max_workers=2):
        assert list(ident.map_iter(range(100), max_concurrency=4)) == list(range(100))


@pytest.mark.parametrize("raw", ["0", "-1", "many", "1.5"])
def test_a_bad_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(ENV, raw)
    with pytest.raises(ValueError, match=ENV) as info:
        ThreadPoolTaskRunner(max_workers=1)
    assert repr(raw) in str(info.value)


NESTED = textwrap.dedent(
    """
    import os
    os.environ["ASYNCFLOW_MAX_PENDING_RUNS"] = "1"
    from asyncflow import task
    from asyncflow.task_runners import ThreadPoolTaskRunner

    @task
    def child(x):
        return x + 1

    @task
    def parent(n):
        # the parent holds the only slot: its children must not wait for it
        return sum(child.submit(i).result() for i in range(n))

    with ThreadPoolTaskRunner(max_workers=2):
        print(parent.submit(5).result())
    """
)


def test_nested_submission_is_not_bounded() -> None:
    # In a subprocess: a regression would deadlock, and must fail instead of hanging.
    done = subprocess.run(
        [sys.executable, "-c", NESTED], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "15"
