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
        assert all(f.state.is_final() for f in mapped)  # both waited for every run
        return [inside.result(timeout=WAIT), whole.result(timeout=WAIT)]

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
    import time

    from asyncflow import exceptions

    assert threading.current_thread() is threading.main_thread()
    reached: list[str] = []
    started = time.monotonic()
    with pytest.raises(exceptions.TaskTimeout, match=r"'sleeps_long'.*0.2 s"):
        sleeps_long(reached)
    assert time.monotonic() - started < BODY_SECONDS / 2
    assert reached == []  # interrupted inside the body, and not retried
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
