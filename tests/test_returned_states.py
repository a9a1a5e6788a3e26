"""Issue 15: a `State` returned by a task or a flow sets its final state, and
`return_state=True` on direct calls returns the final `State` (sync and async).

The per-runner trips (process, Dask, task workers) are in
tests/conformance/test_returned_states.py; here: direct calls, the thread runner, a
process runner and a map, flows, `State.result()`, and the errors for misuse.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import pytest
from helpers import WAIT, Boom, boom, ident

from asyncflow import State, exceptions, flow, task
from asyncflow.states import (
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Retrying,
    Running,
    StateType,
)
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

pytestmark = pytest.mark.timeout(30)


@task
def give(state: Any) -> Any:
    return state


@task
async def agive(state: Any) -> Any:
    await asyncio.sleep(0)
    return state


def direct(t: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a task directly in its own colour; an async one on a fresh loop."""
    if t.is_async:
        return asyncio.run(t(*args, **kwargs))
    return t(*args, **kwargs)


COLOURS = pytest.mark.parametrize("t", [give, agive], ids=["sync", "async"])


# ---- a returned state ends the run in it ------------------------------------------------
@COLOURS
def test_completed_gives_its_data_as_the_value(t: Any) -> None:
    payload = {"rows": 3}
    assert direct(t, Completed(data=payload)) is payload
    assert direct(t, Completed()) is None


@COLOURS
def test_failed_without_an_exception_raises_task_failed_naming_the_task(t: Any) -> None:
    with pytest.raises(exceptions.TaskFailed, match=rf"{t.name}.*Failed state: bad rows"):
        direct(t, Failed(message="bad rows"))


@COLOURS
def test_failed_with_an_exception_raises_that_very_exception(t: Any) -> None:
    error = Boom("the row")
    with pytest.raises(Boom) as info:
        direct(t, Failed(message="validation", data=error))
    assert info.value is error


@COLOURS
def test_cancelled_and_crashed_raise_their_errors(t: Any) -> None:
    with pytest.raises(exceptions.TaskCancelled, match=rf"{t.name}.*nothing new"):
        direct(t, Cancelled(message="nothing new"))
    with pytest.raises(exceptions.TaskCrashed, match="disk gone"):
        direct(t, Crashed(message="disk gone"))


@COLOURS
@pytest.mark.parametrize("make", [Pending, Running, Retrying], ids=["pending", "running", "retry"])
def test_a_state_that_is_not_final_fails_the_run_saying_so(t: Any, make: Any) -> None:
    state = direct(t, make(), return_state=True)
    assert state.is_failed()
    with pytest.raises(TypeError, match=rf"task {t.name!r} returned .*not a final state"):
        state.result()


def test_pending_not_ready_is_refused_too() -> None:
    """NotReady is final, but a run that ran cannot end as one that never started."""
    with pytest.raises(TypeError, match="not a final state"):
        give(Pending(name="NotReady"))


def test_the_final_state_keeps_name_message_and_timestamp_and_counts_attempts() -> None:
    fut = give.submit(Completed(message="from cache", name="Cached", data=1, timestamp=5.0))
    assert fut.result(timeout=WAIT) == 1
    state = fut.state
    assert (state.type, state.name, state.message, state.timestamp, state.attempts) == (
        StateType.COMPLETED,
        "Cached",
        "from cache",
        5.0,
        1,
    )
    assert state.data is None  # the value lives in the future, as for every run


def test_a_failed_message_defaults_to_the_exception() -> None:
    fut = give.submit(Failed(data=Boom("bad")))
    fut.wait(WAIT)
    assert fut.state.message == "Boom: bad"


def test_a_returned_failed_state_is_not_retried() -> None:
    calls: list[int] = []

    @task(retries=3, retry_delay_seconds=0)
    def decide() -> State:
        calls.append(1)
        return Failed(message="the task's own verdict")

    fut = decide.submit()
    fut.wait(WAIT)
    assert fut.state.is_failed()
    assert calls == [1]
    assert fut.state.attempts == 1


def test_a_raised_failure_is_still_retried_beside_it() -> None:
    calls: list[int] = []

    @task(retries=1, retry_delay_seconds=0)
    def flaky() -> State:
        calls.append(1)
        if len(calls) == 1:
            raise Boom("first")
        return Completed(data="second")

    assert flaky() == "second"
    assert calls == [1, 1]


