"""The example runner of docs/writing-a-runner.md (examples/executor_runner.py),
driven through asyncflow's semantics over a thread and a process executor.

It uses only the runner author's API, so these tests also check that API: outcomes
reported from executor threads, retries the core schedules, a deadline that abandons
a thread, a cancel that stops a queued attempt, and a dead process worker reported
as a crash. `make_executor_runner` is the factory the conformance suite registers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import importlib.util
import multiprocessing
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from asyncflow import exceptions, flow, task, unmapped
from asyncflow.states import StateType
from asyncflow.task_runners import TaskRunner

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "executor_runner.py"
DOC = ROOT / "docs" / "writing-a-runner.md"


def _load_example() -> Any:
    # By path: the repository root need not be on sys.path (it is not under pytest).
    spec = importlib.util.spec_from_file_location("executor_runner", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ExecutorTaskRunner = _load_example().ExecutorTaskRunner
THREAD_PREFIX = "asyncflow-executor"


def make_executor_runner(max_workers: int = 4) -> TaskRunner:
    """The example runner over a thread pool (for the conformance registry)."""
    runner: TaskRunner = ExecutorTaskRunner(
        lambda: cf.ThreadPoolExecutor(max_workers, thread_name_prefix=THREAD_PREFIX)
    )
    return runner


def make_process_runner() -> TaskRunner:
    context = multiprocessing.get_context("forkserver")
    runner: TaskRunner = ExecutorTaskRunner(lambda: cf.ProcessPoolExecutor(2, mp_context=context))
    return runner


# ---- tasks (module level: a process pool imports them by name) ------------------------


@task
def inc(x: int) -> int:
    return x + 1


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def fail(message: str) -> int:
    raise ValueError(message)


@task
async def ainc(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@task
def where() -> str:
    return threading.current_thread().name


@task
def parent(x: int) -> tuple[int, str]:
    child = inc.submit(x)  # nested: goes to the runner executing this task
    thread = where.submit()
    return child.result(), thread.result()


@task
def wait_on(gate: threading.Event, started: threading.Event | None = None) -> str:
    if started is not None:
        started.set()
    assert gate.wait(10), "the test never opened the gate"
    return "done"


@task
def record(log: list[str], name: str) -> None:
    log.append(name)


class Flaky:
    """Fails `failures` times, then returns; notes when each attempt began."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts: list[float] = []

    def __call__(self) -> str:
        self.starts.append(time.monotonic())
        if len(self.starts) <= self.failures:
            raise ConnectionError(f"attempt {len(self.starts)}")
        return "ok"


@task(retries=2)
def always_fails() -> None:
    raise LookupError("again")


@task(retries=1)
def crash() -> None:
    os._exit(3)  # the worker process dies mid-task


# ---- the doc shows this very file -------------------------------------------------------


def test_the_doc_shows_the_example_file_verbatim() -> None:
    text = DOC.read_text()
    blocks = re.findall(
        r"<!-- file: examples/executor_runner.py -->\n```python\n(.*?)```", text, re.DOTALL
    )
    assert len(blocks) == 1, "writing-a-runner.md must include examples/executor_runner.py once"
    assert blocks[0] == EXAMPLE.read_text()
    assert len(EXAMPLE.read_text().splitlines()) < 80


# ---- over a thread pool -----------------------------------------------------------------


@pytest.mark.timeout(20)
def test_results_futures_as_arguments_and_map() -> None:
    with make_executor_runner() as runner:
        one = runner.submit(inc, {"x": 1})
        both = runner.submit(add, {"x": one, "y": runner.submit(inc, {"x": 10})})
        assert both.result() == 13
        assert runner.map(add, {"x": [1, 2, 3], "y": unmapped(10)}).result() == [11, 12, 13]
        assert runner.submit(where, {}).result().startswith(THREAD_PREFIX)


@pytest.mark.timeout(20)
def test_wait_for_orders_runs_without_data() -> None:
    log: list[str] = []
    gate = threading.Event()
    with make_executor_runner() as runner:
        first = runner.submit(wait_on, {"gate": gate})
        then = runner.submit(record, {"log": log, "name": "after"}, wait_for=[first])
        runner.submit(record, {"log": log, "name": "free"}).wait()
        assert log == ["free"]
        assert not then.done()
        gate.set()
        then.result()
    assert log == ["free", "after"]


