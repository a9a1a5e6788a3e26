"""Checked by mypy with `plugins = ["asyncflow.mypy"]` (tests/test_mypy_plugin.py):
every call here must pass."""

from __future__ import annotations

from typing_extensions import assert_type

from asyncflow import FutureList, TaskFuture, allow_failure, flow, quote, task, unmapped
from asyncflow.utilities.annotations import opaque


@task
def double(x: int) -> int:
    return 2 * x


@task
async def fetch(key: str, retries: int = 1) -> bytes:
    return key.encode() * retries


@task
def total(xs: list[int], *more: int, **labels: str) -> int:
    return sum(xs) + sum(more) + len(labels)


@flow
def child(x: float) -> float:
    return x


def chained(a: TaskFuture[int], s: TaskFuture[str], xs: TaskFuture[list[int]]) -> None:
    # Plain mypy rejects each line so marked (tests/test_mypy_plugin.py checks it).
    assert_type(double.submit(a), TaskFuture[int])  # without the plugin: an error
    assert_type(double(a), int)  # without the plugin: an error
    assert_type(double.submit(allow_failure(a)), TaskFuture[int])  # without the plugin: an error
    assert_type(double.submit(quote(1)), TaskFuture[int])  # without the plugin: an error
    assert_type(double.submit(opaque(a)), TaskFuture[int])  # without the plugin: an error
    assert_type(double.submit(1, wait_for=[a]), TaskFuture[int])
    assert_type(fetch.submit(s, retries=a), TaskFuture[bytes])  # without the plugin: an error
    assert_type(fetch.submit(s, wait_for=[a]), TaskFuture[bytes])
    assert_type(total.submit(xs, a, 2, name=s), TaskFuture[int])  # without the plugin: an error
    assert_type(child(a), float)  # a flow resolves futures too; without the plugin: an error


def mapped(a: TaskFuture[int], s: TaskFuture[str], xs: TaskFuture[list[int]]) -> None:
    assert_type(double.map([a, 1]), FutureList[int])
    assert_type(double.map(xs), FutureList[int])  # a future of an iterable is mapped
    assert_type(double.map(quote([1, 2])), FutureList[int])
    assert_type(double.map(range(3), wait_for=a, max_concurrency=2), FutureList[int])
    assert_type(fetch.map(["a", s], retries=unmapped(a)), FutureList[bytes])
    assert_type(fetch.map("k", retries=[1, 2]), FutureList[bytes])  # a str is broadcast
    assert_type(total.map([xs], unmapped(a), name=["a", s]), FutureList[int])
    assert_type(total.map([[1]], allow_failure(a)), FutureList[int])
