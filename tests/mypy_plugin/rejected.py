"""Checked by mypy with `plugins = ["asyncflow.mypy"]` (tests/test_mypy_plugin.py):
each line marked `# rejected: CODE` must be exactly one error with that code, and no
other line an error. The plugin accepts futures of the right type only."""

from __future__ import annotations

from asyncflow import TaskFuture, allow_failure, flow, quote, task, unmapped


@task
def double(x: int) -> int:
    return 2 * x


@task
async def fetch(key: str) -> bytes:
    return key.encode()


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@flow
def child(x: int) -> int:
    return x


def wrong(a: TaskFuture[int], s: TaskFuture[str]) -> None:
    double.submit("x")  # rejected: call-overload
    double.submit(s)  # rejected: arg-type
    double(s)  # rejected: arg-type
    double.submit(allow_failure(s))  # rejected: arg-type
    double.submit(quote("x"))  # rejected: arg-type
    double.submit(a, a)  # rejected: call-overload
    double.submit(y=a)  # rejected: call-overload
    fetch.submit(a, wait_for=[a])  # rejected: arg-type
    child(s)  # rejected: arg-type
    double.map([s])  # rejected: list-item
    double.map(1, max_concurrency="2")  # rejected: arg-type
    total.map([1, 2])  # rejected: list-item
    total.map(unmapped(s))  # rejected: arg-type
    fetch.map(["k"], wait_for=1)  # rejected: call-overload
    double.map(a)  # rejected: arg-type