def test_hooks_hear_the_returned_state() -> None:
    seen: list[tuple[str, str]] = []

    @task(
        on_completion=[lambda t, s: seen.append(("completion", s.name))],
        on_failure=[lambda t, s: seen.append(("failure", s.name))],
        on_crashed=[lambda t, s: seen.append(("crashed", s.name))],
    )
    def decide(state: State) -> State:
        return state

    with ThreadPoolTaskRunner(max_workers=2):  # its exit waits for the hooks too
        decide.submit(Completed(name="Cached"))
        decide.submit(Failed(message="no"))
        decide.submit(Crashed(message="gone"))
    assert sorted(seen) == [
        ("completion", "Cached"),
        ("crashed", "Crashed"),
        ("failure", "Crashed"),
        ("failure", "Failed"),
    ]


def test_on_a_thread_runner_dependents_see_the_state() -> None:
    release = threading.Event()

    @task
    def later(state: State) -> State:
        release.wait(WAIT)
        return state

    with ThreadPoolTaskRunner(max_workers=2):
        good = later.submit(Completed(data=7))
        bad = later.submit(Failed(message="no"))
        after_good = ident.submit(good)  # registered before their upstreams finish
        after_bad = ident.submit(bad)
        release.set()
        assert after_good.result(timeout=WAIT) == 7
        after_bad.wait(WAIT)
    assert after_bad.state.name == "NotReady"
    assert good.state.is_completed()
    assert bad.state.is_failed()


@pytest.mark.timeout(60)
def test_on_a_process_runner_the_state_comes_back_pickled() -> None:
    with ProcessPoolTaskRunner(max_workers=1):
        completed = give.submit(Completed(message="m", data=[1, 2]))
        failed = give.submit(Failed(message="no", data=Boom("pickled")))
        mapped = give.map([Completed(data=1), Cancelled(message="skip"), 3])
        assert completed.result(timeout=WAIT) == [1, 2]
        with pytest.raises(Boom, match="pickled"):
            failed.result(timeout=WAIT)
        values = mapped.result(timeout=WAIT, raise_on_failure=False)
    assert completed.state.message == "m"
    assert values[0] == 1
    assert isinstance(values[1], exceptions.TaskCancelled)
    assert values[2] == 3
    assert [f.state.type for f in mapped] == [
        StateType.COMPLETED,
        StateType.CANCELLED,
        StateType.COMPLETED,
    ]


def test_a_map_element_on_the_default_runner() -> None:
    futures = agive.map([Failed(message="one bad"), 2])
    values = futures.result(timeout=WAIT, raise_on_failure=False)
    assert isinstance(values[0], exceptions.TaskFailed)
    assert values[1] == 2


def test_a_plain_value_still_completes() -> None:
    assert give(5) == 5
    assert give.submit([Completed()]).result(timeout=WAIT)[0].is_completed()  # inside: data


# ---- return_state=True --------------------------------------------------------------------
@COLOURS
def test_return_state_gives_the_final_state_with_the_value(t: Any) -> None:
    state = direct(t, 21, return_state=True)
    assert isinstance(state, State)
    assert (state.type, state.name, state.attempts) == (StateType.COMPLETED, "Completed", 1)
    assert state.result() == 21
    assert state.data == 21


@COLOURS
def test_return_state_does_not_raise_for_the_tasks_failure(t: Any) -> None:
    error = Boom("kept")
    state = direct(t, Failed(message="why", data=error), return_state=True)
    assert (state.type, state.message) == (StateType.FAILED, "why")
    assert state.data is error
    assert state.result(raise_on_failure=False) is error
    with pytest.raises(Boom):
        state.result()


def test_return_state_of_a_raising_task() -> None:
    state = boom("loud", return_state=True)
    assert state.is_failed()
    assert state.message == "Boom: loud"
    with pytest.raises(Boom, match="loud"):
        state.result()


def test_return_state_of_a_timed_out_task() -> None:
    @task(timeout_seconds=0.05)
    async def slow() -> None:
        await asyncio.sleep(WAIT)

    state = asyncio.run(slow(return_state=True))
    assert (state.type, state.name) == (StateType.FAILED, "TimedOut")
    with pytest.raises(exceptions.TaskTimeout):
        state.result()


@COLOURS
def test_return_state_with_a_failed_upstream_is_not_ready(t: Any) -> None:
    upstream = boom.submit("up")
    upstream.wait(WAIT)
    state = direct(t, upstream, return_state=True)
    assert (state.type, state.name) == (StateType.PENDING, "NotReady")
    assert state.is_final()
    with pytest.raises(exceptions.UpstreamFailed) as info:
        state.result()
    assert isinstance(info.value.__cause__, Boom)


