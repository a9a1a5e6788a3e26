"""Retries (delays, retry_condition_fn, Retrying, attempts), timeouts of tasks and
flows, and state hooks, on every runner. The engine applies these policies in the
caller's process whatever the runner, so retry conditions, delay callables and hooks
may be closures over the test's own objects."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers import WAIT, FileGate, Tally, boom, ident, wait_gone

from asyncflow import State, TaskFuture, exceptions, flow, task
from asyncflow._core import _events
from asyncflow.task_runners import TaskRunner

from . import tasks
from .registry import Capabilities

pytestmark = pytest.mark.timeout(30)

# A process run's deadline counts from when it is handed to a worker, including the
# worker's start-up: long enough for a started run to announce itself first.
TIMEOUT = 0.5


def call_times(tally: Tally) -> list[float]:
    return [float(line) for line in tally.lines()]


def test_retries_pass_through_retrying_with_their_delays(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path
) -> None:
    tally = Tally(tmp_path / "calls")
    seen: list[str] = []
    delays = [0.05, 0.1]

    def on_state(fut: TaskFuture[Any], state: State) -> None:  # every state change
        seen.append(state.name)

    def delay(attempt: int) -> float:  # runs in this process, once Retrying is visible
        seen.append(f"delay {attempt}")
        return delays[attempt - 1]

    flaky = tasks.fail_until.with_options(retries=3, retry_delay_seconds=delay)
    _events.add_listener(on_state)
    try:
        with runner:
            fut = flaky.submit(tally, 3)
            assert fut.result(timeout=WAIT) == 3
    finally:
        _events.remove_listener(on_state)
    if caps.policies_in_caller:
        assert seen == [
            *("Running", "Retrying", "delay 1"),
            *("Running", "Retrying", "delay 2"),
            *("Running", "Completed"),
        ]
    else:  # retried where it executes: the delays ran there, on a copy of `delay`
        assert "delay 1" not in seen, seen
        assert seen[-1] == "Completed", seen
    assert fut.state.name == "Completed"
    assert fut.state.attempts == 3
    times = call_times(tally)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(gap >= d * 0.95 for gap, d in zip(gaps, delays, strict=True)), gaps


def test_retries_exhausted_fail_with_the_last_error(runner: TaskRunner, tmp_path: Path) -> None:
    tally = Tally(tmp_path / "calls")
    flaky = tasks.fail_until.with_options(retries=2, retry_delay_seconds=[0, 0.01])
    with runner:
        fut = flaky.submit(tally, 10)
        with pytest.raises(ConnectionError, match="attempt 3"):
            fut.result(timeout=WAIT)
    assert fut.state.is_failed()
    assert fut.state.attempts == 3
    assert len(tally) == 3


def test_retry_condition_sees_the_task_and_the_exception(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path
) -> None:
    seen: list[tuple[Any, type[BaseException]]] = []

    def only_connection_errors(tsk: Any, exc: BaseException) -> bool:
        seen.append((tsk, type(exc)))
        return isinstance(exc, ConnectionError)

    picky = tasks.fail_until.with_options(retries=5, retry_condition_fn=only_connection_errors)
    with runner:
        retried = picky.submit(Tally(tmp_path / "a"), 2, "ConnectionError")
        not_retried = picky.submit(Tally(tmp_path / "b"), 2, "ValueError")
        assert retried.result(timeout=WAIT) == 2
        with pytest.raises(ValueError, match="attempt 1"):
            not_retried.result(timeout=WAIT)
    assert not_retried.state.attempts == 1
    if not caps.policies_in_caller:  # it ran where the task executes, on a copy
        assert seen == []
        return
    assert sorted(seen, key=lambda s: s[1].__name__) == [
        (picky, ConnectionError),
        (picky, ValueError),
    ]


def test_async_task_retries(runner: TaskRunner, tmp_path: Path) -> None:
    flaky = tasks.afail_until.with_options(retries=1)
    with runner:
        fut = flaky.submit(Tally(tmp_path / "calls"), 2)
        assert fut.result(timeout=WAIT) == 2
    assert fut.state.attempts == 2


def test_a_sync_run_past_its_timeout(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path
) -> None:
    started, release, finished = (FileGate(tmp_path / n) for n in ("s", "r", "f"))
    slow = tasks.blocker.with_options(timeout_seconds=TIMEOUT)
    with runner:
        fut = slow.submit(started, release, finished)
        worker = int(started.wait())
        with pytest.raises(exceptions.TaskTimeout, match="'blocker'") as info:
            fut.result(timeout=WAIT)
        assert isinstance(info.value, TimeoutError)
        assert (fut.state.name, fut.state.is_failed()) == ("TimedOut", True)
        if caps.kills_on_timeout:
            assert wait_gone({worker}) == set()
        else:  # documented: the function cannot be interrupted and runs on
            release.open()
            finished.wait()
        assert ident.submit("next").result(timeout=WAIT) == "next"
        release.open()
    assert fut.state.name == "TimedOut"  # its late result is discarded


def test_an_async_run_past_its_timeout(runner: TaskRunner, tmp_path: Path) -> None:
    started, release = FileGate(tmp_path / "s"), FileGate(tmp_path / "r")
    slow = tasks.ablocker.with_options(timeout_seconds=TIMEOUT)
    with runner:
        fut = slow.submit(started, release)
        started.wait()
        with pytest.raises(exceptions.TaskTimeout, match="'ablocker'"):
            fut.result(timeout=WAIT)
        assert fut.state.name == "TimedOut"
        release.open()
        assert ident.submit("next").result(timeout=WAIT) == "next"


def test_a_flow_timeout_stops_its_runs(
    runner: TaskRunner, caps: Capabilities, tmp_path: Path
) -> None:
    started, release = FileGate(tmp_path / "s"), FileGate(tmp_path / "r")
    futures: list[TaskFuture[int]] = []
    pids: list[int] = []

    @flow(timeout_seconds=TIMEOUT * 2, task_runner=runner)
    def slow_flow() -> None:
        futures.append(tasks.blocker.submit(started, release))
        pids.append(int(started.wait()))
        futures[0].result()

    with pytest.raises(exceptions.TaskTimeout, match="slow_flow"):
        slow_flow()
    release.open()
    assert futures[0].state.name == "TimedOut"
    if caps.kills_on_timeout:
        assert wait_gone(set(pids)) == set()


def test_a_zero_timeout_is_rejected_at_decoration() -> None:
    with pytest.raises(ValueError, match="timeout_seconds"):
        task(timeout_seconds=0)


def test_hooks_get_the_task_and_its_final_state(
    runner: TaskRunner, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, str, str]] = []

    def on_completion(t: Any, s: State) -> None:
        calls.append(("completion", t.name, s.name))

    def on_failure(t: Any, s: State) -> None:
        calls.append(("failure", t.name, s.name))

    def broken(t: Any, s: State) -> None:
        raise RuntimeError("hook bug")

    hooks: dict[str, Any] = {"on_completion": [on_completion, broken], "on_failure": [on_failure]}
    ok, bad = ident.with_options(**hooks), boom.with_options(**hooks)
    with caplog.at_level(logging.ERROR, logger="asyncflow"), runner:
        assert ok.submit(1).result(timeout=WAIT) == 1
        bad_future = bad.submit("hooked")
        bad_future.wait(timeout=WAIT)
    assert sorted(calls) == [("completion", "ident", "Completed"), ("failure", "boom", "Failed")]
    assert "hook bug" in caplog.text
    assert bad_future.state.is_failed()  # a hook does not change the outcome


def test_prefect_form_hooks_get_a_run_record(runner: TaskRunner) -> None:
    """Issue 15: `hook(task, task_run, state)` on every runner, with one record per run."""
    seen: list[tuple[str, Any, State]] = []

    def on_running(t: Any, run: Any, s: State) -> None:
        seen.append(("running", run, s))

    def on_completion(t: Any, run: Any, s: State) -> None:
        seen.append(("completion", run, s))

    hooked = ident.with_options(on_running=[on_running], on_completion=[on_completion])
    with runner:
        assert hooked.submit(7).result(timeout=WAIT) == 7
    (_, started, running), (_, ended, completed) = seen
    assert (running.name, completed.name) == ("Running", "Completed")
    assert started.id == ended.id
    assert started.task_name == ended.task_name == "ident"
    assert (ended.parameters, ended.run_count) == ({"x": 7}, 1)
    assert started.end_time is None
    assert ended.start_time == started.start_time
    assert ended.start_time is not None
    assert ended.end_time is not None
    assert ended.start_time <= ended.end_time
