"""Issue 15: the bugs that ported Prefect snippets hit, each in sync and async code.

Every test here failed on the main branch before its fix: `wait_for` with plain values
and with `allow_failure(futures)`, futures passed to nested flows, `.map()` over
`**kwargs`, generators returned by tasks, and timeouts of direct calls.
"""

from __future__ import annotations

from typing import Any

import pytest

from asyncflow import allow_failure, flow, task, unmapped
from asyncflow.task_runners import ThreadPoolTaskRunner

WAIT = 20


@task
def fails() -> None:
    raise ValueError("upstream broke")


@task
def square(x: int) -> int:
    if x == 2:
        raise ValueError("two")
    return x * x


@task
def after() -> str:
    return "after"


@task
async def aafter() -> str:
    return "aafter"


# ---- 1. wait_for ignores plain values, with a warning naming them --------------------------


def test_wait_for_ignores_a_plain_value_with_a_warning() -> None:
    @flow
    def pipeline() -> str:
        error = fails.submit().result(raise_on_failure=False)  # Prefect's "Return a future"
        with pytest.warns(UserWarning, match=r"'after'.*ValueError.*upstream broke.*ignored"):
            fut = after.submit(wait_for=[error])
        return fut.result(timeout=WAIT)

    assert pipeline() == "after"


@pytest.mark.asyncio
async def test_wait_for_ignores_a_plain_value_in_async_code() -> None:
    @flow
    async def pipeline() -> list[str]:
        value = await aafter.submit()
        with pytest.warns(UserWarning, match=r"'aafter'.*str: 'aafter', int: 3"):
            submitted = await aafter.submit(wait_for=[value, 3])
        with pytest.warns(UserWarning, match=r"'aafter'.*int: 7"):
            called = await aafter(wait_for=[7])
        return [submitted, called]

    assert await pipeline() == ["aafter", "aafter"]


@pytest.mark.asyncio
async def test_wait_for_refuses_a_task_a_function_or_a_coroutine() -> None:
    async def coroutine_function() -> None:
        return None

    coro = coroutine_function()
    with ThreadPoolTaskRunner(max_workers=1):
        for mistake in (after, len, coro):
            with pytest.raises(TypeError, match=r"'after'.*wait_for.*submit"):
                after.submit(wait_for=[mistake])
            with pytest.raises(TypeError, match=r"'after'.*wait_for"):
                after(wait_for=[mistake])
    coro.close()


# ---- 2. wait_for takes allow_failure(mapped futures) ---------------------------------------


def test_wait_for_allow_failure_of_a_map_in_both_forms() -> None:
    @flow
    def pipeline() -> list[str]:
        mapped = square.map([1, 2, 3])
        inside = after.submit(wait_for=[allow_failure(mapped)])
        whole = after.submit(wait_for=allow_failure(mapped))
        results = [inside.result(timeout=WAIT), whole.result(timeout=WAIT)]
        assert all(f.state.is_final() for f in mapped)  # both waited for every run
        return results

    assert pipeline() == ["after", "after"]


@pytest.mark.asyncio
async def test_wait_for_allow_failure_of_a_map_in_async_code() -> None:
    @flow
    async def pipeline() -> list[str]:
        mapped = square.map([1, 2, 3])
        inside = await aafter.submit(wait_for=[allow_failure(mapped)])
        whole = await aafter(wait_for=allow_failure(mapped))
        assert [f.state.is_failed() for f in mapped] == [False, True, False]
        return [inside, whole]

    assert await pipeline() == ["aafter", "aafter"]


def test_wait_for_a_failed_map_without_allow_failure_does_not_run() -> None:
    from asyncflow import exceptions

    with ThreadPoolTaskRunner(max_workers=2):
        mapped = square.map([1, 2])
        blocked = after.submit(wait_for=mapped)
        with pytest.raises(exceptions.UpstreamFailed):
            blocked.result(timeout=WAIT)
        mapped.wait()
        assert mapped[1].exception() is not None


