"""Flows as structured scopes, nested flows, the default runner, `with runner:`, the
thread runner's settings and `cancel_all()`, and the async world (the caller's loop,
concurrency, a loop never blocked, blocking that would deadlock)."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
import uvloop
from helpers import WAIT, gate, ident

from asyncflow import exceptions, flow, task
from asyncflow.futures import wait
from asyncflow.task_runners import ThreadPoolTaskRunner


@task
async def aident(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


@task
def current_thread() -> threading.Thread:
    return threading.current_thread()


# ---- flows are structured scopes ----------------------------------------------------------------


def test_sync_flow_does_not_return_while_its_tasks_run() -> None:
    body_returned = threading.Event()
    release = threading.Event()
    events: list[str] = []

    @task
    def slow() -> None:
        assert release.wait(WAIT)
        events.append("task finished")

    @flow
    def pipeline() -> None:
        slow.submit()  # never waited for by the body
        body_returned.set()

    helper = threading.Thread(target=lambda: body_returned.wait(WAIT) and release.set())
    helper.start()
    pipeline()
    events.append("flow returned")
    helper.join()
    assert events == ["task finished", "flow returned"]


@pytest.mark.asyncio
async def test_async_flow_does_not_return_while_its_tasks_run() -> None:
    body_returned = asyncio.Event()
    release = asyncio.Event()
    events: list[str] = []

    @task
    async def slow() -> None:
        await release.wait()
        events.append("task finished")

    @flow
    async def pipeline() -> None:
        slow.submit()
        body_returned.set()

    async def releaser() -> None:
        await body_returned.wait()
        release.set()

    helper = asyncio.create_task(releaser())
    await pipeline()
    events.append("flow returned")
    await helper
    assert events == ["task finished", "flow returned"]


def test_body_error_cancels_pending_runs_and_propagates() -> None:
    release = threading.Event()
    seen: dict[str, Any] = {}

    @task
    async def forever() -> None:
        await asyncio.sleep(3600)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def pipeline() -> None:
        running = gate.submit(release, "finished")
        queued = [ident.submit(i) for i in range(3)]
        # the running task is released once the last queued run is final (cancelled)
        queued[-1].add_done_callback(lambda _f: release.set())
        seen.update(running=running, queued=queued, forever=forever.submit())
        raise KeyError("body broke")

    with pytest.raises(KeyError, match="body broke"):
        pipeline()
    assert [f.state.name for f in seen["queued"]] == ["Cancelled"] * 3
    assert seen["running"].result() == "finished"  # running sync runs finish
    assert seen["forever"].state.is_cancelled()  # async runs are cancelled


@pytest.mark.asyncio
async def test_async_body_error_cancels_async_runs() -> None:
    started = asyncio.Event()
    seen: dict[str, Any] = {}

    @task
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    @flow
    async def pipeline() -> None:
        seen["fut"] = forever.submit()
        await started.wait()
        raise KeyError("async body broke")

    with pytest.raises(KeyError, match="async body broke"):
        await pipeline()
    assert seen["fut"].state.is_cancelled()


def test_unobserved_failures_are_logged_at_flow_exit(caplog: pytest.LogCaptureFixture) -> None:
    @task
    def unseen_failure() -> None:
        raise ValueError("nobody looked")

    @task
    def seen_failure() -> None:
        raise ValueError("looked at")

    @flow
    def pipeline() -> None:
        unseen_failure.submit()
        fut = seen_failure.submit()
        fut.wait()
        assert fut.state.is_failed()

    with caplog.at_level(logging.ERROR, logger="asyncflow"):
        pipeline()
    messages = [r.getMessage() for r in caplog.records]
    assert any("unseen_failure" in m and "nobody looked" in m for m in messages), messages
    assert not any("seen_failure'" in m for m in messages if "unseen" not in m), messages


# ---- nested flows, runner templates, the default runner ------------------------------------------


def test_nested_flow_runs_with_its_own_runner() -> None:
    outer_runner = ThreadPoolTaskRunner(max_workers=2)
    inner_runner = ThreadPoolTaskRunner(max_workers=1)

    @flow(task_runner=inner_runner)
    def inner() -> threading.Thread:
        return current_thread.submit().result()

    @flow(task_runner=outer_runner)
    def outer() -> tuple[threading.Thread, threading.Thread, threading.Thread]:
        before = current_thread.submit().result()
        nested = inner()
        after = current_thread.submit().result()
        return before, nested, after

    before, nested, after = outer()
    assert nested is not before
    assert nested is not after
    # templates are duplicated per run: they themselves are never started
    with pytest.raises(exceptions.RunnerNotStarted):
        outer_runner.submit(ident, {"x": 1})
    assert outer()[0] is not before  # a second run gets a fresh runner


@pytest.mark.asyncio
async def test_nested_async_flows() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    async def inner(x: int) -> int:
        return await aident.submit(x) + await ident.submit(1)

    @flow
    async def outer() -> list[int]:
        return [await inner(1), await inner(10)]

    assert await outer() == [2, 11]


def test_default_runner_outside_flows() -> None:
    fut = current_thread.submit()
    assert fut.result(timeout=WAIT).name.startswith("asyncflow-default")
    assert ident.map([1, 2]).result(timeout=WAIT) == [1, 2]
    assert aident.submit(3).result(timeout=WAIT) == 3


@pytest.mark.asyncio
async def test_default_runner_from_async_code() -> None:
    assert await aident.submit(4) == 4
    assert await ident.submit(5) == 5


# ---- runners used directly ---------------------------------------------------------------------


def test_with_runner_submit_and_map() -> None:
    runner = ThreadPoolTaskRunner(max_workers=2)
    with runner as entered:
        assert entered is runner
        assert runner.submit(ident, {"x": 1}).result() == 1
        assert runner.submit(ident, {"x": 2}, wait_for=[ident.submit(0)]).result() == 2
        assert runner.map(ident, {"x": [1, 2]}).result() == [1, 2]
        assert ident.submit(3).result() == 3  # `.submit()` goes to the entered runner
        with pytest.raises(RuntimeError, match="already started"):
            runner.__enter__()
    # not started any more
    with pytest.raises(exceptions.RunnerNotStarted):
        runner.submit(ident, {"x": 1})


@pytest.mark.asyncio
async def test_async_with_runner_submit_and_map() -> None:
    async with ThreadPoolTaskRunner(max_workers=2) as runner:
        assert await runner.submit(ident, {"x": 1}) == 1
        assert await runner.submit(aident, {"x": 2}) == 2
        assert await runner.map(aident, {"x": [3, 4]}) == [3, 4]


def test_runner_not_started_raises_runtime_error() -> None:
    runner = ThreadPoolTaskRunner(max_workers=1)
    with pytest.raises(exceptions.RunnerNotStarted, match="ident") as info:
        runner.submit(ident, {"x": 1})
    assert isinstance(info.value, RuntimeError)
    assert "with runner" in str(info.value)
    with pytest.raises(RuntimeError):
        runner.map(ident, {"x": [1, 2]})


@pytest.mark.parametrize("not_a_task", [len, lambda x: x, "ident", None])
def test_runner_rejects_non_tasks(not_a_task: Any) -> None:
    with ThreadPoolTaskRunner(max_workers=1) as runner:
        with pytest.raises(TypeError, match="task"):
            runner.submit(not_a_task, {"x": 1})
        with pytest.raises(TypeError, match="task"):
            runner.map(not_a_task, {"x": [1]})


def test_thread_runner_max_workers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS", "3")
    runner = ThreadPoolTaskRunner()
    assert runner.max_workers == 3
    assert runner.duplicate().max_workers == 3
    assert ThreadPoolTaskRunner(max_workers=5).max_workers == 5  # explicit wins
    monkeypatch.delenv("ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS")
    default = ThreadPoolTaskRunner().max_workers
    assert 1 <= default <= 32
    assert runner.max_workers == 3  # read when created, not later
    monkeypatch.setenv("ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS", "zero")
    with pytest.raises(ValueError, match="ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"):
        ThreadPoolTaskRunner()


def test_cancel_all_cancels_queued_runs_and_lets_running_ones_finish() -> None:
    release = threading.Event()
    started = threading.Event()

    @task
    def running() -> str:
        started.set()
        assert release.wait(WAIT)
        return "done"

    with ThreadPoolTaskRunner(max_workers=1) as runner:
        first = running.submit()
        assert started.wait(WAIT)
        queued = [ident.submit(i) for i in range(3)]
        assert runner.cancel_all() == 3
        assert runner.cancel_all() == 0
        release.set()
        assert first.result() == "done"
    assert [f.state.name for f in queued] == ["Cancelled"] * 3


# ---- the async world ---------------------------------------------------------------------------


@task
async def loop_of_task() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


@flow
async def loops_flow() -> tuple[Any, Any, Any]:
    body_loop = asyncio.get_running_loop()
    return body_loop, await loop_of_task.submit(), await loop_of_task()


async def _check_runs_on_callers_loop() -> None:
    caller = asyncio.get_running_loop()
    body_loop, submitted_loop, direct_loop = await loops_flow()
    assert body_loop is caller
    assert submitted_loop is caller
    assert direct_loop is caller


def test_async_flow_runs_on_the_callers_loop_under_asyncio_run() -> None:
    asyncio.run(_check_runs_on_callers_loop())


@pytest.mark.asyncio
async def test_async_flow_runs_on_the_callers_loop_under_pytest_asyncio() -> None:
    await _check_runs_on_callers_loop()


def test_async_flow_runs_on_the_callers_loop_under_uvloop() -> None:
    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        await _check_runs_on_callers_loop()

    uvloop.run(main())


@pytest.mark.asyncio
@pytest.mark.timeout(20)
async def test_async_tasks_run_concurrently_on_the_loop() -> None:
    # A barrier for all 100: no run may finish before every one has started, which
    # only concurrent runs can do (run one at a time, the first waits for good).
    arrived = 0
    everyone = asyncio.Event()

    @task
    async def meet(i: int) -> int:
        nonlocal arrived
        arrived += 1
        if arrived == 100:
            everyone.set()
        await everyone.wait()
        return i

    @flow
    async def many() -> list[int]:
        return await meet.map(range(100))

    assert await asyncio.wait_for(many(), WAIT) == list(range(100))


@pytest.mark.asyncio
async def test_sync_tasks_never_block_the_loop() -> None:
    release = threading.Event()
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    ticks = 0

    @task
    def blocking() -> str:
        loop.call_soon_threadsafe(started.set)
        assert release.wait(WAIT)
        return "unblocked"

    @flow
    async def pipeline() -> str:
        nonlocal ticks
        fut = blocking.submit()
        await started.wait()
        while ticks < 20:  # the loop keeps ticking while the sync task blocks
            await asyncio.sleep(0)
            ticks += 1
        assert not fut.done()
        release.set()
        return await fut

    assert await pipeline() == "unblocked"
    assert ticks == 20


@pytest.mark.asyncio
async def test_result_on_the_loop_that_must_run_the_task_raises() -> None:
    release = asyncio.Event()

    @task
    async def held() -> int:
        await release.wait()
        return 1

    @flow
    async def pipeline() -> int:
        fut = held.submit()
        with pytest.raises(exceptions.WouldDeadlock, match="await") as info:
            fut.result()
        assert isinstance(info.value, RuntimeError)
        with pytest.raises(RuntimeError, match="await"):
            fut.wait()
        with pytest.raises(RuntimeError, match="await"):
            fut.result(timeout=1)
        downstream = ident.submit(fut)  # waits on the loop's run: same problem
        with pytest.raises(RuntimeError, match="await"):
            downstream.result()
        release.set()
        return await downstream

    assert await pipeline() == 1


@pytest.mark.asyncio
async def test_sync_flow_called_where_a_loop_runs_still_blocks() -> None:
    # e.g. a notebook: the sync flow's async tasks run on the engine loop, not this one
    @flow
    def pipeline() -> list[int]:
        fut = aident.submit(1)
        done, _ = wait([fut])
        assert done == {fut}
        return [fut.result(), ident.submit(2).result()]

    assert pipeline() == [1, 2]
