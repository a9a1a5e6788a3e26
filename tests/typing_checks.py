"""Static typing checks, run by `mypy --strict` and by `pyright` (strict, the checker of
VS Code's Pylance) in CI, and executed by test_typing.py.

Each `assert_type` fails type-checking if the decorators stop preserving the wrapped
function's parameters and return type. Each `# type: ignore[...]` is a negative check:
`--strict` includes `warn_unused_ignores`, and pyproject's `[tool.pyright]` turns on
`reportUnnecessaryTypeIgnoreComment`, so if a wrong call stops being an error, either
checker fails on the unused ignore.

The two checkers differ in one spelling: mypy calls what an `async def` returns
`Coroutine[...]`, pyright `CoroutineType[...]` (a subclass). Checks of a coroutine
are therefore assignments to `Coroutine[...]`, which both accept, not `assert_type`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any

from typing_extensions import assert_type

from asyncflow import FutureList, State, TaskFuture, flow, task, unmapped
from asyncflow.futures import as_completed, wait
from asyncflow.task_runners import ThreadPoolTaskRunner


@task
def double(x: int) -> int:
    return 2 * x


@task(name="add", retries=1)
def add(x: int, y: int = 1) -> int:
    return x + y


@task
async def fetch(key: str) -> bytes:
    await asyncio.sleep(0)
    return key.encode()


def float_result(fut: TaskFuture[float]) -> float:
    return fut.result()


@flow
def sync_flow(n: int) -> list[int]:
    assert_type(double(n), int)
    fut = double.submit(n)
    assert_type(fut, TaskFuture[int])
    assert_type(fut.result(), int)
    assert_type(fut.state, State)
    assert_type(fut.done(), bool)
    futs = double.map([1, 2, 3])
    assert_type(futs, FutureList[int])
    assert_type(futs.result(), list[int])
    assert_type(futs[0], TaskFuture[int])
    assert_type(add.map([1, 2], y=unmapped(3)), FutureList[int])
    assert_type(add.submit(1, wait_for=[fut]), TaskFuture[int])
    done, not_done = wait(futs)
    assert_type(done, set[TaskFuture[int]])
    assert_type(not_done, set[TaskFuture[int]])
    assert_type(wait([fut]).done, set[TaskFuture[int]])
    assert_type(iter(as_completed(futs)), Iterator[TaskFuture[int]])
    assert_type([f.result() for f in as_completed([fut], timeout=5)], list[int])
    mixed: list[TaskFuture[object]] = [fut, fetch.submit("k")]  # TaskFuture is covariant
    assert_type(wait(mixed).done, set[TaskFuture[object]])
    assert_type(iter(as_completed(mixed)), Iterator[TaskFuture[object]])
    assert_type(float_result(fut), float)  # a `TaskFuture[int]` is a `TaskFuture[float]`
    assert_type(double.fn(n), int)  # `task.fn` is the function, with its type
    return [assert_type(v, int) for v in double.map_iter(range(3), max_concurrency=2)]


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
async def async_flow(key: str) -> bytes:
    coro: Coroutine[Any, Any, bytes] = fetch(key)
    value = await coro
    assert_type(value, bytes)
    assert_type(await fetch.fn(key), bytes)
    fut = fetch.submit(key)
    assert_type(fut, TaskFuture[bytes])
    assert_type(await fut, bytes)
    many = fetch.map(["a", "b"])
    assert_type(many, FutureList[bytes])
    assert_type(await many, list[bytes])
    async for item in fetch.map_iter(["x"]):
        assert_type(item, bytes)
    async for finished in as_completed(many):
        assert_type(finished, TaskFuture[bytes])
    done, not_done = await wait(many)
    assert_type(done, set[TaskFuture[bytes]])
    assert_type(not_done, set[TaskFuture[bytes]])
    awaited: bytes = await fetch.submit(key)  # pyright once saw a future of a coroutine
    assert awaited == value
    return value


def runner_calls() -> None:
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        assert_type(runner.submit(double, {"x": 1}), TaskFuture[int])
        assert_type(runner.submit(fetch, {"key": "k"}), TaskFuture[bytes])
        assert_type(runner.map(double, {"x": [1, 2]}), FutureList[int])
        assert_type(runner.map(fetch, {"key": ["a"]}).result(), list[bytes])


def run_all() -> tuple[list[int], bytes]:
    """Run both flows (called by test_typing.py); the results' types are checked too."""
    runner_calls()
    ints = sync_flow(3)
    assert_type(ints, list[int])
    coro: Coroutine[Any, Any, bytes] = async_flow("k")
    return ints, asyncio.run(coro)