# ---- 3. a nested flow called with a future gets the future's value ----------------------


@task
def one() -> int:
    return 1


@task
async def aone() -> int:
    return 1


@flow
def takes_values(x: int, rest: list[int]) -> str:
    return f"{type(x).__name__} {x} {rest}"


@flow
async def atakes_values(x: int, rest: list[int]) -> str:
    return f"{type(x).__name__} {x} {rest}"


def test_a_nested_flow_gets_the_values_of_futures() -> None:
    @flow
    def parent() -> str:
        return takes_values(one.submit(), rest=[one.submit(), 2])

    assert parent() == "int 1 [1, 2]"


@pytest.mark.asyncio
async def test_a_nested_async_flow_gets_the_values_of_futures() -> None:
    @flow
    async def parent() -> str:
        return await atakes_values(aone.submit(), rest=[aone.submit(), 2])

    assert await parent() == "int 1 [1, 2]"


def test_a_nested_flow_with_a_failed_future_does_not_run() -> None:
    from asyncflow import exceptions

    ran = []

    @flow
    def child(x: object) -> None:
        ran.append(x)

    @flow
    def parent() -> object:
        failed = fails.submit()
        with pytest.raises(exceptions.UpstreamFailed, match="flow 'child' did not run") as info:
            child(failed)
        assert isinstance(info.value.__cause__, ValueError)
        child(allow_failure(failed))  # runs, and gets the exception object
        return ran[0]

    assert isinstance(parent(), ValueError)
    assert len(ran) == 1


# ---- 4. .map() over the values inside **kwargs --------------------------------------------


