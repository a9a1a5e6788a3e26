"""`@task`: a function (sync or async) that can be called, submitted and mapped.

Whether a task is sync or async is decided once, here, from the function's type
(through `functools.partial` and callable objects); a direct call keeps the colour:

    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> double(2)                  # runs here, returns 4
    4
    >>> double.submit(2).result()  # runs on the current task runner
    4
    >>> double.map([1, 2]).result()
    [2, 4]
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Generic, TypeVar, cast, overload

from typing_extensions import ParamSpec

from ._arguments import find_upstreams, raise_if_upstream_failed
from ._core import _engine
from ._core._future import FutureList, Suspend, TaskFuture
from ._runners._base import TaskSpec, current_runner, new_run, wait_for_upstreams

__all__ = ("Task", "is_async_callable", "task")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_RESERVED = "wait_for"


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for `async def` functions, also behind partials and callable objects."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004  (callable objects' __call__)
    return (
        not inspect.isfunction(fn)
        and not inspect.ismethod(fn)
        and call is not None
        and inspect.iscoroutinefunction(call)
    )


def _callable_name(fn: Callable[..., Any]) -> str:
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _validate_options(name: Any, retries: Any, retry_delay_seconds: Any) -> None:
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"task name must be a non-empty string, got {name!r}")
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries must be an int, got {retries!r}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if isinstance(retry_delay_seconds, bool) or not isinstance(retry_delay_seconds, (int, float)):
        raise TypeError(f"retry_delay_seconds must be a number, got {retry_delay_seconds!r}")
    if retry_delay_seconds < 0:
        raise ValueError(f"retry_delay_seconds must be >= 0, got {retry_delay_seconds}")


class Task(TaskSpec, Generic[P, R]):
    """A task: call it (`t(x)`), submit it (`t.submit(x)`), or map it (`t.map(xs)`)."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        retries: int = 0,
        retry_delay_seconds: float = 0,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task expects a function, got {type(fn).__name__}: {fn!r}")
        _validate_options(name, retries, retry_delay_seconds)
        self.fn = fn
        self.name = name or _callable_name(fn)
        self.description = description if description is not None else inspect.getdoc(fn)
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.is_async = is_async_callable(fn)
        try:
            self._signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"@task cannot read the signature of {fn!r}: {exc}") from None
        params = self._signature.parameters
        if _RESERVED in params:
            raise ValueError(
                f"task {self.name!r}: a parameter named {_RESERVED!r} is reserved by asyncflow "
                f"(it orders runs without passing data); rename the parameter"
            )
        kinds = {p.kind for p in params.values()}
        # Simple signatures (no positional-only, *args, **kwargs) are called with
        # `fn(**parameters)` and bound without `inspect.Signature.bind` when all
        # arguments are positional: the hot path of `.submit()`.
        self._simple = kinds <= {
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        } and not any(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
        self._names = tuple(params)
        functools.update_wrapper(self, fn)  # copies __doc__, __module__, __wrapped__...

    def __repr__(self) -> str:
        return f"<Task {self.name!r} ({'async' if self.is_async else 'sync'})>"

    def with_options(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | None = None,
    ) -> Task[P, R]:
        """A copy of this task with some options changed."""
        return Task(
            self.fn,
            name=self.name if name is None else name,
            description=self.description if description is None else description,
            retries=self.retries if retries is None else retries,
            retry_delay_seconds=(
                self.retry_delay_seconds if retry_delay_seconds is None else retry_delay_seconds
            ),
        )

    # ---- binding and invoking ----------------------------------------------------------
    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._simple and not kwargs and len(args) == len(self._names):
            return dict(zip(self._names, args, strict=True))
        try:
            return dict(self._signature.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None

    def _invoke(self, parameters: dict[str, Any]) -> Any:
        fn: Callable[..., Any] = self.fn
        if self._simple:
            return fn(**parameters)
        bound = inspect.BoundArguments(self._signature, parameters)  # type: ignore[arg-type, unused-ignore]  # typeshed (some versions) wants an OrderedDict
        return fn(*bound.args, **bound.kwargs)

    # ---- direct call -------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run now, keeping the function's colour: sync returns the value, async an
        awaitable. Futures among the arguments are resolved first."""
        wait_for = kwargs.pop(_RESERVED, None)
        params = self._bind(args, kwargs)
        upstreams, rebuild = find_upstreams(params)
        if wait_for is not None:
            upstreams.extend(wait_for_upstreams(wait_for, self.name))
        if self.is_async:
            return cast("R", self._call_async(params, upstreams, rebuild))
        for fut, _ in upstreams:
            fut._wait(None)
        raise_if_upstream_failed(upstreams, self.name)
        run = new_run(current_runner(), self, params, rebuild, None)
        _engine.execute_sync(run)
        return cast("R", run.future._outcome(True))

    async def _call_async(
        self,
        params: dict[str, Any],
        upstreams: list[tuple[TaskFuture[Any], bool]],
        rebuild: bool,
    ) -> Any:
        for fut, _ in upstreams:
            fut._check_not_self()
            await Suspend(fut)
        raise_if_upstream_failed(upstreams, self.name)
        run = new_run(current_runner(), self, params, rebuild, None)
        await _engine.execute_async(run)
        return run.future._outcome(True)

    # ---- submit and map ----------------------------------------------------------------
    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> TaskFuture[T]: ...

    @overload
    def submit(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> TaskFuture[T]: ...

    def submit(self, *args: Any, **kwargs: Any) -> TaskFuture[Any]:
        """Schedule a run on the current task runner and return its future at once.

        `wait_for=[futures]` orders this run after them without passing data.
        """
        wait_for = kwargs.pop(_RESERVED, None)
        return current_runner().submit(self, self._bind(args, kwargs), wait_for=wait_for)

    @overload
    def map(self: Task[P, Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    @overload
    def map(self: Task[P, T], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    def map(self, *args: Any, **kwargs: Any) -> FutureList[Any]:
        """Submit one run per element of the iterable arguments; results keep input order.

        `str`/`bytes` and non-iterables are broadcast; wrap an iterable in
        `unmapped(...)` to broadcast it. Defaults are not mapped.
        """
        wait_for: Iterable[Any] | None = kwargs.pop(_RESERVED, None)
        try:
            params = dict(self._signature.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None
        return current_runner().map(self, params, wait_for=wait_for)


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    description: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    __fn: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float = 0,
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a function (sync or async) as a task; options are validated now.

    @task
    def fetch(url: str) -> bytes: ...

    @task(retries=2, name="load")
    async def load(key: str) -> dict: ...
    """
    if __fn is not None:
        return Task(
            __fn,
            name=name,
            description=description,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
        )
    _validate_options(name, retries, retry_delay_seconds)

    def decorator(fn: Callable[P, R]) -> Task[P, R]:
        return Task(
            fn,
            name=name,
            description=description,
            retries=retries,
            retry_delay_seconds=retry_delay_seconds,
        )

    return decorator
