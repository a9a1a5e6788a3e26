"""`TaskFuture` and `FutureList` as sync and async handles; `wait` and `as_completed`;
states and their predicates."""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import WAIT, Boom, boom, gate, ident

from asyncflow import FutureList, State, TaskFuture, exceptions, task
from asyncflow.futures import as_completed, wait
from asyncflow.states import StateType
from asyncflow.task_runners import ThreadPoolTaskRunner


@task
async def aident(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event set at teardown too, so a failing test cannot leave a worker blocked."""
    event = threading.Event()
    yield event
    event.set()


# ---- result / exception / done ----------------------------------------------------------------


def test_result_returns_the_value_and_done_reports_it() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        fut = ident.submit(41)
        assert fut.result() == 41
        assert fut.done()
        assert fut.exception() is None
        assert fut.result(timeout=0) == 41  # final: no wait, even with a zero timeout


def test_result_reraises_the_tasks_own_exception_with_its_traceback() -> None:
    class Custom(Exception):
        pass

    @task
    def fails_deep() -> None:
        raise Custom("deep")

    with ThreadPoolTaskRunner(max_workers=1):
        fut = fails_deep.submit()
        with pytest.raises(Custom, match="deep") as info:
            fut.result()
        err = fut.exception()
    assert err is info.value
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "fails_deep" in frames  # the task's own frame is kept
    assert fut.result(raise_on_failure=False) is err
    assert fut.state.is_failed()
    assert fut.state.message == "Custom: deep"


def test_result_timeout_raises_and_wait_does_not(release: threading.Event) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        fut = gate.submit(release, "late")
        with pytest.raises(TimeoutError, match="gate"):
            fut.result(timeout=0.01)
        with pytest.raises(TimeoutError):
            fut.exception(timeout=0.01)
        assert fut.wait(timeout=0.01) is None  # returns, does not raise
        assert fut.wait(timeout=0) is None
        assert not fut.done()
        release.set()
        fut.wait()
        assert fut.done()
        assert fut.result() == "late"


# Every entry point that takes a timeout applies the one rule of _core/_validate.py.
SYNC_TIMEOUT_CALLS: dict[str, Any] = {
    "result": lambda fut, t: fut.result(timeout=t),
    "wait": lambda fut, t: fut.wait(timeout=t),
    "exception": lambda fut, t: fut.exception(timeout=t),
    "FutureList.result": lambda fut, t: FutureList([fut]).result(timeout=t),
    "FutureList.wait": lambda fut, t: FutureList([fut]).wait(timeout=t),
    "wait()": lambda fut, t: wait([fut], timeout=t),
    "as_completed": lambda fut, t: list(as_completed([fut], timeout=t)),
}
BAD_TIMEOUTS = [
    (-1, ValueError),
    (-0.001, ValueError),
    (float("nan"), ValueError),
    (float("-inf"), ValueError),
    ("1", TypeError),
    (True, TypeError),
]


@pytest.mark.parametrize("call", list(SYNC_TIMEOUT_CALLS.values()), ids=list(SYNC_TIMEOUT_CALLS))
@pytest.mark.parametrize(("bad", "error"), BAD_TIMEOUTS, ids=repr)
def test_bad_timeouts_are_asyncflows_own_errors(
    call: Any, bad: Any, error: type[Exception], release: threading.Event
) -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        pending = gate.submit(release)
        finished = ident.submit(1)
        finished.wait(WAIT)
        for fut in (pending, finished):  # checked before looking at the state
            with pytest.raises(error, match="timeout") as info:
                call(fut, bad)
            assert repr(bad) in str(info.value)
            assert "threading" not in "".join(traceback.format_tb(info.value.__traceback__))
        release.set()


def _release_once_blocked(fut: TaskFuture[Any], release: threading.Event) -> threading.Thread:
    """Set `release` once a caller waits on `fut` (its wake-up callback is registered),
    so the wait under test really blocks instead of finding the run already final."""

    def run() -> None:
        for _ in range(int(WAIT * 1000)):
            if fut._callbacks:
                break
            threading.Event().wait(0.001)
        release.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("call", list(SYNC_TIMEOUT_CALLS.values()), ids=list(SYNC_TIMEOUT_CALLS))
@pytest.mark.parametrize("forever", [float("inf"), 1e300], ids=["inf", "1e300"])
def test_an_infinite_timeout_waits_without_limit(
    call: Any, forever: float, release: threading.Event
) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        fut = gate.submit(release, "late")
        helper = _release_once_blocked(fut, release)
        call(fut, forever)
        helper.join(WAIT)
        assert fut.done()
        assert fut.result(timeout=forever) == "late"


ASYNC_TIMEOUT_CALLS: dict[str, Any] = {
    "wait_async": lambda fut, t: fut.wait_async(timeout=t),
    "await wait()": lambda fut, t: _await(wait([fut], timeout=t)),
    "async as_completed": lambda fut, t: _collect(as_completed([fut], timeout=t)),
}


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _collect(iterator: Any) -> list[Any]:
    return [fut async for fut in iterator]


@pytest.mark.asyncio
@pytest.mark.parametrize("call", list(ASYNC_TIMEOUT_CALLS.values()), ids=list(ASYNC_TIMEOUT_CALLS))
async def test_timeouts_in_async_code(call: Any) -> None:
    release = asyncio.Event()

    @task
    async def waits() -> str:
        await release.wait()
        return "done"

    async with ThreadPoolTaskRunner(max_workers=1):
        fut = waits.submit()
        for bad, error in BAD_TIMEOUTS:
            with pytest.raises(error, match="timeout"):
                await call(fut, bad)
        waiting = asyncio.ensure_future(call(fut, float("inf")))
        await asyncio.sleep(0)  # let it start waiting (ordering only: one loop turn)
        assert not waiting.done()
        release.set()
        await asyncio.wait_for(waiting, WAIT)
        assert await fut == "done"


# ---- cancel ------------------------------------------------------------------------------------


def test_cancel_a_queued_run(release: threading.Event) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        blocker = gate.submit(release)
        queued = ident.submit("never")
        assert queued.state.is_pending()
        assert queued.cancel() is True
        assert queued.cancel() is True  # already cancelled: still True
        assert queued.done()
        assert queued.state.is_cancelled()
        assert queued.state.name == "Cancelled"
        assert blocker.cancel() is False  # a running sync run cannot be cancelled
        release.set()
        assert blocker.result() is None
    assert blocker.cancel() is False  # completed
    with pytest.raises(exceptions.TaskCancelled):
        queued.result()
    with pytest.raises(exceptions.TaskCancelled):
        queued.exception()
    assert isinstance(queued.result(raise_on_failure=False), exceptions.TaskCancelled)


@pytest.mark.asyncio
async def test_cancel_a_running_async_run() -> None:
    started = asyncio.Event()

    @task
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async with ThreadPoolTaskRunner(max_workers=1):
        fut = forever.submit()
        await asyncio.wait_for(started.wait(), WAIT)
        assert fut.state.is_running()
        assert fut.cancel() is True
        await fut.wait_async()
        assert fut.state.is_cancelled()
        with pytest.raises(exceptions.TaskCancelled):
            await fut


# ---- done callbacks ----------------------------------------------------------------------------


def test_done_callbacks_before_and_after_completion(release: threading.Event) -> None:
    calls: list[tuple[str, object]] = []
    with ThreadPoolTaskRunner(max_workers=1):
        fut = gate.submit(release, 7)
        fut.add_done_callback(lambda f: calls.append(("before", f)))
        assert calls == []
        release.set()
        fut.wait()
    assert calls == [("before", fut)]
    fut.add_done_callback(lambda f: calls.append(("after", f)))  # called at once, here
    assert calls == [("before", fut), ("after", fut)]


def test_a_raising_callback_is_logged_and_the_others_still_run(
    release: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def bad(_f: object) -> None:
        raise RuntimeError("callback broke")

    with ThreadPoolTaskRunner(max_workers=1):
        fut = gate.submit(release)
        fut.add_done_callback(lambda f: calls.append("first"))
        fut.add_done_callback(bad)
        fut.add_done_callback(lambda f: calls.append("third"))
        with caplog.at_level(logging.ERROR, logger="asyncflow"):
            release.set()
            fut.wait()
            # and one added after completion that raises: logged, not raised here
            fut.add_done_callback(bad)
            fut.add_done_callback(lambda f: calls.append("fourth"))
    assert calls == ["first", "third", "fourth"]
    logged = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(logged) == 2
    for record in logged:
        assert "gate" in record.getMessage()
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)


# ---- async handles ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_await_future_and_future_list() -> None:
    async with ThreadPoolTaskRunner(max_workers=2):
        one = ident.submit(1)
        two = aident.submit(2)
        assert await one == 1
        assert await two == 2
        many = aident.map([3, 4, 5])
        assert await many == [3, 4, 5]
        failed = boom.submit("async boom")
        with pytest.raises(Boom, match="async boom"):
            await failed


@pytest.mark.asyncio
async def test_future_awaited_on_another_loop_than_the_one_running_it() -> None:
    # A sync scope sends async runs to the engine loop; this test's loop awaits them.
    with ThreadPoolTaskRunner(max_workers=1):
        fut = aident.submit("cross-loop")
    assert await fut == "cross-loop"


# ---- FutureList --------------------------------------------------------------------------------


def test_future_list_is_a_real_list() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        f1, f2, f3 = ident.submit(1), ident.submit(2), ident.submit(3)
        futures = FutureList([f1, f2])
        assert isinstance(futures, list)
        futures.append(f3)
        assert len(futures) == 3
        assert futures[0] is f1
        assert futures.result() == [1, 2, 3]
        futures.wait()
        assert all(f.done() for f in futures)
        empty: FutureList[int] = FutureList()
        assert empty.result() == []
        mapped = ident.map([4, 5])
        assert type(mapped) is FutureList
        assert mapped.result() == [4, 5]


def test_future_list_timeouts(release: threading.Event) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        futures = FutureList([ident.submit(0), gate.submit(release, 1), ident.submit(2)])
        with pytest.raises(TimeoutError, match=r"^2 \(of 3\) futures unfinished"):
            futures.result(timeout=0.01)
        assert futures.wait(timeout=0.01) is None
        release.set()
        assert futures.result(timeout=WAIT) == [0, 1, 2]


def test_future_list_result_raise_on_failure_false() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        futures = FutureList([ident.submit(1), boom.submit("x")])
        with pytest.raises(Boom, match="x"):
            futures.result()
        values = futures.result(raise_on_failure=False)
    assert values[0] == 1
    assert isinstance(values[1], Boom)


# ---- wait / as_completed --------------------------------------------------------------------


def test_wait_sync_returns_done_and_not_done(release: threading.Event) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        blocker = gate.submit(release)
        quick = ident.submit(1)  # queued behind the blocker
        done, not_done = wait([blocker, quick], timeout=0.01)  # never raises
        assert done == set()
        assert not_done == {blocker, quick}
        release.set()
        done, not_done = wait([blocker, quick])
        assert done == {blocker, quick}
        assert not_done == set()
        result = wait([quick])
        assert result.done == {quick}
        assert result.not_done == set()


def test_wait_rejects_non_futures() -> None:
    with pytest.raises(TypeError, match="TaskFuture"):
        wait([1])  # type: ignore[list-item]  # the point of the test
    with pytest.raises(TypeError, match="TaskFuture"):
        as_completed(["x"])  # type: ignore[list-item]  # the point of the test


@pytest.mark.asyncio
async def test_wait_async(release: threading.Event) -> None:
    async with ThreadPoolTaskRunner(max_workers=1):
        blocker = gate.submit(release)
        quick = aident.submit(1)
        done, not_done = await wait([blocker, quick], timeout=0.05)
        assert blocker in not_done
        release.set()
        done, not_done = await wait([blocker, quick])
        assert done == {blocker, quick}
        assert not not_done


def test_as_completed_sync_yields_in_completion_order(release: threading.Event) -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        slow = gate.submit(release, "slow")
        fast = ident.submit("fast")
        fast.wait()
        order = []
        for fut in as_completed([slow, fast]):
            order.append(fut.result())
            release.set()
        assert order == ["fast", "slow"]


@pytest.mark.asyncio
async def test_as_completed_async_yields_in_completion_order() -> None:
    release = asyncio.Event()

    @task
    async def agate(value: str) -> str:
        await release.wait()
        return value

    async with ThreadPoolTaskRunner(max_workers=2):
        slow = agate.submit("slow")
        fast = aident.submit("fast")
        order = []
        async for fut in as_completed([slow, fast]):
            order.append(await fut)
            release.set()
        assert order == ["fast", "slow"]


def test_as_completed_timeout_says_how_many_of_how_many(release: threading.Event) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        futures = [ident.submit(0)]
        futures[0].wait()
        futures += [gate.submit(release), ident.submit(2), ident.submit(3)]
        seen: list[TaskFuture[Any]] = []

        def drain() -> None:
            for fut in as_completed(futures, timeout=0.05):
                seen.append(fut)

        with pytest.raises(TimeoutError, match=r"^3 \(of 4\) futures unfinished$"):
            drain()
        assert seen == [futures[0]]
        release.set()


@pytest.mark.asyncio
async def test_as_completed_async_timeout_message() -> None:
    release = asyncio.Event()

    @task
    async def agate() -> None:
        await release.wait()

    async with ThreadPoolTaskRunner(max_workers=2):
        futures = [agate.submit() for _ in range(2)]

        async def drain() -> None:
            async for _ in as_completed(futures, timeout=0.05):
                pytest.fail("nothing should complete")

        with pytest.raises(TimeoutError, match=r"^2 \(of 2\) futures unfinished$"):
            await drain()
        release.set()


# ---- states -----------------------------------------------------------------------------------


def _predicates(state: State) -> dict[str, bool]:
    return {
        name: getattr(state, f"is_{name}")()
        for name in ("pending", "running", "completed", "failed", "cancelled", "crashed", "final")
    }


@pytest.mark.parametrize(
    ("state_type", "name", "true"),
    [
        (StateType.PENDING, "Pending", {"pending"}),
        (StateType.RUNNING, "Running", {"running"}),
        (StateType.COMPLETED, "Completed", {"completed", "final"}),
        (StateType.FAILED, "Failed", {"failed", "final"}),
        (StateType.CANCELLED, "Cancelled", {"cancelled", "final"}),
        (StateType.CRASHED, "Crashed", {"crashed", "final"}),
    ],
)
def test_state_names_and_predicates(state_type: StateType, name: str, true: set[str]) -> None:
    state = State(state_type)
    assert state.type is state_type
    assert state.name == name
    assert {k for k, v in _predicates(state).items() if v} == true
    assert isinstance(state.timestamp, float)
    assert state.message is None


def test_not_ready_is_pending_yet_final() -> None:
    state = State(StateType.PENDING, "NotReady", "upstream failed")
    assert state.is_pending()
    assert state.is_final()
    assert not state.is_failed()
    assert state.message == "upstream failed"


def test_states_seen_through_futures(release: threading.Event) -> None:
    class Fatal(BaseException):
        pass

    @task
    def crash() -> None:
        raise Fatal("not an Exception")

    with ThreadPoolTaskRunner(max_workers=1):
        running = gate.submit(release)
        pending = ident.submit(1)
        assert pending.state.type is StateType.PENDING
        assert pending.state.name == "Pending"
        assert not pending.state.is_final()
        assert not pending.done()
        release.set()
        running.wait()
        assert running.state.name == "Completed"
        failed = boom.submit()
        not_ready = ident.submit(failed)
        crashed = crash.submit()
        for fut in (failed, not_ready, crashed):
            fut.wait()
    assert failed.state.name == "Failed"
    assert failed.state.type is StateType.FAILED
    assert not_ready.state.name == "NotReady"
    assert not_ready.state.type is StateType.PENDING
    assert not_ready.state.is_final()
    assert not_ready.done()
    assert crashed.state.type is StateType.CRASHED
    assert crashed.state.is_crashed()
    with pytest.raises(Fatal):
        crashed.result()


def test_running_state_is_visible(release: threading.Event) -> None:
    started = threading.Event()

    @task
    def blocked() -> None:
        started.set()
        assert release.wait(WAIT)

    with ThreadPoolTaskRunner(max_workers=1):
        fut = blocked.submit()
        assert started.wait(WAIT)
        assert fut.state.is_running()
        assert fut.state.name == "Running"
        assert not fut.done()
        assert "blocked" in repr(fut)
        release.set()
    assert isinstance(fut, TaskFuture)
    assert fut.state.is_completed()