@task
def add_some(x: int, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    return x, kwargs


@task
async def aadd_some(x: int, **kwargs: Any) -> int:
    return x + sum(kwargs.values())


def test_map_maps_the_values_inside_kwargs() -> None:
    with ThreadPoolTaskRunner(max_workers=2):
        assert aadd_some.map(x=[1, 2, 3], **{"y": [4, 5, 6]}).result() == [5, 7, 9]
        runs = add_some.map([1, 2], y=[10, 20], z=unmapped([0]), w=7, s="ab").result()
    assert runs == [
        (1, {"y": 10, "z": [0], "w": 7, "s": "ab"}),
        (2, {"y": 20, "z": [0], "w": 7, "s": "ab"}),
    ]
    assert runs[0][1] is not runs[1][1]  # each run gets a dict of its own


@pytest.mark.asyncio
async def test_map_over_kwargs_in_async_code_and_its_shape_errors() -> None:
    from asyncflow import exceptions

    @flow
    async def pipeline() -> list[int]:
        return await aadd_some.map(x=unmapped(1), y=[1, 2], z=[10, 20])

    assert await pipeline() == [12, 23]
    with ThreadPoolTaskRunner(max_workers=1):
        with pytest.raises(exceptions.MappingLengthMismatch, match=r"x=2, y=3"):
            aadd_some.map(x=[1, 2], y=[1, 2, 3])
        with pytest.raises(exceptions.MappingMissingIterable, match=r"'aadd_some'"):
            aadd_some.map(x=1, y=2)


# ---- 6. a process task whose result cannot be pickled names the task ----------------------


@task
def returns_a_lock() -> Any:
    import threading

    return threading.Lock()


@task
async def areturns_a_lock() -> Any:
    import threading

    return threading.Lock()


def test_an_unpicklable_process_result_names_the_task_in_sync_and_async_tasks() -> None:
    from asyncflow import exceptions
    from asyncflow.task_runners import ProcessPoolTaskRunner

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def pipeline() -> list[str]:
        messages = []
        for each in (returns_a_lock, areturns_a_lock):
            fut = each.submit()
            with pytest.raises(exceptions.SerializationError) as info:
                fut.result(timeout=WAIT)
            assert fut.state.is_failed()
            messages.append(str(info.value))
        return messages

    sync_message, async_message = pipeline()
    assert sync_message.startswith("task 'returns_a_lock': its result, of type lock")
    assert async_message.startswith("task 'areturns_a_lock': its result, of type lock")


# ---- 7. a generator returned by a task is consumed into a list ----------------------------


@task
def counts(n: int) -> Any:
    yield from range(n)


@task
def returns_a_generator(n: int) -> Any:
    return (i * 10 for i in range(n))


@task
async def acounts(n: int) -> Any:
    for i in range(n):
        yield i


ATTEMPTS: list[int] = []


@task(retries=1)
def fails_while_yielding() -> Any:
    ATTEMPTS.append(len(ATTEMPTS) + 1)
    yield "first"
    if len(ATTEMPTS) == 1:
        raise ValueError("broke after one item")
    yield "second"


def test_a_sync_generator_is_consumed_into_a_list() -> None:
    assert counts(3) == [0, 1, 2]  # a direct call
    assert returns_a_generator(2) == [0, 10]
    with ThreadPoolTaskRunner(max_workers=2):
        assert counts.submit(2).result(timeout=WAIT) == [0, 1]
        assert returns_a_generator.map([1, 2]).result() == [[0], [0, 10]]
        ATTEMPTS.clear()
        fut = fails_while_yielding.submit()
        assert fut.result(timeout=WAIT) == ["first", "second"]  # the error was retried
    assert ATTEMPTS == [1, 2]


@pytest.mark.asyncio
async def test_an_async_generator_task_is_async_and_its_items_are_collected() -> None:
    assert acounts.is_async
    assert await acounts(3) == [0, 1, 2]

    @flow
    async def pipeline() -> list[Any]:
        return [await acounts.submit(2), await counts.submit(1)]

    assert await pipeline() == [[0, 1], [0]]


def test_generators_are_consumed_in_a_process_worker() -> None:
    from asyncflow.task_runners import ProcessPoolTaskRunner

    with ProcessPoolTaskRunner(max_workers=1):
        assert counts.submit(3).result(timeout=WAIT) == [0, 1, 2]
        assert acounts.submit(2).result(timeout=WAIT) == [0, 1]
        assert returns_a_generator.submit(1).result(timeout=WAIT) == [0]


# ---- 8. a sync task called directly in the main thread is interrupted at its timeout -------

BODY_SECONDS = 10.0  # what an uninterrupted body would take: a regression shows as slow


@task(timeout_seconds=0.2, retries=2)
def sleeps_long(reached: list[str]) -> str:
    import time

    time.sleep(BODY_SECONDS)
    reached.append("the end of the body")
    return "finished"


@pytest.mark.timeout(30)
def test_a_direct_call_in_the_main_thread_is_interrupted_at_its_timeout() -> None:
    import signal
    import threading

    from asyncflow import exceptions

    assert threading.current_thread() is threading.main_thread()
    reached: list[str] = []
    with pytest.raises(exceptions.TaskTimeout, match=r"'sleeps_long'.*0.2 s"):
        sleeps_long(reached)
    assert reached == []  # interrupted inside the body (its end was never reached)
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL  # put back
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@task(timeout_seconds=0.05)
def waits_for_gate(gate: Any, reached: list[str]) -> str:
    assert gate.wait(timeout=WAIT)
    reached.append("the end of the body")
    return "finished"


@pytest.mark.timeout(30)
def test_a_claimed_sigalrm_or_another_thread_lets_the_body_run_to_its_end() -> None:
    import signal
    import threading

    from asyncflow import exceptions

    alarms: list[int] = []

    def users_handler(signum: int, _frame: object) -> None:
        alarms.append(signum)

    def open_later(gate: threading.Event) -> threading.Timer:
        timer = threading.Timer(0.3, gate.set)  # after the task's deadline
        timer.start()
        return timer

    previous = signal.signal(signal.SIGALRM, users_handler)
    try:
        gate = threading.Event()
        timer = open_later(gate)
        reached: list[str] = []
        with pytest.raises(exceptions.TaskTimeout):
            waits_for_gate(gate, reached)  # SIGALRM is the user's: not interrupted
        timer.join()
        assert reached == ["the end of the body"]
        assert signal.getsignal(signal.SIGALRM) is users_handler  # left alone
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert alarms == []

    outcome: list[BaseException] = []
    gate = threading.Event()
    in_thread: list[str] = []

    def in_a_thread() -> None:
        try:
            waits_for_gate(gate, in_thread)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=in_a_thread)
    worker.start()
    timer = open_later(gate)
    worker.join(WAIT)
    timer.join()
    assert isinstance(outcome[0], exceptions.TaskTimeout)  # raised after the body's end
    assert in_thread == ["the end of the body"]