def task_worker_calls(key: str, fut: TaskFuture[int]) -> None:  # never called: no broker
    assert_type(add.delay(1, y=2), TaskFuture[int])
    assert_type(fetch.delay(key), TaskFuture[bytes])
    assert_type(fetch.apply_async((key,), wait_for=[fut]), TaskFuture[bytes])
    assert_type(add.apply_async((1,), {"y": 2}, wait_for=fut), TaskFuture[int])


def wrong_calls_are_errors() -> None:  # never called: mypy checks the ignores are needed
    double.submit("x")  # type: ignore[call-overload]
    double("x")  # type: ignore[call-overload]
    fetch.submit(1)  # type: ignore[call-overload]
    sync_flow("n")  # type: ignore[call-overload]
    double.fn("x")  # type: ignore[arg-type]
    fetch.fn(1)  # type: ignore[arg-type, unused-coroutine]
    _coroutine: Coroutine[Any, Any, str] = fetch("k")  # type: ignore[assignment]
    _result: str = double.submit(1).result()  # type: ignore[assignment]
    _done: set[TaskFuture[str]] = wait([double.submit(1)]).done  # type: ignore[assignment]
    _narrower: TaskFuture[bool] = double.submit(1)  # type: ignore[assignment]
    wait([1])  # type: ignore[arg-type]


def prefect_paths() -> None:  # never called: the Prefect-style paths keep their types
    from collections.abc import Callable

    from asyncflow.flows import Flow
    from asyncflow.tasks import Task, exponential_backoff
    from asyncflow.utilities.annotations import opaque

    assert_type(exponential_backoff(backoff_factor=10), Callable[[int], list[float]])
    assert_type(exponential_backoff(1.5)(3), list[float])
    assert_type(opaque([1, 2]), opaque[list[int]])
    same_task: Task[..., int] = double  # the very classes asyncflow.task/flow build
    same_flow: Flow[..., list[int]] = sync_flow
    assert_type(same_task.submit(1), TaskFuture[int])
    assert_type(same_flow, Flow[..., list[int]])
    exponential_backoff("10")  # type: ignore[arg-type]


async def returned_states() -> None:  # never called: `return_state=True` types
    assert_type(double(1, return_state=True), State[int])
    assert_type(double(1, return_state=False), int)
    assert_type(double(1, return_state=True).result(), int)
    assert_type(double(1, return_state=True).result(raise_on_failure=False), int | BaseException)
    assert_type(await fetch("k", return_state=True), State[bytes])
    assert_type(sync_flow(1, return_state=True), State[list[int]])
    assert_type(await async_flow("k", return_state=True), State[bytes])
    assert_type(double(1), int)  # without it, the value as before
    double(1, return_state=1)  # type: ignore[call-overload]


def prefect_states() -> None:  # never called: the constructors build `State`s
    from asyncflow.states import Cancelled, Completed, Crashed, Failed, Pending, Running

    assert_type(Completed(message="m", data=1), State)
    assert_type(Failed(data=ValueError("x")), State)
    assert_type(Crashed(), State)
    assert_type(Cancelled(name="Stopped"), State)
    assert_type(Pending(), State)
    assert_type(Running(timestamp=1.0), State)
    Completed("m")  # type: ignore[call-arg]


async def named_limits() -> None:  # never called: the limit APIs keep Prefect's shapes
    from contextlib import AbstractAsyncContextManager, AbstractContextManager

    from asyncflow.concurrency import asyncio as aconcurrency
    from asyncflow.concurrency import get_limit, set_limit
    from asyncflow.concurrency.sync import concurrency, rate_limit

    assert_type(set_limit("db", 2, slot_decay_per_second=None), None)
    assert_type(get_limit("db"), tuple[int, float | None] | None)
    sync_cm: AbstractContextManager[None] = concurrency("db", occupy=1, timeout_seconds=5)
    with sync_cm:
        pass
    assert_type(rate_limit(["api"], occupy=2, strict=True), None)
    async_cm: AbstractAsyncContextManager[None] = aconcurrency.concurrency("db")
    async with async_cm:
        pass
    assert_type(await aconcurrency.rate_limit("api"), None)
    concurrency(3)  # type: ignore[arg-type]