@pytest.mark.timeout(20)
def test_a_failing_task_keeps_its_exception_and_skips_its_downstream() -> None:
    with make_executor_runner() as runner:
        failed = runner.submit(fail, {"message": "boom"})
        downstream = runner.submit(inc, {"x": failed})
        with pytest.raises(ValueError, match="boom"):
            failed.result()
        with pytest.raises(exceptions.UpstreamFailed) as info:
            downstream.result()
    assert isinstance(info.value.__cause__, ValueError)
    assert failed.state.type is StateType.FAILED
    assert downstream.state.name == "NotReady"


@pytest.mark.timeout(20)
def test_retries_wait_their_delay_between_attempts() -> None:
    flaky = Flaky(failures=2)
    retried = task(name="flaky", retries=2, retry_delay_seconds=0.05)(flaky)
    with make_executor_runner() as runner:
        assert runner.submit(retried, {}).result() == "ok"
    first, second, third = flaky.starts
    assert second - first >= 0.05
    assert third - second >= 0.05
    never = task(name="never", retries=1)(Flaky(failures=5))
    with make_executor_runner() as runner:
        fut = runner.submit(never, {})
        with pytest.raises(ConnectionError, match="attempt 2"):
            fut.result()
    assert fut.state.attempts == 2


@pytest.mark.timeout(20)
def test_a_timeout_abandons_the_running_thread() -> None:
    gate, started = threading.Event(), threading.Event()
    stuck = wait_on.with_options(timeout_seconds=0.2)
    with make_executor_runner() as runner:
        fut = runner.submit(stuck, {"gate": gate, "started": started})
        with pytest.raises(exceptions.TaskTimeout, match="wait_on"):
            fut.result(timeout=5)
        assert started.is_set()
        assert not gate.is_set()
        assert fut.state.name == "TimedOut"
        gate.set()  # the abandoned call returns; its value is dropped
    assert fut.state.name == "TimedOut"


@pytest.mark.timeout(20)
def test_cancel_of_runs_not_started() -> None:
    gate, started = threading.Event(), threading.Event()
    with make_executor_runner(max_workers=1) as runner:
        busy = runner.submit(wait_on, {"gate": gate, "started": started})
        assert started.wait(5)
        queued = runner.submit(inc, {"x": 1})  # in the executor's queue, behind `busy`
        waiting = runner.submit(inc, {"x": busy})  # waits for its upstream
        assert queued.cancel()
        assert waiting.cancel()
        assert queued.state.type is StateType.CANCELLED
        assert waiting.state.type is StateType.CANCELLED
        assert not busy.cancel()  # a running thread cannot be stopped: it goes on
        gate.set()
        assert busy.result() == "done"
    with pytest.raises(exceptions.TaskCancelled):
        queued.result()


@pytest.mark.timeout(20)
def test_nested_submission_goes_to_the_same_runner() -> None:
    with make_executor_runner(max_workers=3) as runner:
        value, thread = runner.submit(parent, {"x": 1}).result()
    assert value == 2
    assert thread.startswith(THREAD_PREFIX)


@pytest.mark.timeout(20)
def test_async_tasks_run_on_the_loop() -> None:
    with make_executor_runner() as runner:
        assert runner.map(ainc, {"x": [1, 2]}).result() == [2, 3]


@pytest.mark.timeout(20)
def test_a_flow_uses_a_fresh_duplicate() -> None:
    @flow(task_runner=make_executor_runner())
    def pipeline(xs: list[int]) -> list[int]:
        return inc.map(add.map(xs, unmapped(1)))  # type: ignore[return-value]  # resolved

    assert pipeline([1, 2]) == [3, 4]
    assert pipeline([5]) == [7]


# ---- over a process pool ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_process_pool_results_errors_and_a_crash() -> None:
    with make_process_runner() as runner:
        assert runner.submit(add, {"x": runner.submit(inc, {"x": 1}), "y": 3}).result() == 5
        with pytest.raises(ValueError, match="far away"):
            runner.submit(fail, {"message": "far away"}).result()
        retried = runner.submit(always_fails, {})  # resubmitted from the pool's own thread
        with pytest.raises(LookupError):
            retried.result()
        assert retried.state.attempts == 3
        if sys.version_info >= (3, 13):
            # CPython 3.13's ProcessPoolExecutor hangs in shutdown() once a worker died
            # (its manager thread never ends): the crash is checked on 3.10-3.12 only.
            return
        crashed = runner.submit(crash, {})
        with pytest.raises(exceptions.TaskCrashed, match="crash"):
            crashed.result()
    assert crashed.state.type is StateType.CRASHED
    # The retry found the pool broken (ProcessPoolExecutor breaks it whole): a crash too.
    assert crashed.state.attempts == 2
    error = crashed.exception()
    assert isinstance(error, exceptions.TaskCrashed)
    assert isinstance(error.__cause__, cf.process.BrokenProcessPool)
