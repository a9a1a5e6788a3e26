"""Bad input gets a clear error at the earliest moment, naming the task and the value
(issue #3, item 8)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
from helpers import WAIT, aident, ident

from asyncflow import exceptions, flow, task
from asyncflow.task_runners import ThreadPoolTaskRunner


def plain(x: int) -> int:
    return x


# ---- decorating ---------------------------------------------------------------------------


@pytest.mark.parametrize("decorate", [task, flow], ids=["task", "flow"])
@pytest.mark.parametrize("value", [5, "not a function", [plain]], ids=["int", "str", "list"])
def test_decorating_a_non_callable(decorate: Callable[..., Any], value: Any) -> None:
    with pytest.raises(TypeError, match="expects a function") as info:
        decorate(value)
    assert repr(value) in str(info.value)
    assert type(value).__name__ in str(info.value)


def test_a_parameter_named_wait_for_is_rejected_at_decoration() -> None:
    def sync_fn(x: int, wait_for: list[Any]) -> None: ...

    async def async_fn(*, wait_for: Any = None) -> None: ...

    with pytest.raises(ValueError, match="wait_for") as info:
        task(sync_fn)
    assert "sync_fn" in str(info.value)
    with pytest.raises(ValueError, match=r"'custom'.*wait_for"):
        task(name="custom")(async_fn)


TASK_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"retries": -1}, ValueError, "retries"),
    ({"retries": "2"}, TypeError, "retries"),
    ({"retries": 1.5}, TypeError, "retries"),
    ({"retry_delay_seconds": -1}, ValueError, "retry_delay_seconds"),
    ({"retry_delay_seconds": [1, -1]}, ValueError, "retry_delay_seconds"),
    ({"retry_jitter_factor": -0.5}, ValueError, "retry_jitter_factor"),
    ({"retry_condition_fn": 3}, TypeError, "retry_condition_fn"),
    ({"retries": True}, TypeError, "retries"),
    ({"retry_delay_seconds": float("nan")}, ValueError, "retry_delay_seconds"),
    ({"retry_delay_seconds": float("inf")}, ValueError, "retry_delay_seconds"),
    ({"retry_delay_seconds": [1, float("inf")]}, ValueError, "retry_delay_seconds"),
    ({"retry_delay_seconds": "1"}, TypeError, "retry_delay_seconds"),
    ({"retry_delay_seconds": True}, TypeError, "retry_delay_seconds"),
    ({"retry_jitter_factor": float("nan")}, ValueError, "retry_jitter_factor"),
    ({"retry_jitter_factor": float("inf")}, ValueError, "retry_jitter_factor"),
    ({"timeout_seconds": -1}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": 0}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": 0.0}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": float("nan")}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": "30"}, TypeError, "timeout_seconds"),
    ({"timeout_seconds": True}, TypeError, "timeout_seconds"),
    ({"max_concurrency": 0}, ValueError, "max_concurrency"),
    ({"max_concurrency": True}, TypeError, "max_concurrency"),
    ({"max_concurrency": "many"}, TypeError, "max_concurrency"),
    ({"name": ""}, TypeError, "name"),
    ({"on_failure": [1]}, TypeError, "on_failure"),
    ({"on_completion": "hook"}, TypeError, "on_completion"),
]


def _value_of(options: dict[str, Any]) -> str:
    value = next(iter(options.values()))
    return repr(value[-1] if isinstance(value, list) else value)


@pytest.mark.parametrize(("options", "error", "option"), TASK_OPTIONS)
def test_invalid_task_options_fail_when_decorating(
    options: dict[str, Any], error: type[Exception], option: str
) -> None:
    # as a decorator factory: before the function is even seen
    with pytest.raises(error, match=option) as info:
        task(**options)
    assert _value_of(options) in str(info.value)
    # with the function known, the error names the task too
    with pytest.raises(error, match=option) as info:
        task(plain, **options)
    assert "plain" in str(info.value)
    assert _value_of(options) in str(info.value)
    with pytest.raises(error, match=option) as info:
        task(plain).with_options(**options)
    assert "plain" in str(info.value)


@pytest.mark.parametrize("make", [lambda: task(bogus=1), lambda: task(plain, bogus=1)])
def test_unknown_task_options(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError, match=r"unknown option.*bogus") as info:
        make()
    assert "Task.__init__" not in str(info.value)  # speaks of the decorator, not internals
    with pytest.raises(TypeError, match=r"'plain'.*unknown option.*bogus"):
        task(plain).with_options(bogus=1)


FLOW_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"task_runner": "threads"}, TypeError, "task_runner"),
    ({"task_runner": ThreadPoolTaskRunner}, TypeError, "task_runner"),  # the class, not one
    ({"timeout_seconds": -2}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": 0}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": float("nan")}, ValueError, "timeout_seconds"),
    ({"timeout_seconds": "60"}, TypeError, "timeout_seconds"),
    ({"timeout_seconds": False}, TypeError, "timeout_seconds"),
    ({"name": 3}, TypeError, "name"),
    ({"on_completion": "hook"}, TypeError, "on_completion"),
]


@pytest.mark.parametrize(("options", "error", "option"), FLOW_OPTIONS)
def test_invalid_flow_options_fail_when_decorating(
    options: dict[str, Any], error: type[Exception], option: str
) -> None:
    with pytest.raises(error, match=option) as info:
        flow(**options)
    assert "_probe" not in str(info.value)  # no internal stand-in name
    with pytest.raises(error, match=option) as info:
        flow(plain, **options)
    assert "plain" in str(info.value)
    with pytest.raises(error, match=option) as info:
        flow(plain).with_options(**options)
    assert "plain" in str(info.value)
    assert repr(next(iter(options.values()))) in str(info.value)


INF = float("inf")


def test_an_infinite_timeout_option_means_no_timeout() -> None:
    @task(timeout_seconds=INF)
    def sync_part(x: int) -> int:
        return x + 1

    @task(timeout_seconds=INF)
    async def async_part(x: int) -> int:
        return x * 2

    @flow(timeout_seconds=INF)
    def pipeline() -> int:
        return async_part.submit(sync_part.submit(1)).result(timeout=WAIT)

    assert sync_part.timeout_seconds is None
    assert async_part.with_options(timeout_seconds=INF).timeout_seconds is None
    assert pipeline.timeout_seconds is None
    assert task(plain, timeout_seconds=1e300).timeout_seconds is None  # beyond any wait
    assert pipeline() == 4
    assert task(plain).with_options(timeout_seconds=2.5).timeout_seconds == 2.5


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, "3"], ids=repr)
def test_a_retry_delay_callable_returning_a_bad_value_retries_at_once(
    bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[int] = []

    @task(retries=1, retry_delay_seconds=lambda attempt: bad)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("first attempt fails")
        return "second attempt"

    with ThreadPoolTaskRunner(max_workers=1):
        assert flaky.submit().result(timeout=WAIT) == "second attempt"
    assert len(attempts) == 2
    logged = [r for r in caplog.records if "retry_delay_seconds" in r.getMessage()]
    assert logged, caplog.text
    assert logged[0].exc_info is not None
    assert "retry_delay_seconds" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("make", [lambda: flow(bogus=1), lambda: flow(plain, bogus=1)])
def test_unknown_flow_options(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError, match=r"unknown option.*bogus") as info:
        make()
    assert "Flow.__init__" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-3, ValueError), ("4", TypeError), (True, TypeError), (2.0, TypeError)],
)
def test_invalid_thread_runner_max_workers(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_workers") as info:
        ThreadPoolTaskRunner(max_workers=value)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


# The web engine's grace period is a timeout like any other (see _core/_validate.py).
@pytest.mark.parametrize(
    ("value", "error"),
    [(float("nan"), ValueError), (-1, ValueError), ("30", TypeError), (True, TypeError)],
    ids=repr,
)
def test_invalid_grace_seconds(value: Any, error: type[Exception]) -> None:
    from asyncflow.web import engine

    with pytest.raises(error, match="grace_seconds") as info:
        engine(grace_seconds=value)
    assert repr(value) in str(info.value)


def test_an_infinite_grace_period_waits_without_limit() -> None:
    from asyncflow.web import engine

    assert engine(grace_seconds=INF).grace_seconds == INF
    assert engine(grace_seconds=None).grace_seconds == INF  # type: ignore[arg-type]  # None: no limit, as every timeout
    assert engine(grace_seconds=0).grace_seconds == 0.0


# ---- calls ----------------------------------------------------------------------------------


def test_wrong_arguments_fail_at_the_call_naming_the_task() -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        with pytest.raises(TypeError, match="'ident'"):
            ident.submit(1, 2)
        with pytest.raises(TypeError, match="'ident'"):
            ident.submit(y=1)
        with pytest.raises(TypeError, match="'ident'"):
            ident(1, 2)
        with pytest.raises(TypeError, match="'ident'"):
            ident.map([1], [2])


@pytest.mark.parametrize("bad", [[ident], [plain], 3, "abc"], ids=repr)
def test_wait_for_must_hold_futures(bad: Any) -> None:
    with ThreadPoolTaskRunner(max_workers=1):
        with pytest.raises(TypeError, match=r"'ident'.*wait_for") as info:
            ident.submit(1, wait_for=bad)
        shown = repr(bad[0] if isinstance(bad, list) else bad)
        assert shown in str(info.value)
        with pytest.raises(TypeError, match="wait_for"):
            ident.map([1], wait_for=bad)


def test_map_shape_errors_name_the_task_and_the_values() -> None:
    @task
    def add(x: int, y: int) -> int:
        return x + y

    with ThreadPoolTaskRunner(max_workers=1):
        with pytest.raises(exceptions.MappingLengthMismatch, match=r"'add'.*x=2.*y=3"):
            add.map([1, 2], [1, 2, 3])
        with pytest.raises(exceptions.MappingMissingIterable, match=r"'add'.*x=1.*y='ab'"):
            add.map(1, "ab")


@pytest.mark.parametrize("value", [plain, len, "ident", None], ids=repr)
def test_non_task_to_runner_submit_and_map(value: Any) -> None:
    with ThreadPoolTaskRunner(max_workers=1) as runner:
        with pytest.raises(TypeError, match="expects a task") as info:
            runner.submit(value, {"x": 1})
        assert repr(value) in str(info.value)
        with pytest.raises(TypeError, match="expects a task") as info:
            runner.map(value, {"x": [1]})
        assert type(value).__name__ in str(info.value)


def test_runner_not_started() -> None:
    runner = ThreadPoolTaskRunner(max_workers=1)
    with pytest.raises(exceptions.RunnerNotStarted, match="with runner") as info:
        runner.submit(ident, {"x": 1})
    assert "'ident'" in str(info.value)
    with pytest.raises(exceptions.RunnerNotStarted, match="with runner"):
        runner.map(ident, {"x": [1]})


# ---- circular waits --------------------------------------------------------------------------


def _own_future_case(body: Callable[[Any], Any]) -> Any:
    """Run `body(own_future)` inside a task; return the task's future, final."""
    holder: dict[str, Any] = {}
    ready = threading.Event()

    @task
    def selfish() -> Any:
        assert ready.wait(WAIT)
        return body(holder["fut"])

    with ThreadPoolTaskRunner(max_workers=2):
        holder["fut"] = fut = selfish.submit()
        ready.set()
        fut.wait(WAIT)
        assert fut.done()
    return fut


