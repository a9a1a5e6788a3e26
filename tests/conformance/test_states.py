"""Results and states on every runner: values, the task's own exceptions, state types
and names (Pending, Running, Completed, Failed, NotReady), sync and async code."""

from __future__ import annotations

import pytest
from helpers import WAIT, Boom, aident, boom, ident

from asyncflow import State, exceptions, flow
from asyncflow.states import StateType
from asyncflow.task_runners import TaskRunner

from . import tasks

pytestmark = pytest.mark.timeout(30)


def assert_final(state: State, type_: StateType, name: str) -> None:
    assert (state.type, state.name) == (type_, name)
    assert state.is_final()


def test_results_of_sync_async_and_chained_runs(runner: TaskRunner) -> None:
    with runner:
        a = tasks.add.submit(1, 2)
        b = tasks.aadd.submit(a, 10)  # an async task on a sync task's future
        c = ident.submit(b)
        assert c.result(timeout=WAIT) == 13
        assert aident.submit([a, b]).result(timeout=WAIT) == [3, 13]
    for fut in (a, b, c):
        assert_final(fut.state, StateType.COMPLETED, "Completed")
        assert fut.state.is_completed()
        assert fut.done()


def test_a_failure_keeps_its_type_message_and_traceback(runner: TaskRunner) -> None:
    with runner:
        fut = boom.submit("typed")
        with pytest.raises(Boom, match="typed"):
            fut.result(timeout=WAIT)
        returned = fut.result(raise_on_failure=False)
        assert isinstance(returned, Boom)
        exc = fut.exception()
        assert isinstance(exc, Boom)
        assert exc.__traceback__ is not None
    assert_final(fut.state, StateType.FAILED, "Failed")
    assert fut.state.is_failed()


def test_downstream_of_a_failure_is_not_ready(runner: TaskRunner) -> None:
    with runner:
        bad = tasks.fail_with.submit("upstream broke")
        data = ident.submit(bad)
        ordered = ident.submit(1, wait_for=[bad])
        deeper = ident.submit(data)
        for fut in (data, ordered, deeper):
            with pytest.raises(exceptions.UpstreamFailed) as info:
                fut.result(timeout=WAIT)
            assert_final(fut.state, StateType.PENDING, "NotReady")
            assert fut.state.is_pending()
        assert isinstance(info.value.__cause__, (Boom, exceptions.UpstreamFailed))
        with pytest.raises(exceptions.UpstreamFailed) as direct:
            data.result()
        assert isinstance(direct.value.__cause__, Boom)


def test_a_sync_flow_on_the_runner(runner: TaskRunner) -> None:
    @flow(task_runner=runner)
    def pipeline(xs: list[int]) -> list[int]:
        return ident.map(tasks.add.map(xs, xs))

    assert pipeline([1, 2, 3]) == [2, 4, 6]


@pytest.mark.asyncio
async def test_an_async_flow_on_the_runner(runner: TaskRunner) -> None:
    @flow(task_runner=runner)
    async def pipeline(x: int) -> list[int]:
        first = tasks.aadd.submit(x, 1)
        second = tasks.add.submit(first, 1)
        return [await first, await second, *await aident.map([7, 8])]

    assert await pipeline(1) == [2, 3, 7, 8]


@pytest.mark.asyncio
async def test_async_with_runner_and_await(runner: TaskRunner) -> None:
    async with runner:
        a = tasks.aadd.submit(1, 1)
        b = tasks.add.submit(a, 1)
        assert await b == 3
        assert await ident.map([1, 2]) == [1, 2]
        with pytest.raises(Boom):
            await boom.submit("awaited")
