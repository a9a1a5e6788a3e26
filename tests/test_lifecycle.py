"""The run lifecycle owned by the core: attempts, stops and state events, on real runs.

The rules themselves are unit-tested without a loop in test_attempt.py; these tests
check that the drivers (thread, loop, process) carry them out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from helpers import WAIT

from asyncflow import State, exceptions, task
from asyncflow._core import _events
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


class RetryingGate:
    """A state listener that opens once some run reports "Retrying" (a gate, no polling)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, fut: Any, state: State) -> None:
        if state.name == "Retrying":
            self.event.set()

    def __enter__(self) -> threading.Event:
        _events.add_listener(self)
        return self.event

    def __exit__(self, *exc: object) -> None:
        _events.remove_listener(self)


def test_cancel_during_a_thread_retry_delay_ends_the_run_at_once() -> None:
    @task(retries=1, retry_delay_seconds=60)
    def flaky() -> None:
        raise OSError("transient")

    with RetryingGate() as retrying, ThreadPoolTaskRunner(max_workers=1) as runner:
        fut = flaky.submit()
        assert retrying.wait(WAIT)
        started = time.monotonic()
        assert fut.cancel()
        assert fut.state.is_cancelled()
        runner.cancel_all()
    # The worker was asleep in a 60 s delay: it woke up when the run was cancelled.
    assert time.monotonic() - started < WAIT
    with pytest.raises(exceptions.TaskCancelled):
        fut.result()


@pytest.mark.asyncio
async def test_cancel_during_an_async_retry_delay_ends_the_run_at_once() -> None:
    @task(retries=1, retry_delay_seconds=60)
    async def flaky() -> None:
        raise OSError("transient")

    loop = asyncio.get_running_loop()
    retrying = asyncio.Event()

    def on_state(fut: Any, state: State) -> None:
        if state.name == "Retrying":
            loop.call_soon_threadsafe(retrying.set)

    _events.add_listener(on_state)
    try:
        async with ThreadPoolTaskRunner():  # its exit would wait out the 60 s delay
            fut = flaky.submit()
            await asyncio.wait_for(retrying.wait(), WAIT)
            assert fut.cancel()
    finally:
        _events.remove_listener(on_state)
    assert fut.state.is_cancelled()
    assert fut.state.attempts == 1


def test_state_events_reach_a_listener_in_order() -> None:
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def listener(fut: Any, state: State) -> None:
        with lock:
            seen.append((fut.name, state.name))

    calls: list[int] = []

    @task(retries=1)
    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("once")
        return 7

    _events.add_listener(listener)
    try:
        with ThreadPoolTaskRunner(max_workers=1):
            assert flaky.submit().result(timeout=WAIT) == 7
    finally:
        _events.remove_listener(listener)
    assert seen == [
        ("flaky", "Running"),
        ("flaky", "Retrying"),
        ("flaky", "Running"),
        ("flaky", "Completed"),
    ]


def test_a_listener_that_raises_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad(fut: Any, state: State) -> None:
        raise RuntimeError("listener bug")

    @task
    def one() -> int:
        return 1

    _events.add_listener(bad)
    try:
        assert one.submit().result(timeout=WAIT) == 1
    finally:
        _events.remove_listener(bad)
    assert "run event listener" in caplog.text


def test_a_plain_cancel_of_a_running_thread_run_is_refused() -> None:
    started, release = threading.Event(), threading.Event()

    @task
    def blocked() -> str:
        started.set()
        assert release.wait(WAIT)
        return "done"

    with ThreadPoolTaskRunner(max_workers=1):
        fut = blocked.submit()
        assert started.wait(WAIT)
        assert fut.cancel() is False  # a thread cannot be interrupted: it goes on
        release.set()
        assert fut.result(timeout=WAIT) == "done"


@task(retries=1)
def _die_once(marker: str) -> str:
    import os
    from pathlib import Path

    path = Path(marker)
    if not path.exists():
        path.write_text("died")
        os._exit(9)
    return "second attempt"


def test_a_process_crash_is_retried_through_the_core(tmp_path: Any) -> None:
    with ProcessPoolTaskRunner(max_workers=1):
        fut = _die_once.submit(str(tmp_path / "marker"))
        assert fut.result(timeout=30) == "second attempt"
    assert fut.state.attempts == 2


@pytest.mark.timeout(30)
def test_a_value_returned_after_a_cancel_does_not_complete_the_run() -> None:
    started = threading.Event()

    @task
    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            return "late"  # swallows the cancellation and returns a value
        return "never"

    async def main() -> None:
        async with ThreadPoolTaskRunner():
            fut = stubborn.submit()
            assert await asyncio.to_thread(started.wait, WAIT)
            assert fut.cancel() is True
            await fut.wait_async(WAIT)
            assert fut.state.is_cancelled()
            with pytest.raises(exceptions.TaskCancelled):
                fut.result()

    asyncio.run(main())
