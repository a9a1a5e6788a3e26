"""Generators returned by a task are consumed into a list (docs/policies.md).

Prefect hands a task's result on as a value: a generator would reach the caller
unstarted (and could not cross a process boundary), so it is consumed where the
task's function runs, inside the attempt: its errors fail (and retry) the attempt,
and its time counts against the timeout. Every place that calls a task's function
applies the same two helpers (`Task.invoke`, the process worker, the Dask worker):

* `consume_generator(value)`: a sync generator becomes the list of what it yields;
* `awaitable_result(value)`: what an async task's call returned, made awaitable: an async
  generator (an `async def` with `yield`) becomes a coroutine giving that list.

An `async def` that *returns* a generator object is not looked at (its value is
whatever the coroutine returns).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable
from types import AsyncGeneratorType, GeneratorType
from typing import Any

__all__ = ("awaitable_result", "consume_generator")


def consume_generator(value: Any) -> Any:
    """`value`, or the list a generator yields (consumed here)."""
    if type(value) is GeneratorType:
        return list(value)
    return value


def awaitable_result(value: Any) -> Awaitable[Any]:
    """An async call's value to await: a coroutine as is, an async generator as a
    coroutine that collects what it yields into a list."""
    if type(value) is AsyncGeneratorType:
        return _collect(value)
    return value  # type: ignore[no-any-return]  # an awaitable, by the async task's contract


async def _collect(generator: AsyncGenerator[Any, None]) -> list[Any]:
    return [item async for item in generator]
