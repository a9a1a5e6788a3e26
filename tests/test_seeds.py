"""Every example of the two seed pages (Prefect 3's task-runner docs), with `prefect`
replaced by `asyncflow`, in a sync and an async version.

Changes to the seed code, each for a stated reason:
- sleeps are scaled from seconds to milliseconds (the examples' shape is kept);
- `DaskTaskRunner()` gets an in-process cluster (`processes=False`, a free dashboard
  port), so the task's `print` reaches this process's captured stdout;
- `print` output is checked with `capsys`, return values with asserts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import DASK_THREADS

from asyncflow import FutureList, TaskFuture, flow, task, unmapped
from asyncflow.contrib.dask import DaskTaskRunner
from asyncflow.futures import wait
from asyncflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

IN_PROCESS_CLUSTER = {"processes": False, "n_workers": 1, "dashboard_address": ":0"}

# ---- Configure a task runner: the elevator -------------------------------------------------


def test_elevator(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def stop_at_floor(floor: int) -> None:
        print(f"elevator moving to floor {floor}")
        time.sleep(floor / 1000)  # seed: time.sleep(floor)
        print(f"elevator stops on floor {floor}")

    seen: dict[str, Any] = {}

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def elevator() -> None:
        floors = []
        for floor in range(10, 0, -1):
            floors.append(stop_at_floor.submit(floor))
        wait(floors)
        seen["states"] = [f.state.name for f in floors]

    assert elevator() is None
    assert seen["states"] == ["Completed"] * 10
    out = capsys.readouterr().out
    for floor in range(1, 11):
        assert f"elevator moving to floor {floor}\n" in out
        assert f"elevator stops on floor {floor}\n" in out


@pytest.mark.asyncio
async def test_elevator_async(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    async def stop_at_floor(floor: int) -> None:
        print(f"elevator moving to floor {floor}")
        await asyncio.sleep(floor / 1000)
        print(f"elevator stops on floor {floor}")

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    async def elevator() -> int:
        floors = [stop_at_floor.submit(floor) for floor in range(10, 0, -1)]
        done, not_done = await wait(floors)
        assert not not_done
        return len(done)

    assert await elevator() == 10
    out = capsys.readouterr().out
    assert out.count("elevator stops on floor") == 10


# ---- Access results from submitted tasks ------------------------------------------------------


def test_hello_world(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def say_hello(name: str) -> str:
        return f"Hello {name}!"

    @task
    def print_result(result: object) -> None:
        print(type(result))
        print(result)

    @flow(name="hello-flow")
    def hello_world() -> None:
        future = say_hello.submit("Marvin")
        print_result.submit(future).wait()

    hello_world()
    assert capsys.readouterr().out == "<class 'str'>\nHello Marvin!\n"


@pytest.mark.asyncio
async def test_hello_world_async(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    async def say_hello(name: str) -> str:
        return f"Hello {name}!"

    @task
    async def print_result(result: object) -> None:
        print(type(result))
        print(result)

    @flow(name="hello-flow")
    async def hello_world() -> None:
        future = say_hello.submit("Marvin")
        await print_result.submit(future).wait_async()

    await hello_world()
    assert capsys.readouterr().out == "<class 'str'>\nHello Marvin!\n"


def test_result_of_a_future(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def my_task() -> int:
        return 42

    @flow
    def my_flow() -> None:
        future = my_task.submit()
        result = future.result()
        print(result)

    my_flow()
    assert capsys.readouterr().out == "42\n"


@pytest.mark.asyncio
async def test_result_of_a_future_async() -> None:
    @task
    async def my_task() -> int:
        return 42

    @flow
    async def my_flow() -> int:
        future = my_task.submit()
        return await future

    assert await my_flow() == 42


def _raise_on_failure_flow(fail: bool, kind: str) -> Any:
    if kind == "sync":

        @task
        def my_task() -> str:
            if fail:
                raise ValueError("boom")
            return "I'm a task!"

        @flow
        def my_flow() -> tuple[str, object]:
            future = my_task.submit()
            result = future.result(raise_on_failure=False)
            if future.state.is_failed():
                return "failed", result
            return "ok", result

        return my_flow

    @task
    async def my_async_task() -> str:
        if fail:
            raise ValueError("boom")
        return "I'm a task!"

    @flow
    async def my_async_flow() -> tuple[str, object]:
        future = my_async_task.submit()
        await future.wait_async()
        result = future.result(raise_on_failure=False)  # final: never blocks
        if future.state.is_failed():
            return "failed", result
        return "ok", result

    return my_async_flow


@pytest.mark.parametrize("fail", [False, True])
def test_raise_on_failure_false(fail: bool) -> None:
    outcome, result = _raise_on_failure_flow(fail, "sync")()
    if fail:
        assert outcome == "failed"
        assert isinstance(result, ValueError)
        assert str(result) == "boom"
    else:
        assert (outcome, result) == ("ok", "I'm a task!")


@pytest.mark.asyncio
@pytest.mark.parametrize("fail", [False, True])
async def test_raise_on_failure_false_async(fail: bool) -> None:
    outcome, result = await _raise_on_failure_flow(fail, "async")()
    if fail:
        assert outcome == "failed"
        assert isinstance(result, ValueError)
    else:
        assert (outcome, result) == ("ok", "I'm a task!")


def test_wait_for_orders_tasks_without_data() -> None:
    order: list[str] = []

    @task
    def task_a() -> None:
        order.append("a")

    @task
    def task_b() -> None:
        order.append("b")

    @task
    def task_c() -> None:
        order.append("c")

    @task
    def task_d() -> None:
        order.append("d")

    @flow
    def my_flow() -> None:
        a = task_a.submit()
        b = task_b.submit()
        # Wait for task_a and task_b to complete
        c = task_c.submit(wait_for=[a, b])
        # task_d will wait for task_c to complete
        # Note: If waiting for one task it must still be in a list.
        task_d(wait_for=[c])

    my_flow()
    assert sorted(order[:2]) == ["a", "b"]
    assert order[2:] == ["c", "d"]


@pytest.mark.asyncio
async def test_wait_for_orders_tasks_without_data_async() -> None:
    order: list[str] = []

    @task
    async def task_a() -> None:
        order.append("a")

    @task
    def task_b() -> None:
        order.append("b")

    @task
    async def task_c() -> None:
        order.append("c")

    @task
    async def task_d() -> None:
        order.append("d")

    @flow
    async def my_flow() -> None:
        a = task_a.submit()
        b = task_b.submit()
        c = task_c.submit(wait_for=[a, b])
        await task_d(wait_for=[c])

    await my_flow()
    assert sorted(order[:2]) == ["a", "b"]
    assert order[2:] == ["c", "d"]


# ---- Mapping over iterables ---------------------------------------------------------------------


def test_map_flow(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def print_nums(nums: list[int]) -> None:
        for n in nums:
            print(n)

    @task
    def square_num(num: int) -> int:
        return num**2

    @flow
    def map_flow(nums: list[int]) -> None:
        print_nums(nums)
        squared_nums = square_num.map(nums)
        print_nums(squared_nums)

    map_flow([1, 2, 3, 5, 8, 13])
    printed = [int(line) for line in capsys.readouterr().out.split()]
    assert printed == [1, 2, 3, 5, 8, 13, 1, 4, 9, 25, 64, 169]


@pytest.mark.asyncio
async def test_map_flow_async(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    async def print_nums(nums: list[int]) -> None:
        for n in nums:
            print(n)

    @task
    async def square_num(num: int) -> int:
        await asyncio.sleep(0)
        return num**2

    @flow
    async def map_flow(nums: list[int]) -> None:
        await print_nums(nums)
        squared_nums = square_num.map(nums)
        await print_nums(squared_nums)

    await map_flow([1, 2, 3, 5, 8, 13])
    printed = [int(line) for line in capsys.readouterr().out.split()]
    assert printed == [1, 2, 3, 5, 8, 13, 1, 4, 9, 25, 64, 169]


def test_map_with_static_value() -> None:
    @task
    def add_together(x: int, y: int) -> int:
        return x + y

    @flow
    def sum_it(numbers: list[int], static_value: int) -> list[int]:
        futures = add_together.map(numbers, static_value)
        return futures.result()

    resulting_sum = sum_it([1, 2, 3], 5)
    assert resulting_sum == [6, 7, 8]


@pytest.mark.asyncio
async def test_map_with_static_value_async() -> None:
    @task
    async def add_together(x: int, y: int) -> int:
        return x + y

    @flow
    async def sum_it(numbers: list[int], static_value: int) -> list[int]:
        futures = add_together.map(numbers, static_value)
        return await futures

    assert await sum_it([1, 2, 3], 5) == [6, 7, 8]


def test_mapped_futures_result_is_shorthand() -> None:
    @task
    def some_task(x: int) -> int:
        return x * 10

    some_iterable = [1, 2, 3]
    with ThreadPoolTaskRunner(max_workers=2):
        futures = some_task.map(some_iterable)
        results = futures.result()
        futures2 = some_task.map(some_iterable)
        results2 = [future.result() for future in futures2]
    assert isinstance(futures, FutureList)
    assert results == results2 == [10, 20, 30]


def test_unmapped_static_iterable() -> None:
    @task
    def sum_plus(x: int, static_iterable: list[int]) -> int:
        return x + sum(static_iterable)

    @flow
    def sum_it(numbers: list[int], static_iterable: list[int]) -> list[int]:
        futures = sum_plus.map(numbers, unmapped(static_iterable))
        return futures.result()

    resulting_sum = sum_it([4, 5, 6], [1, 2, 3])
    assert resulting_sum == [10, 11, 12]


@pytest.mark.asyncio
async def test_unmapped_static_iterable_async() -> None:
    @task
    async def sum_plus(x: int, static_iterable: list[int]) -> int:
        return x + sum(static_iterable)

    @flow
    async def sum_it(numbers: list[int], static_iterable: list[int]) -> list[int]:
        return await sum_plus.map(numbers, unmapped(static_iterable))

    assert await sum_it([4, 5, 6], [1, 2, 3]) == [10, 11, 12]


# ---- Use multiple task runners (nested flows) ---------------------------------------------------


@pytest.mark.allow_threads(*DASK_THREADS)
@pytest.mark.timeout(60)
def test_nested_flows_with_their_own_runners(capsys: pytest.CaptureFixture[str]) -> None:
    @task
    def hello_local(name: str) -> None:
        time.sleep(0.002)  # seed: time.sleep(2)
        print(f"Hello {name}!")

    @flow  # implicitly uses the default task runner, ThreadPoolTaskRunner
    def concurrent_nested_flow() -> None:
        marvin = hello_local.submit("marvin")
        ford = hello_local.submit("ford")
        marvin.wait(), ford.wait()

    @task
    def hello_dask() -> None:
        print("Hello from Dask!")

    # seed: DaskTaskRunner(); here with an in-process cluster (see the top)
    @flow(task_runner=DaskTaskRunner(cluster_kwargs=IN_PROCESS_CLUSTER))
    def dask_nested_flow() -> None:
        hello_dask.submit().wait()

    @flow  # implicitly uses the default task runner, ThreadPoolTaskRunner
    def parent_flow() -> None:
        concurrent_nested_flow()
        dask_nested_flow()

    parent_flow()
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines[:2]) == ["Hello ford!", "Hello marvin!"]
    assert lines[2:] == ["Hello from Dask!"]


@pytest.mark.asyncio
@pytest.mark.allow_threads(*DASK_THREADS)
@pytest.mark.timeout(60)
async def test_nested_flows_with_their_own_runners_async(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @task
    async def hello_local(name: str) -> None:
        await asyncio.sleep(0.002)
        print(f"Hello {name}!")

    @flow
    async def concurrent_nested_flow() -> None:
        marvin = hello_local.submit("marvin")
        ford = hello_local.submit("ford")
        await marvin.wait_async()
        await ford.wait_async()

    @task
    def hello_dask() -> None:
        print("Hello from Dask!")

    # seed: DaskTaskRunner(); here with an in-process cluster (see the top)
    @flow(task_runner=DaskTaskRunner(cluster_kwargs=IN_PROCESS_CLUSTER))
    async def dask_nested_flow() -> None:
        await hello_dask.submit().wait_async()

    @flow
    async def parent_flow() -> None:
        await concurrent_nested_flow()
        await dask_nested_flow()

    await parent_flow()
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines[:2]) == ["Hello ford!", "Hello marvin!"]
    assert lines[2:] == ["Hello from Dask!"]


# ---- API reference: ThreadPoolTaskRunner and ProcessPoolTaskRunner ---------------------------


@task
def some_io_bound_task(x: int) -> int:
    # making a query to a database, reading a file, etc.
    return x * 2


@task
def compute_heavy_task(n: int) -> int:
    return sum(i**2 for i in range(n))


def test_thread_pool_runner_with_a_flow() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))  # use at most 3 threads at a time
    def my_io_bound_flow() -> list[int]:
        futures = []
        for i in range(10):
            future = some_io_bound_task.submit(i * 100)
            futures.append(future)
        return [future.result() for future in futures]

    assert my_io_bound_flow() == [i * 200 for i in range(10)]


@pytest.mark.asyncio
async def test_thread_pool_runner_with_an_async_flow() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    async def my_io_bound_flow() -> list[int]:
        futures = [some_io_bound_task.submit(i * 100) for i in range(10)]
        return [await future for future in futures]

    assert await my_io_bound_flow() == [i * 200 for i in range(10)]


def test_thread_pool_runner_as_a_context_manager() -> None:
    # Use the runner directly
    with ThreadPoolTaskRunner(max_workers=2) as runner:
        future1 = runner.submit(some_io_bound_task, {"x": 1})
        future2 = runner.submit(some_io_bound_task, {"x": 2})

        result1 = future1.result()  # 2
        result2 = future2.result()  # 4
    assert (result1, result2) == (2, 4)
    assert isinstance(future1, TaskFuture)


@pytest.mark.asyncio
async def test_thread_pool_runner_as_an_async_context_manager() -> None:
    async with ThreadPoolTaskRunner(max_workers=2) as runner:
        future1 = runner.submit(some_io_bound_task, {"x": 1})
        future2 = runner.submit(some_io_bound_task, {"x": 2})
        assert (await future1, await future2) == (2, 4)


def test_thread_pool_max_workers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # seed: export PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS=8
    monkeypatch.setenv("ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS", "8")
    seen: list[int] = []

    @flow(task_runner=ThreadPoolTaskRunner())  # Uses 8 workers from setting
    def my_flow() -> None:
        seen.append(1)

    assert isinstance(my_flow.task_runner, ThreadPoolTaskRunner)
    assert my_flow.task_runner.max_workers == 8
    my_flow()
    assert seen == [1]


def test_process_pool_example_with_a_flow() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=4))
    def my_flow() -> list[int]:
        futures = []
        for i in range(10):
            future = compute_heavy_task.submit(i * 1000)
            futures.append(future)
        return [future.result() for future in futures]

    assert my_flow() == [sum(j**2 for j in range(i * 1000)) for i in range(10)]


def test_process_pool_example_as_a_context_manager() -> None:
    @task
    def my_task(x: int) -> int:  # defined in a test function: pickled by value
        return x * 2

    with ProcessPoolTaskRunner(max_workers=2) as runner:
        future1 = runner.submit(my_task, {"x": 1})
        future2 = runner.submit(my_task, {"x": 2})

        result1 = future1.result()  # 2
        result2 = future2.result()  # 4
    assert (result1, result2) == (2, 4)


def test_runner_map_and_duplicate_and_name() -> None:
    template = ThreadPoolTaskRunner(max_workers=2)
    copy = template.duplicate()
    assert copy is not template
    assert isinstance(copy, ThreadPoolTaskRunner)
    assert copy.max_workers == 2
    assert template.name == "ThreadPoolTaskRunner"
    with copy as runner:
        futures = runner.map(some_io_bound_task, {"x": [1, 2, 3]})
        assert futures.result() == [2, 4, 6]
