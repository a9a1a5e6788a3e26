"""Flow retries (issue 15): `@flow(retries=N, retry_delay_seconds=...)` re-runs the
whole body after an exception or a failed returned future, sync and async, nested;
each attempt has a runner of its own; hooks see the final state only; a flow's
timeout bounds each attempt and is not retried; delays follow the task retry rule."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import WAIT

import asyncflow._flows as flows_module
from asyncflow import State, TaskFuture, flow, task
from asyncflow.exceptions import TaskTimeout
from asyncflow.runs import FlowRun
from asyncflow.task_runners import ThreadPoolTaskRunner
from asyncflow.tasks import exponential_backoff


class Flaky:
    """Fails its first `failures` calls with ValueError, then returns the call count."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise ValueError(f"attempt {self.calls} failed")
        return self.calls


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry delays flows wait (recorded, not slept)."""
    asked: list[float] = []

    async def no_sleep_async(seconds: float) -> None:
        asked.append(seconds)

    monkeypatch.setattr(flows_module, "_sleep", asked.append)
    monkeypatch.setattr(flows_module, "_sleep_async", no_sleep_async)
    return asked


# ---- the body re-runs ------------------------------------------------------------------------


def test_a_sync_flow_reruns_its_body_until_it_succeeds(delays: list[float]) -> None:
    body = Flaky(failures=2)

    @flow(retries=2)
    def pipeline() -> int:
        return body()

    assert pipeline() == 3
    assert body.calls == 3
    assert delays == [0.0, 0.0]


@pytest.mark.asyncio
async def test_an_async_flow_reruns_its_body_until_it_succeeds(delays: list[float]) -> None:
    body = Flaky(failures=2)

    @flow(retries=3)
    async def pipeline() -> int:
        await asyncio.sleep(0)
        return body()

    assert await pipeline() == 3
    assert body.calls == 3


def test_when_retries_run_out_the_last_error_is_raised(delays: list[float]) -> None:
    body = Flaky(failures=5)

    @flow(retries=2)
    def pipeline() -> int:
        return body()

    with pytest.raises(ValueError, match="attempt 3 failed"):
        pipeline()
    assert body.calls == 3


def test_no_retries_means_one_attempt() -> None:
    body = Flaky(failures=1)

    @flow
    def pipeline() -> int:
        return body()

    with pytest.raises(ValueError, match="attempt 1 failed"):
        pipeline()
    assert body.calls == 1


def test_a_failed_returned_future_is_retried(delays: list[float]) -> None:
    flaky = Flaky(failures=1)

    @task
    def step() -> int:
        return flaky()

    @flow(retries=1)
    def pipeline() -> Any:  # a returned future comes back as its result
        return step.submit()  # failed on attempt 1: the flow fails with its error

    assert pipeline() == 2
    assert flaky.calls == 2


@pytest.mark.asyncio
async def test_an_async_flow_retries_a_failed_returned_future(delays: list[float]) -> None:
    flaky = Flaky(failures=1)

    @task
    async def step() -> int:
        return flaky()

    @flow(retries=1)
    async def pipeline() -> Any:
        return [step.submit()]  # a returned list of futures comes back as results

    assert await pipeline() == [2]
    assert flaky.calls == 2


def test_a_base_exception_is_not_retried(delays: list[float]) -> None:
    calls: list[int] = []

    @flow(retries=3)
    def pipeline() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline()
    assert calls == [1]
    assert delays == []


# ---- the delay rule is the task retry rule ---------------------------------------------------


def test_a_list_of_delays_gives_one_per_retry(delays: list[float]) -> None:
    body = Flaky(failures=3)

    @flow(retries=3, retry_delay_seconds=[1, 2, 4])
    def pipeline() -> int:
        return body()

    assert pipeline() == 4
    assert delays == [1.0, 2.0, 4.0]


@pytest.mark.asyncio
async def test_exponential_backoff_spaces_async_attempts(delays: list[float]) -> None:
    body = Flaky(failures=3)

    @flow(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))
    async def pipeline() -> int:
        return body()

    assert await pipeline() == 4
    assert delays == [10.0, 20.0, 40.0]


def test_a_callable_of_the_attempt_number(delays: list[float]) -> None:
    body = Flaky(failures=2)

    @flow(retries=2, retry_delay_seconds=lambda attempt: attempt * 1.5)
    def pipeline() -> int:
        return body()

    assert pipeline() == 3
    assert delays == [1.5, 3.0]


@pytest.mark.timeout(10)
def test_the_delay_is_really_waited(monkeypatch: pytest.MonkeyPatch) -> None:
    body = Flaky(failures=1)
    waited: list[float] = []
    real_sleep = flows_module._sleep

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(flows_module, "_sleep", sleep)

    @flow(retries=1, retry_delay_seconds=0.01)
    def pipeline() -> int:
        return body()

    assert pipeline() == 2
    assert waited == [0.01]


# ---- each attempt is a scope of its own ------------------------------------------------------


@pytest.mark.timeout(20)
def test_the_runs_of_a_failed_attempt_are_drained_before_the_next_attempt() -> None:
    started = threading.Event()
    second_attempt = threading.Event()
    release = threading.Event()
    hold_finished = threading.Event()
    seen: list[object] = []
    attempts = 0

    @task
    def hold() -> None:
        started.set()
        assert release.wait(WAIT)
        hold_finished.set()

    @task
    def never() -> None:
        seen.append("never ran")

    @flow(retries=1, task_runner=ThreadPoolTaskRunner(max_workers=1))
    def pipeline() -> str:
        nonlocal attempts
        attempts += 1
        seen.append(asyncflow_current_runner())
        if attempts == 1:
            hold.submit()
            queued = never.submit()  # queued behind `hold` on the one worker
            seen.append(queued)
            assert started.wait(WAIT)
            raise ValueError("attempt 1")
        second_attempt.set()
        assert hold_finished.is_set(), "attempt 2 began while attempt 1's run still ran"
        return "done"

    def releaser() -> None:
        # A flow that did not drain attempt 1 would start attempt 2 now and fail it.
        second_attempt.wait(0.2)
        release.set()

    helper = threading.Thread(target=releaser)
    helper.start()
    try:
        assert pipeline() == "done"
    finally:
        release.set()
        helper.join()
    first_runner, queued, second_runner = seen
    assert first_runner is not second_runner  # a fresh runner per attempt
    assert isinstance(queued, TaskFuture)
    assert queued.state.is_cancelled()
    assert "never ran" not in seen


def asyncflow_current_runner() -> object:
    from asyncflow._runners._current import current_runner

    return current_runner()


# ---- hooks and the run record ----------------------------------------------------------------


def test_hooks_see_the_final_state_and_count_the_attempts(delays: list[float]) -> None:
    body = Flaky(failures=2)
    finals: list[tuple[str, int]] = []
    running: list[int] = []

    def on_failure(flow_: Any, flow_run: FlowRun, state: State) -> None:
        finals.append(("failure", flow_run.run_count))

    def on_completion(flow_: Any, flow_run: FlowRun, state: State) -> None:
        finals.append(("completion", flow_run.run_count))

    def on_running(flow_: Any, flow_run: FlowRun, state: State) -> None:
        running.append(flow_run.run_count)

    @flow(
        retries=3, on_failure=[on_failure], on_completion=[on_completion], on_running=[on_running]
    )
    def pipeline() -> int:
        return body()

    assert pipeline() == 3
    assert finals == [("completion", 3)]
    assert running == [1, 2, 3]


@pytest.mark.asyncio
async def test_an_exhausted_async_flow_fails_once_with_its_attempts(delays: list[float]) -> None:
    body = Flaky(failures=9)
    finals: list[tuple[str, int, str]] = []

    @flow(retries=2)
    async def pipeline() -> int:
        return body()

    @pipeline.on_failure
    def failed(flow_: Any, flow_run: FlowRun, state: State) -> None:
        finals.append((state.type.value, flow_run.run_count, state.message or ""))

    with pytest.raises(ValueError, match="attempt 3"):
        await pipeline()
    assert finals == [("FAILED", 3, "ValueError: attempt 3 failed")]


# ---- timeouts --------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_a_timed_out_attempt_is_final() -> None:
    attempts: list[int] = []

    @flow(retries=3, timeout_seconds=0.05)
    async def pipeline() -> None:
        attempts.append(1)
        await asyncio.Event().wait()  # never set: the attempt's deadline ends it

    with pytest.raises(TaskTimeout, match=r"exceeded its timeout of 0\.05 s"):
        await pipeline()
    assert attempts == [1]


@pytest.mark.timeout(10)
def test_a_sync_flow_timed_out_attempt_is_final() -> None:
    attempts: list[int] = []
    release = threading.Event()

    @task
    def block() -> None:
        release.wait(WAIT)  # a thread cannot be stopped: the timed-out run is abandoned

    @flow(retries=2, timeout_seconds=0.05)
    def pipeline() -> None:
        attempts.append(1)
        block.submit().result()

    try:
        with pytest.raises(TaskTimeout):
            pipeline()
    finally:
        release.set()
    assert attempts == [1]


@pytest.mark.timeout(10)
def test_the_timeout_bounds_each_attempt_not_the_retries() -> None:
    body = Flaky(failures=1)

    # Attempt 1 fails at once, the delay is longer than the timeout, attempt 2 is quick:
    # a timeout over the whole call would end it during the delay.
    @flow(retries=1, retry_delay_seconds=0.3, timeout_seconds=0.2)
    def pipeline() -> int:
        return body()

    assert pipeline() == 2


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_a_task_timeout_inside_the_body_is_retried(delays: list[float]) -> None:
    attempts: list[int] = []

    @task(timeout_seconds=0.05)
    async def slow() -> None:
        await asyncio.Event().wait()

    @flow(retries=1)
    async def pipeline() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            await slow()  # the task's timeout, not the flow's: an ordinary failure
        return "second attempt"

    assert await pipeline() == "second attempt"
    assert attempts == [1, 1]


@pytest.mark.asyncio
@pytest.mark.timeout(10)
async def test_cancelling_an_async_flow_in_its_retry_delay_ends_it() -> None:
    attempts: list[int] = []
    failed_once = asyncio.Event()

    @flow(retries=5, retry_delay_seconds=WAIT * 3)
    async def pipeline() -> None:
        attempts.append(1)
        failed_once.set()
        raise ValueError("again")

    call = asyncio.ensure_future(pipeline())
    await failed_once.wait()
    await asyncio.sleep(0)  # the flow is in its delay now
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert attempts == [1]


# ---- nested flows ----------------------------------------------------------------------------


def test_a_nested_flow_retries_inside_its_parent(delays: list[float]) -> None:
    child_body = Flaky(failures=1)
    parent_calls: list[int] = []

    @flow(retries=1)
    def child() -> int:
        return child_body()

    @flow
    def parent() -> int:
        parent_calls.append(1)
        return child() * 10

    assert parent() == 20
    assert child_body.calls == 2
    assert parent_calls == [1]


@pytest.mark.asyncio
async def test_a_parent_retry_runs_its_nested_flow_again(delays: list[float]) -> None:
    child_body = Flaky(failures=1)

    @flow
    async def child() -> int:
        return child_body()

    @flow(retries=1)
    async def parent() -> int:
        return await child()

    assert await parent() == 2
    assert child_body.calls == 2


# ---- options ---------------------------------------------------------------------------------


def test_bad_retry_options_fail_at_decoration_naming_the_flow() -> None:
    with pytest.raises(ValueError, match=r"@flow: retries must be >= 0, got -1"):
        flow(retries=-1)
    with pytest.raises(ValueError, match=r"flow 'etl': retry_delay_seconds must be a finite"):
        flow(name="etl", retry_delay_seconds=-1)
    with pytest.raises(TypeError, match=r"flow 'load': retries must be an int, got float"):
        flow(name="load", retries=1.5)  # type: ignore[call-overload]  # a float: the point

    with pytest.raises(ValueError, match=r"retry_delay_seconds must not be an empty list"):
        flow(retries=1, retry_delay_seconds=[])


def test_with_options_changes_the_retries(delays: list[float]) -> None:
    body = Flaky(failures=1)

    @flow
    def pipeline() -> int:
        return body()

    retried = pipeline.with_options(retries=1, retry_delay_seconds=[7])
    assert (retried.retries, retried.retry_delay_seconds) == (1, [7.0])
    assert retried() == 2
    assert delays == [7.0]
