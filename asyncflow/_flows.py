"""`@flow`: a structured scope that owns a task runner for the duration of one call.

Each call uses a fresh `task_runner.duplicate()`, entered around the body. The flow
does not return while tasks it submitted still run; if the body raises (or an async
flow is cancelled), runs not yet started are cancelled, async runs are cancelled, and
the error propagates. Futures in the return value are resolved.

    >>> @flow
    ... def pipeline(xs: list[int]) -> list[int]:
    ...     return double.map(xs)          # returned futures come back as results
    >>> pipeline([1, 2])                   # doctest: +SKIP
    [2, 4]
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._arguments import find_upstreams, resolve
from ._core._future import Suspend, TaskFuture
from ._runners._base import TaskRunner
from ._runners._thread import ThreadPoolTaskRunner
from ._tasks import is_async_callable

__all__ = ("Flow", "flow")

P = ParamSpec("P")
R = TypeVar("R")


def _return_futures(value: Any) -> list[TaskFuture[Any]]:
    upstreams, _ = find_upstreams({"return": value})
    return [fut for fut, _allow in upstreams]


def _resolve_return(value: Any, futures: list[TaskFuture[Any]]) -> Any:
    for fut in futures:
        if fut._exception is not None:
            fut._outcome(True)  # a returned failed future fails the flow with its own error
    return resolve(value)


class Flow(Generic[P, R]):
    """A flow: call it like the function; it runs with its own task runner."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        task_runner: TaskRunner | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow expects a function, got {type(fn).__name__}: {fn!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"flow name must be a non-empty string, got {name!r}")
        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            raise TypeError(
                f"task_runner must be a TaskRunner instance (e.g. ThreadPoolTaskRunner()), "
                f"got {task_runner!r}"
            )
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        self.description = description if description is not None else inspect.getdoc(fn)
        self.task_runner = task_runner
        self.is_async = is_async_callable(fn)
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)  # copies __doc__, __module__, __wrapped__...

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}>"

    def with_options(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        task_runner: TaskRunner | None = None,
    ) -> Flow[P, R]:
        return Flow(
            self.fn,
            name=name or self.name,
            description=description if description is not None else self.description,
            task_runner=task_runner if task_runner is not None else self.task_runner,
        )

    def _new_runner(self) -> TaskRunner:
        template = self.task_runner if self.task_runner is not None else ThreadPoolTaskRunner()
        return template.duplicate()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"flow {self.name!r}: {exc}") from None
        if self.is_async:
            return cast("R", self._call_async(args, kwargs))
        with self._new_runner():
            value = self.fn(*args, **kwargs)
            futures = _return_futures(value)
            for fut in futures:
                fut._wait(None)
            return cast("R", _resolve_return(value, futures))

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async with self._new_runner():
            value = await cast("Callable[..., Coroutine[Any, Any, Any]]", self.fn)(*args, **kwargs)
            futures = _return_futures(value)
            for fut in futures:
                fut._check_not_self()
                await Suspend(fut)
            return _resolve_return(value, futures)


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    description: str | None = None,
    task_runner: TaskRunner | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    __fn: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    task_runner: TaskRunner | None = None,
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Decorate a function (sync or async) as a flow.

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def etl() -> None: ...
    """
    if __fn is not None:
        return Flow(__fn, name=name, description=description, task_runner=task_runner)
    if task_runner is not None and not isinstance(task_runner, TaskRunner):
        raise TypeError(f"task_runner must be a TaskRunner instance, got {task_runner!r}")

    def decorator(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, name=name, description=description, task_runner=task_runner)

    return decorator