def test_return_state_false_is_the_plain_call() -> None:
    assert give(3, return_state=False) == 3


def test_return_state_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"task 'give': return_state must be True or False"):
        give(1, return_state="yes")  # type: ignore[call-overload]  # the point of the test


def test_a_cancelled_caller_still_propagates() -> None:
    started = asyncio.Event()

    @task
    async def hang() -> None:
        started.set()
        await asyncio.sleep(WAIT)

    async def main() -> None:
        call = asyncio.ensure_future(hang(return_state=True))
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    asyncio.run(main())


def test_submit_does_not_take_return_state() -> None:
    with pytest.raises(TypeError, match=r"give.*return_state"):
        give.submit(1, return_state=True)


@pytest.mark.parametrize("decorator", [task, flow], ids=["task", "flow"])
def test_a_parameter_named_return_state_is_refused_at_decoration(decorator: Any) -> None:
    def run(x: int, return_state: bool = False) -> int:
        return x

    with pytest.raises(ValueError, match=r"'run'.*'return_state' is reserved"):
        decorator(run)


# ---- flows --------------------------------------------------------------------------------
def test_a_flow_returning_a_state_ends_in_it() -> None:
    @flow
    def checks(ok: bool) -> State:
        return Completed(message="all good", data="report") if ok else Failed(message="dirty")

    assert checks(True) == "report"
    with pytest.raises(exceptions.TaskFailed, match=r"flow 'checks' returned a Failed state"):
        checks(False)
    state = checks(False, return_state=True)
    assert (state.type, state.message) == (StateType.FAILED, "dirty")
    assert isinstance(state.data, exceptions.TaskFailed)


def test_an_async_flow_returning_a_state_and_its_hooks() -> None:
    seen: list[tuple[str, str]] = []

    @flow(
        on_completion=[lambda f, s: seen.append(("completion", s.name))],
        on_cancellation=[lambda f, s: seen.append(("cancellation", s.name))],
    )
    async def decide(cancel: bool) -> State:
        await asyncio.sleep(0)
        return Cancelled(message="no work") if cancel else Completed(name="Skipped", data=0)

    assert asyncio.run(decide(False)) == 0
    state = asyncio.run(decide(True, return_state=True))
    assert (state.type, state.message) == (StateType.CANCELLED, "no work")
    with pytest.raises(exceptions.TaskCancelled, match="flow 'decide'"):
        state.result()
    assert seen == [("completion", "Skipped"), ("cancellation", "Cancelled")]


def test_a_flow_returning_a_tasks_state_fails_with_the_tasks_error() -> None:
    @flow
    def outer() -> State:
        return boom("inner", return_state=True)

    with pytest.raises(Boom, match="inner"):
        outer()


def test_a_flow_returning_a_runs_own_state_passes_it_on() -> None:
    """A run's own state carries no data: a completed one is the value (as Prefect's
    aggregate rule has it), a failed one fails the flow."""

    @flow
    def passes_on(fail: bool) -> State:
        fut = boom.submit("x") if fail else ident.submit(1)
        fut.wait()
        return fut.state

    state = passes_on(False)
    assert isinstance(state, State)
    assert state.is_completed()
    with pytest.raises(exceptions.TaskFailed, match="Boom: x"):
        passes_on(True)


def test_flow_return_state_sync_async_and_failures() -> None:
    @flow
    def double(x: int) -> int:
        return 2 * x

    @flow
    async def adouble(x: int) -> int:
        return 2 * x

    @flow
    def broken() -> None:
        raise Boom("flow body")

    @flow(timeout_seconds=0.05)
    async def slow() -> None:
        await asyncio.sleep(WAIT)

    assert double(2, return_state=True).result() == 4
    assert asyncio.run(adouble(3, return_state=True)).result() == 6
    failed = broken(return_state=True)
    assert failed.is_failed()
    assert isinstance(failed.data, Boom)
    timed_out = asyncio.run(slow(return_state=True))
    assert timed_out.name == "TimedOut"
    with pytest.raises(exceptions.TaskTimeout):
        timed_out.result()
    with pytest.raises(TypeError, match="flow 'double': return_state must be True or False"):
        double(1, return_state=None)  # type: ignore[call-overload]  # the point of the test