# ---- 5. hook and retry-condition signatures, Prefect's form, decorator registration --------


def test_a_hook_or_condition_that_fits_neither_form_is_refused_at_decoration() -> None:
    def four(a: Any, b: Any, c: Any, d: Any) -> None: ...

    def one_arg(a: Any) -> bool:
        return True

    with pytest.raises(TypeError, match=r"task 'load': on_failure hook four\(a, b, c, d\) must"):

        @task(name="load", on_failure=[four])
        def load() -> None: ...

    with pytest.raises(TypeError, match=r"task 'load': retry_condition_fn .*one_arg.*task_run"):
        task(name="load", retries=1, retry_condition_fn=one_arg)(lambda: None)
    with pytest.raises(TypeError, match=r"flow 'etl': on_crashed hook .*four"):
        flow(name="etl", on_crashed=[four])(lambda: None)
    with pytest.raises(TypeError, match=r"task 'after': on_completion hook .*four"):
        after.on_completion(four)
    assert after.on_completion == []


def test_prefect_form_hooks_and_decorator_registration_on_tasks() -> None:
    from asyncflow.runs import TaskRun

    calls: list[tuple[str, str, Any]] = []

    @task
    def double(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return 2 * x

    @double.on_completion
    def done(t: Any, run: TaskRun, state: Any) -> None:  # Prefect's form
        calls.append(("completion", state.name, (run.task_name, dict(run.parameters))))

    @double.on_failure
    def failed(t: Any, state: Any) -> None:  # asyncflow's form, by decorator
        calls.append(("failure", state.name, t.name))

    @double.on_running
    def running(t: Any, run: TaskRun, state: Any) -> None:
        calls.append(("running", state.name, run.run_count))

    assert done in double.on_completion
    assert double.on_failure == [failed]
    assert double(3) == 6  # a direct call runs the hooks too
    with ThreadPoolTaskRunner(max_workers=1):
        assert double.submit(-1).exception(timeout=WAIT) is not None
    assert calls == [
        ("running", "Running", 1),
        ("completion", "Completed", ("double", {"x": 3})),
        ("running", "Running", 1),
        ("failure", "Failed", "double"),
    ]
    copy = double.with_options(name="copy")
    assert copy.on_completion == [done]  # copies keep the hooks


@pytest.mark.asyncio
async def test_prefect_form_hooks_on_async_tasks_and_cancellation() -> None:
    import threading

    from asyncflow import exceptions

    calls: list[tuple[str, str]] = []
    gate = threading.Event()

    @task
    async def fetch(x: int) -> int:
        return x

    @task
    def blocker() -> None:
        assert gate.wait(WAIT)

    @fetch.on_completion
    def fetched(t: Any, run: Any, state: Any) -> None:
        calls.append((run.name.split("-")[0], state.name))

    queued = blocker.with_options(name="queued")

    @queued.on_cancellation
    def cancelled(t: Any, run: Any, state: Any) -> None:
        calls.append(("cancellation", state.name))

    assert await fetch(1) == 1
    with ThreadPoolTaskRunner(max_workers=1):
        running = blocker.submit()
        pending = queued.submit()
        assert pending.cancel()
        gate.set()
        running.result(timeout=WAIT)
    with pytest.raises(exceptions.TaskCancelled):
        pending.result(timeout=WAIT)
    assert calls == [("fetch", "Completed"), ("cancellation", "Cancelled")]


class Interrupted(BaseException):
    """Not an Exception: a flow that raises it ends CRASHED."""


def test_prefect_form_flow_hooks_get_a_flow_run_and_on_crashed_is_called() -> None:
    from asyncflow.runs import FlowRun

    calls: list[tuple[str, str, Any]] = []

    @flow
    def etl(n: int) -> int:
        if n < 0:
            raise Interrupted("stop")
        return n

    @etl.on_running
    def started(f: Any, run: FlowRun, state: Any) -> None:
        calls.append(("running", state.name, run.id))

    @etl.on_completion
    def completed(f: Any, run: FlowRun, state: Any) -> None:
        assert run.start_time is not None
        assert run.end_time is not None
        calls.append(("completion", state.name, (run.id, run.flow_name, dict(run.parameters))))

    @etl.on_crashed
    def crashed(f: Any, state: Any) -> None:
        calls.append(("crashed", state.name, f.name))

    assert etl(2) == 2
    with pytest.raises(Interrupted):
        etl(-1)
    (_, _, first_id), (_, _, (same_id, name, params)) = calls[:2]
    assert first_id == same_id
    assert (name, params) == ("etl", {"n": 2})
    assert [c[:2] for c in calls[2:]] == [("running", "Running"), ("crashed", "Crashed")]


@pytest.mark.asyncio
async def test_prefect_form_hooks_on_an_async_flow() -> None:
    calls: list[str] = []

    def on_failure(f: Any, run: Any, state: Any) -> None:
        calls.append(f"{run.flow_name} {state.name} {state.message}")

    @flow(on_failure=[on_failure])
    async def load() -> None:
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        await load()
    assert calls == ["load Failed ValueError: bad row"]


def test_a_prefect_form_retry_condition_gets_the_run_and_a_failed_state() -> None:
    seen: list[tuple[int, Any]] = []

    def retry_handler(t: Any, task_run: Any, state: Any) -> bool:  # Prefect's docs example
        seen.append((task_run.run_count, task_run.parameters))
        try:
            state.result()
        except ConnectionError:
            return True
        except Exception:
            return False
        return True

    errors = [ConnectionError("flaky"), ConnectionError("flaky"), KeyError("fatal")]

    @task(retries=5, retry_condition_fn=retry_handler)
    def call_api(url: str) -> None:
        raise errors.pop(0)

    with ThreadPoolTaskRunner(max_workers=1):
        fut = call_api.submit("https://x")
        assert isinstance(fut.exception(timeout=WAIT), KeyError)
    assert fut.state.attempts == 3
    assert seen == [(1, {"url": "https://x"}), (2, {"url": "https://x"}), (3, {"url": "https://x"})]


@pytest.mark.asyncio
async def test_a_retry_condition_that_raises_is_logged_and_does_not_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    def broken(t: Any, task_run: Any, state: Any) -> bool:
        raise RuntimeError("handler bug")

    @task(retries=3, retry_condition_fn=broken)
    async def flaky() -> None:
        raise ConnectionError("down")

    with caplog.at_level(logging.ERROR, logger="asyncflow"), pytest.raises(ConnectionError) as info:
        await flaky()
    assert "retry_condition_fn of task 'flaky' raised" in caplog.text
    assert "handler bug" in caplog.text
    notes = getattr(info.value, "__notes__", None)
    if notes is not None:  # 3.11+: the error says why it was not retried
        assert any("not retried" in note for note in notes)
