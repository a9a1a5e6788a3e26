"""The feature table of docs/migrating-from-prefect.md stays true.

Each row marked "supported" or "differs" claims a feature: it has a check here, named
by the row's first cell, that the feature exists and works (the test fails on a
claimed row without a check, and on a check without a row). Rows marked "not
supported" that name task options check that `@task` refuses them, so the table is
flagged when one of them lands. "planned" rows are the lead's to update.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WAIT, Boom, boom, ident, wait_for_state

from asyncflow import allow_failure, flow, quote, task, unmapped
from asyncflow.exceptions import UpstreamFailed
from asyncflow.futures import FutureList, as_completed, wait
from asyncflow.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "migrating-from-prefect.md"
STATUSES = {"supported", "differs", "not supported", "planned"}


def feature_table() -> dict[str, str]:
    """{first cell: status} of the table under "## Feature table"."""
    text = GUIDE.read_text().split("## Feature table", 1)[1]
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in STATUSES:
            rows[cells[0]] = cells[1]
    return rows


TABLE = feature_table()


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(xs: list[int], extra: list[int]) -> int:
    return sum(xs) + sum(extra)


def check_flow_task_runner() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f() -> list[int]:
        return add.map([1, 2], 1)

    assert f() == [2, 3]


def check_thread_pool() -> None:
    runner = ThreadPoolTaskRunner(max_workers=3, thread_name_prefix="mig")
    assert runner.max_workers == 3
    with runner:
        assert runner.submit(add, {"x": 1, "y": 2}).result(timeout=WAIT) == 3


def check_env(name: str, runner_type: type[ThreadPoolTaskRunner | ProcessPoolTaskRunner]) -> None:
    old = os.environ.get(name)
    os.environ[name] = "3"
    try:
        assert runner_type().max_workers == 3
    finally:
        if old is None:
            del os.environ[name]
        else:
            os.environ[name] = old


def check_process_pool() -> None:
    with ProcessPoolTaskRunner(max_workers=2) as runner:
        assert runner.max_workers == 2
        assert runner.submit(add, {"x": 2, "y": 3}).result(timeout=WAIT) == 5


PROCESS_STATE: list[str] = []  # set by `remember` in the worker processes


def remember(value: str) -> None:
    PROCESS_STATE.append(value)


@task
def remembered() -> list[str]:
    return PROCESS_STATE


def check_process_initializer() -> None:
    runner = ProcessPoolTaskRunner(max_workers=1, initializer=remember, initargs=("set",))
    with runner:
        assert runner.submit(remembered, {}).result(timeout=WAIT) == ["set"]
    assert PROCESS_STATE == []  # it ran in the worker


def check_dask() -> None:
    from asyncflow.contrib.dask import DaskTaskRunner
    from asyncflow.task_runners import DaskTaskRunner as Lazy

    assert Lazy is DaskTaskRunner
    assert issubclass(DaskTaskRunner, TaskRunner)  # run for real in tests/test_dask.py


def check_submit() -> None:
    assert add.submit(1, 2).result(timeout=WAIT) == 3


def check_map_unmapped() -> None:
    assert total.map([[1], [2]], unmapped([10])).result(timeout=WAIT) == [11, 12]


def check_wait_for() -> None:
    first = ident.submit(1)
    second = ident.submit(2, wait_for=[first])
    assert second.result(timeout=WAIT) == 2
    assert first.done()


def check_allow_failure() -> None:
    failed = boom.submit()
    assert isinstance(ident.submit(allow_failure(failed)).result(timeout=WAIT), Boom)
    with pytest.raises(UpstreamFailed):
        ident.submit(failed).result(timeout=WAIT)


def check_quote() -> None:
    inner = ident.submit(1)
    value = ident.submit(quote([inner])).result(timeout=WAIT)
    assert value[0] is inner


def check_future_methods() -> None:
    fut = boom.submit()
    fut.wait(WAIT)
    assert fut.state.is_failed()
    assert isinstance(fut.result(raise_on_failure=False), Boom)

    async def main() -> int:
        return await ident.submit(5)

    assert asyncio.run(main()) == 5


def check_wait_as_completed() -> None:
    futures = ident.map([1, 2, 3])
    done, not_done = wait(futures, timeout=WAIT)
    assert len(done) == 3
    assert not not_done
    assert sorted(f.result() for f in as_completed(futures, timeout=WAIT)) == [1, 2, 3]


def check_future_list() -> None:
    futures = ident.map([1, 2])
    assert isinstance(futures, FutureList)
    assert futures.result(timeout=WAIT) == [1, 2]


def check_runner_api() -> None:
    template = ThreadPoolTaskRunner(max_workers=2)
    with template.duplicate() as runner:
        assert runner.submit(add, {"x": 1, "y": 1}).result(timeout=WAIT) == 2
        assert runner.map(add, {"x": [1, 2], "y": 1}).result(timeout=WAIT) == [2, 3]
        assert runner.name == "ThreadPoolTaskRunner"


def check_cancel_all() -> None:
    gate = threading.Event()

    @task
    def hold() -> bool:
        return gate.wait(WAIT)

    with ThreadPoolTaskRunner(max_workers=1) as runner:
        running = runner.submit(hold, {})
        wait_for_state(running, "Running")
        queued = runner.submit(ident, {"x": 1})  # no free worker: it waits
        assert runner.cancel_all() == 1
        gate.set()
    assert queued.state.is_cancelled()
    assert running.result() is True  # running ones finish


def check_nested_flows() -> None:
    seen: list[str] = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def inner() -> int:
        return add.submit(1, 1).result()

    @flow
    def outer() -> int:
        seen.append("outer")
        return inner() + add.submit(1, 2).result()

    assert outer() == 5
    assert seen == ["outer"]


def check_retries() -> None:
    calls: list[int] = []

    @task(
        retries=2,
        retry_delay_seconds=[0, 0],
        retry_jitter_factor=0.0,
        retry_condition_fn=lambda t, exc: isinstance(exc, Boom),
    )
    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise Boom("again")
        return len(calls)

    fut = flaky.submit()
    assert fut.result(timeout=WAIT) == 3
    assert fut.state.attempts == 3


def check_timeout() -> None:
    @task(timeout_seconds=0.05)
    async def sleepy() -> None:
        await asyncio.sleep(WAIT)

    fut = sleepy.submit()
    fut.wait(WAIT)
    assert fut.state.name == "TimedOut"


def check_hooks() -> None:
    seen: list[str] = []

    @task(
        on_completion=[lambda t, s: seen.append(s.name)],
        on_failure=[lambda t, s: seen.append(s.name)],
    )
    def f(x: int) -> int:
        return 1 // x

    with ThreadPoolTaskRunner(max_workers=2):  # its exit waits for the hooks too
        f.submit(1)
        f.submit(0)
    assert sorted(seen) == ["Completed", "Failed"]


def check_submit_without_flow() -> None:
    assert ident.submit(7).result(timeout=WAIT) == 7  # Prefect raises here


def check_concurrency_limits() -> None:
    limited = ident.with_options(max_concurrency=1)
    assert limited.map([1, 2, 3]).result(timeout=WAIT) == [1, 2, 3]
    assert ident.map([1, 2, 3], max_concurrency=2).result(timeout=WAIT) == [1, 2, 3]
    from asyncflow._concurrency import _registry
    from asyncflow.concurrency import set_limit

    set_limit("tag:database", 1)
    try:

        @task(tags=["database"])
        def query(x: int) -> float:
            return x * _registry.active("tag:database")  # the run holds the one slot

        assert query.map([1, 2, 3]).result(timeout=WAIT) == [1.0, 2.0, 3.0]
        assert _registry.active("tag:database") == 0
    finally:
        _registry.use_clock(None)  # forget the limit


def check_tags() -> None:
    from asyncflow import tags

    seen: list[list[str]] = []

    @task(tags=["db"], on_completion=[lambda task_, task_run, state: seen.append(task_run.tags)])
    def load() -> int:
        return 1

    @flow(tags=["etl"])
    def pipeline() -> int:
        return load.submit().result()

    with tags("nightly"):
        assert pipeline() == 1
    assert seen == [["db", "etl", "nightly"]]


def check_task_workers() -> None:
    from workers_support import InProcessWorkers  # a memory:// broker and a worker thread

    with InProcessWorkers(slots=1):
        assert ident.delay(3).result(timeout=WAIT) == 3
        assert ident.apply_async((4,)).result(timeout=WAIT) == 4

    @flow(task_runner=InProcessWorkers(slots=1))
    def sends() -> list[int]:
        return ident.map([1, 2]).result()

    assert sends() == [1, 2]


def check_returned_states() -> None:
    from asyncflow.states import Completed, Failed

    @task(retries=1)
    def decide(ok: bool) -> object:
        return Completed(data="fine") if ok else Failed(message="not fine")

    assert decide(True) == "fine"
    fut = decide.submit(False)
    fut.wait(WAIT)
    assert fut.state.is_failed()
    assert fut.state.message == "not fine"
    assert fut.state.attempts == 1  # not retried


def check_return_state() -> None:
    state = boom("told", return_state=True)
    assert state.is_failed()
    with pytest.raises(Boom, match="told"):
        state.result()

    @flow
    async def answer() -> int:
        return 42

    assert asyncio.run(answer(return_state=True)).result() == 42


def check_typing() -> None:
    # What makes pyright see `TaskFuture[int]` for an async task (covariant results;
    # tests/typing_checks.py is the static check) and the plugin's entry point.
    from mypy.plugin import Plugin

    from asyncflow.futures import TaskFuture as Future
    from asyncflow.mypy import plugin
    from asyncflow.tasks import Task

    assert vars(Future)["__parameters__"][0].__covariant__
    assert vars(Task)["__parameters__"][1].__covariant__
    assert issubclass(plugin("2.0"), Plugin)


def check_validate_parameters() -> None:
    from asyncflow.exceptions import ParameterTypeError

    @flow
    def typed(n: int) -> int:
        return n

    assert typed("3") == 3  # converted, as Prefect does
    with pytest.raises(ParameterTypeError, match="parameter n"):
        typed("three")  # type: ignore[arg-type]
    assert typed.with_options(validate_parameters=False)("3") == "3"  # type: ignore[arg-type]


class Meter:
    def __init__(self, unit: int) -> None:
        self.unit = unit

    @task
    def measure(self, x: int) -> int:
        return x * self.unit

    @task
    @classmethod
    def name_of(cls) -> str:
        return cls.__name__

    @task
    @staticmethod
    def zero() -> int:
        return 0

    @flow
    def survey(self, xs: list[int]) -> list[int]:
        return self.measure.map(xs)


def check_methods() -> None:
    meter = Meter(10)
    assert meter.measure(1) == 10
    assert meter.measure.submit(2).result(timeout=WAIT) == 20
    assert meter.survey([1, 2]) == [10, 20]
    assert Meter.name_of() == "Meter"
    assert meter.zero.submit().result(timeout=WAIT) == 0


def check_flow_retries() -> None:
    attempts: list[int] = []

    @flow(retries=2, retry_delay_seconds=0)
    def troublesome() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("oopsie daisy")
        return len(attempts)

    assert troublesome() == 3


CHECKS: dict[str, Callable[[], None]] = {
    "`@flow(task_runner=...)`": check_flow_task_runner,
    "`ThreadPoolTaskRunner(max_workers=...)`": check_thread_pool,
    "`PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS`": lambda: check_env(
        "ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS", ThreadPoolTaskRunner
    ),
    "`ProcessPoolTaskRunner(max_workers=...)`": check_process_pool,
    "`ProcessPoolTaskRunner(initializer=..., initargs=...)`": check_process_initializer,
    "`PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS`": lambda: check_env(
        "ASYNCFLOW_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS", ProcessPoolTaskRunner
    ),
    "`DaskTaskRunner` (prefect-dask)": check_dask,
    "`task.submit(...)`": check_submit,
    "`task.map(...)` with `unmapped(...)`": check_map_unmapped,
    "`wait_for=[...]`": check_wait_for,
    "`allow_failure(...)`": check_allow_failure,
    "`quote(...)`": check_quote,
    "`future.result(raise_on_failure=...)`, `.wait()`, `.state`": check_future_methods,
    "`prefect.futures.wait`, `as_completed`": check_wait_as_completed,
    "`PrefectFutureList.result()`": check_future_list,
    "type checkers: `ParamSpec` signatures, `PrefectFuture[T]`": check_typing,
    "`TaskRunner.submit(task, parameters)`, `.map(...)`, `.duplicate()`": check_runner_api,
    "`ThreadPoolTaskRunner.cancel_all()`": check_cancel_all,
    "nested flows with their own task runner": check_nested_flows,
    "flow parameter validation, `validate_parameters=`": check_validate_parameters,
    "tasks and flows on methods, class methods, static methods": check_methods,
    "`retries`, `retry_delay_seconds`, `retry_jitter_factor`, `retry_condition_fn`": (
        check_retries
    ),
    "`timeout_seconds`": check_timeout,
    "`@flow(retries=..., retry_delay_seconds=...)`": check_flow_retries,
    "`on_completion`, `on_failure` state hooks": check_hooks,
    "returning `Completed(...)`, `Failed(...)`, ... from a task or flow": check_returned_states,
    "`return_state=True`": check_return_state,
    "submitting with no flow": check_submit_without_flow,
    "tag-based task concurrency limits": check_concurrency_limits,
    "`tags=` on tasks and flows, `with tags(...)`": check_tags,
    "`PrefectTaskRunner`, task workers, `task.delay()`": check_task_workers,
}

# "not supported" rows that name `@task` options: refused today.
REFUSED_OPTIONS = {
    "`cache_policy`, `cache_key_fn`": ("cache_policy", "cache_key_fn"),
    "`persist_result`, result storage": ("persist_result",),
    "`log_prints`, `get_run_logger()`": ("log_prints",),
}


def test_the_table_is_read() -> None:
    assert len(TABLE) >= 25
    assert set(TABLE.values()) <= STATUSES


def test_every_claimed_row_has_a_check_and_every_check_a_row() -> None:
    claimed = {name for name, status in TABLE.items() if status in ("supported", "differs")}
    assert claimed == set(CHECKS)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("row", sorted(CHECKS))
def test_claimed_feature_works(row: str) -> None:
    CHECKS[row]()


@pytest.mark.parametrize("row", sorted(REFUSED_OPTIONS))
def test_unsupported_options_are_refused(row: str) -> None:
    assert TABLE[row] == "not supported"
    for option in REFUSED_OPTIONS[row]:
        with pytest.raises(TypeError, match=option):
            task(**{option: None})


def test_planned_rows_are_not_there_yet() -> None:
    planned = [name for name, status in TABLE.items() if status == "planned"]
    assert planned == list(PLANNED)
    landed = [name for name, is_there in PLANNED.items() if is_there()]
    assert not landed, f"{landed} landed: mark the rows supported and give them checks"


# "planned" rows, each with a probe that says whether the feature is there yet.
PLANNED: dict[str, Callable[[], bool]] = {}