def test_flow_return_state_with_a_failed_upstream_is_not_ready() -> None:
    @flow
    def consume(x: int) -> int:
        return x

    @flow
    async def aconsume(x: int) -> int:
        return x

    upstream = boom.submit("up")
    upstream.wait(WAIT)
    for state in (
        consume(upstream, return_state=True),
        asyncio.run(aconsume(upstream, return_state=True)),
    ):
        assert (state.type, state.name) == (StateType.PENDING, "NotReady")
        with pytest.raises(exceptions.UpstreamFailed, match=r"flow '.*consume' did not run"):
            state.result()
    with pytest.raises(exceptions.UpstreamFailed):
        consume(upstream)  # without it, the call raises as before


# ---- State.result() -----------------------------------------------------------------------
def test_constructed_states_give_their_result() -> None:
    assert Completed(data=[1]).result() == [1]
    assert Completed().result() is None
    error = Boom("x")
    assert Failed(data=error).result(raise_on_failure=False) is error
    with pytest.raises(exceptions.TaskFailed, match="just because"):
        Failed(message="just because").result()
    with pytest.raises(exceptions.TaskFailed, match="a text"):
        Failed(data="a text").result()
    with pytest.raises(exceptions.TaskCancelled, match="the run ended Cancelled"):
        Cancelled().result()
    assert isinstance(Crashed().result(raise_on_failure=False), exceptions.TaskCrashed)
    with pytest.raises(exceptions.UpstreamFailed):
        Pending(name="NotReady").result()


@pytest.mark.parametrize("make", [Pending, Running, Retrying], ids=["pending", "running", "retry"])
def test_result_of_a_state_that_is_not_final_is_missing(make: Any) -> None:
    with pytest.raises(exceptions.MissingResult, match="not final"):
        make(data=1).result()


def test_a_runs_own_state_has_no_result_but_says_where_it_is() -> None:
    fut = ident.submit(1)
    fut.wait(WAIT)
    assert fut.state.data is None
    with pytest.raises(exceptions.MissingResult, match=r"future\.result\(\)"):
        fut.state.result()
    assert isinstance(exceptions.MissingResult("x"), LookupError)


def test_states_pickle_with_and_without_data() -> None:
    with_data = pickle.loads(pickle.dumps(Completed(data={"a": 1})))
    assert with_data.result() == {"a": 1}
    without = pickle.loads(pickle.dumps(State(StateType.COMPLETED)))
    with pytest.raises(exceptions.MissingResult):
        without.result()
    returned = pickle.loads(pickle.dumps(give(Completed(data=3), return_state=True)))
    assert returned.result() == 3


# ---- the rule in the sans-I/O attempt machine (no loop, no runner) ------------------------
def _machine(retries: int = 0) -> Any:
    from asyncflow._core._attempt import Attempts
    from asyncflow._core._policy import RetryPolicy

    return Attempts("t", RetryPolicy(retries, 0, None, None) if retries else None, None)


def test_the_machine_ends_a_run_in_a_returned_state() -> None:
    from asyncflow._core._attempt import Finish

    m = _machine(retries=2)
    assert m.begin() == 1
    ending = m.returned(Failed(message="no"))
    assert isinstance(ending, Finish)
    assert (ending.state.type, ending.state.message, ending.state.attempts) == (
        StateType.FAILED,
        "no",
        1,
    )
    assert isinstance(ending.error, exceptions.TaskFailed)
    assert m.returned(Completed(data=1)) is None  # final: a second report is dropped


def test_the_machine_keeps_a_stop_over_a_returned_state() -> None:
    from asyncflow._core._attempt import CancelReason

    m = _machine()
    m.begin()
    m.cancel_requested(CancelReason.CANCELLED, stoppable=True)
    ending = m.returned(Completed(data=1))
    assert ending is not None
    assert ending.state.type is StateType.CANCELLED  # the stop decides, as for values


def test_a_returned_state_raised_on_a_worker_means_the_same_and_is_not_retried() -> None:
    from asyncflow._core._attempt import Finish, ReturnedState

    m = _machine(retries=3)
    m.begin()
    error, again = m.judge(ReturnedState(Completed(name="Cached", data=5)))
    assert again is False
    ending = m.raised(error, again)
    assert isinstance(ending, Finish)
    assert (ending.state.name, ending.value, ending.error) == ("Cached", 5, None)
    back = pickle.loads(pickle.dumps(ReturnedState(Failed(data=Boom("x")))))
    assert isinstance(back.state.data, Boom)  # it crosses from a worker intact