def tags_context() -> None:  # never called: `with tags(...) as current` is a set of str
    from asyncflow import tags
    from asyncflow.context import tags as context_tags

    with tags("a", "b") as current:
        assert_type(current, set[str])
    with context_tags("c"):
        pass
    tags(1)  # type: ignore[arg-type]


def prefect_retry_delays() -> None:  # never called: Prefect's delay callables type-check
    from asyncflow.tasks import exponential_backoff

    @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=10))
    def backs_off(x: int) -> int:
        return x

    @task(retries=2, retry_delay_seconds=lambda retries: [1.0] * retries)
    def listed(x: int) -> int:
        return x

    assert_type(backs_off.submit(1), TaskFuture[int])
    assert_type(listed.with_options(retry_delay_seconds=[1, 2]).submit(1), TaskFuture[int])
    task(retry_delay_seconds="soon")  # type: ignore[arg-type]


def prefect_hooks() -> None:  # never called: both hook forms and the decorators type-check
    from collections.abc import Callable

    from asyncflow.runs import TaskRun

    def asyncflow_form(t: object, state: State) -> None: ...

    def prefect_form(t: object, run: TaskRun, state: State) -> None: ...

    def prefect_condition(t: object, run: TaskRun, state: State) -> bool:
        return True

    @task(on_failure=[asyncflow_form, prefect_form], retry_condition_fn=prefect_condition)
    def hooked(x: int) -> int:
        return x

    kept: Callable[[object, TaskRun, State], None] = hooked.on_completion(prefect_form)
    also: Callable[[object, State], None] = sync_flow.on_crashed(asyncflow_form)
    assert kept is prefect_form  # the decorators return the function
    assert also is asyncflow_form
    hooked.on_running(3)  # type: ignore[type-var]
    assert_type(hooked.submit(1), TaskFuture[int])


class Account:
    """Tasks and flows on methods: the bound object's parameters are the function's
    after `self` (mypy does not model `@task @classmethod` or a static method's task
    looked up on an instance: docs/migrating-from-prefect.md)."""

    def __init__(self, balance: int) -> None:
        self.balance = balance

    @task
    def deposit(self, amount: int) -> int:
        return self.balance + amount

    @task
    async def fetch_rate(self, currency: str) -> float:
        return 1.0

    @flow
    def settle(self, amounts: list[int]) -> list[int]:
        return self.deposit.map(amounts).result()

    @task
    @staticmethod
    def fee(amount: int) -> int:
        return amount // 100


async def method_calls(account: Account) -> None:  # never called: the types are checked
    assert_type(account.deposit(1), int)
    assert_type(account.deposit.submit(1), TaskFuture[int])
    assert_type(account.deposit.map([1, 2]), FutureList[int])
    assert_type(account.deposit.submit(amount=1).result(), int)
    assert_type(await account.fetch_rate("EUR"), float)
    assert_type(account.fetch_rate.submit("EUR"), TaskFuture[float])
    assert_type(account.settle([1]), list[int])
    assert_type(Account.deposit(account, 1), int)  # on the class: `self` passed explicitly
    assert_type(Account.fee.submit(100), TaskFuture[int])
    account.deposit.submit("1")  # type: ignore[call-overload]
    account.deposit(account, 1)  # type: ignore[call-overload]
    account.settle("x")  # type: ignore[call-overload]
    Account.deposit(1)  # type: ignore[call-overload]


def validated_flows() -> None:  # never called: the option type-checks
    @flow(validate_parameters=False)
    def loose(n: int) -> int:
        return n

    assert_type(loose.validate_parameters({"n": "1"}), dict[str, Any])
    assert_type(loose.with_options(validate_parameters=True)(1), int)
    flow(validate_parameters="no")  # type: ignore[call-overload]