@pytest.mark.parametrize(
    "body",
    [
        lambda own: own.result(),
        lambda own: own.wait(),
        lambda own: own.exception(),
        lambda own: ident(own),
        lambda own: ident.submit(own),
        lambda own: ident.submit(1, wait_for=[own]),
        lambda own: ident.map([1, 2], wait_for=[own]),
        lambda own: ident.submit([{"nested": own}]),
    ],
    ids=["result", "wait", "exception", "direct-call", "submit", "wait_for", "map", "nested"],
)
def test_a_task_waiting_on_its_own_future_fails_at_once(body: Callable[[Any], Any]) -> None:
    fut = _own_future_case(body)
    with pytest.raises(exceptions.CircularDependency, match="selfish"):
        fut.result()


def test_circular_wait_for_through_an_ancestor() -> None:
    holder: dict[str, Any] = {}
    ready = threading.Event()

    @task
    def grandchild() -> None:
        pass

    @task
    def middle() -> Any:
        # the grandparent is still running the code that submitted us
        return grandchild.submit(wait_for=[holder["top"]])

    @task
    def top() -> Any:
        assert ready.wait(WAIT)
        return middle.submit().result(timeout=WAIT)

    with ThreadPoolTaskRunner(max_workers=2):
        holder["top"] = fut = top.submit()
        ready.set()
        with pytest.raises(exceptions.CircularDependency, match=r"'grandchild'.*'top'") as info:
            fut.result(timeout=WAIT)
    assert isinstance(info.value, ValueError)


@pytest.mark.asyncio
async def test_an_async_task_awaiting_its_own_future() -> None:
    holder: dict[str, Any] = {}
    ready = asyncio.Event()

    @task
    async def selfish(how: str) -> Any:
        await ready.wait()
        own = holder[how]
        if how == "await":
            return await own
        if how == "wait_async":
            return await own.wait_async()
        if how == "direct":
            return await aident(own)
        return aident.submit(own)

    async with ThreadPoolTaskRunner(max_workers=2):
        for how in ("await", "wait_async", "direct", "submit"):
            holder[how] = selfish.submit(how)
        ready.set()
        for how in ("await", "wait_async", "direct", "submit"):
            with pytest.raises(exceptions.CircularDependency, match="selfish"):
                await asyncio.wait_for(holder[how], WAIT)
