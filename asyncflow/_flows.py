"""`@flow`: a structured scope that owns a task runner for the duration of one call.

Each call uses a fresh `task_runner.duplicate()`, entered around the body. The flow
does not return while tasks it submitted still run; if the body raises (or an async
flow is cancelled), runs not yet started are cancelled, async runs are cancelled, and
the error propagates. Futures in the return value are resolved.

Retries (`retries=`, `retry_delay_seconds=`) re-run the whole body. The rules are the
ones task runs follow, from the core's attempt machine (`_core/_attempt.py`): this
module only drives it (an attempt begins, it failed: judge it, wait the delay it
gives, begin again). Each attempt is a scope of its own, with a fresh runner: the
runs of a failed attempt are stopped and drained, as for any failing flow, before the
next attempt starts. `timeout_seconds` bounds each attempt (as Prefect), and a
timed-out attempt is final, not retried (as a task's timeout). State hooks see the
final state only; `on_running` hooks are called as each attempt starts.

    >>> from asyncflow import task
    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> @flow
    ... def pipeline(xs: list[int]) -> list[int]:
    ...     return double.map(xs)          # returned futures come back as results
    >>> pipeline([1, 2])
    [2, 4]
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, cast, overload

from ._arguments import Upstreams, find_upstreams, raise_if_upstream_failed, resolve
from ._core import (
    Attempts,
    Retry,
    RetryPolicy,
    State,
    StateType,
    Suspend,
    TaskFuture,
    TaskTimeout,
    block_until_final,
    check_count,
    check_not_self,
    check_timeout,
    ending_of_returned_state,
    error_of,
    outcome,
    state_with_data,
    validate_delay,
)
from ._methods import bind_flow, rewrap_method, unwrap_method
from ._runners._base import TaskRunner
from ._runners._current import installed_runner
from ._runners._shared import SharedTaskRunner
from ._runners._thread import ThreadPoolTaskRunner
from ._runs import Hooks, HookSet, flow_run_record, new_run_id
from ._tags import check_tags, current_tags, tags
from ._tasks import (
    check_not_return_state,
    is_async_callable,
    not_ready_state,
    return_state_flag,
)
from ._validation import FlowParameters

__all__ = ("Flow", "flow")

P = ParamSpec("P")
R = TypeVar("R", covariant=True)  # only returned; covariant as `Task`'s (`_tasks.py` says why)
T = TypeVar("T")
# A bound method's flow: its parameters after the first (`self`), its return type.
P2 = ParamSpec("P2")
R2 = TypeVar("R2")
S = TypeVar("S")
# asyncflow's `hook(flow, state)` or Prefect's `hook(flow, flow_run, state)` (`_runs`).
FlowHook = Callable[[Any, State], object] | Callable[[Any, Any, State], object]
# As a task's: a delay, one per retry, `f(attempt) -> seconds`, or Prefect's
# `f(retries) -> [seconds]` (what `exponential_backoff` returns).
RetryDelay = float | Sequence[float] | Callable[[int], float] | Callable[[int], list[float]]

# How a flow waits out a retry delay (module attributes: tests record the delays).
_sleep = time.sleep
_sleep_async = asyncio.sleep


class _Began:
    """One flow call with hooks: its run id, Running state, parameters and attempts."""

    __slots__ = ("attempts", "id", "parameters", "state", "tags")

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.id = new_run_id()
        self.state = State(StateType.RUNNING)
        self.parameters = parameters
        self.attempts: _FlowAttempts | None = None
        self.tags: frozenset[str] = frozenset()


class _FlowAttempts(Attempts):
    """The attempt machine of one flow call, and how its driver reads it.

    `timed_out` is set by an attempt that ran out of its `timeout_seconds`.
    """

    __slots__ = ("timed_out",)

    def __init__(self, name: str, retry: RetryPolicy | None) -> None:
        super().__init__(name, retry, None)
        self.timed_out = False

    def next_delay(self, error: Exception) -> float | None:
        """The attempt raised `error`: seconds to wait before the next attempt, or None
        if the flow fails with it. A flow's own timeout is final (as Prefect's)."""
        if self.timed_out:
            return None
        judged, again = self.judge(error)
        if isinstance(self.raised(judged, again), Retry):
            return self.retry_delay()
        return None


def _return_futures(value: Any) -> list[TaskFuture[Any]]:
    upstreams, _ = find_upstreams({"return": value})
    return [fut for fut, _allow in upstreams]


def _resolve_return(value: Any, futures: list[TaskFuture[Any]]) -> Any:
    for fut in futures:
        if error_of(fut) is not None:
            outcome(fut)  # a returned failed future fails the flow with its own error
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
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        retries: int = 0,
        retry_delay_seconds: RetryDelay = 0,
        tags: Iterable[str] | None = None,
        on_completion: Sequence[FlowHook] | None = None,
        on_failure: Sequence[FlowHook] | None = None,
        on_running: Sequence[FlowHook] | None = None,
        on_cancellation: Sequence[FlowHook] | None = None,
        on_crashed: Sequence[FlowHook] | None = None,
    ) -> None:
        fn, self._method_kind = unwrap_method(fn)  # `@flow @classmethod`: its function
        if not callable(fn):
            raise TypeError(f"@flow expects a function, got {type(fn).__name__}: {fn!r}")
        try:
            self.timeout_seconds = check_timeout(
                "timeout_seconds", timeout_seconds, allow_zero=False
            )
            self.retries: int = check_count("retries", retries)
            self.retry_delay_seconds = validate_delay(retry_delay_seconds)
            self.tags: frozenset[str] = check_tags(tags)
            hooks = HookSet(
                "flow",
                {
                    "on_completion": on_completion,
                    "on_failure": on_failure,
                    "on_running": on_running,
                    "on_cancellation": on_cancellation,
                    "on_crashed": on_crashed,
                },
            )
            if name is not None and (not isinstance(name, str) or not name):
                raise TypeError(f"flow name must be a non-empty string, got {name!r}")
            if not isinstance(validate_parameters, bool):
                raise TypeError(f"validate_parameters must be a bool, got {validate_parameters!r}")
            if task_runner is not None and not isinstance(task_runner, TaskRunner):
                raise TypeError(
                    f"task_runner must be a TaskRunner instance (e.g. ThreadPoolTaskRunner()), "
                    f"got {task_runner!r}"
                )
        except (TypeError, ValueError) as exc:  # name the flow (or the decorator) in the message
            label = name if isinstance(name, str) and name else getattr(fn, "__name__", "?")
            named = isinstance(name, str) and bool(name)
            where = "@flow" if fn is _probe and not named else f"flow {label!r}"
            raise type(exc)(f"{where}: {exc}") from None
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(fn).__name__)
        # Each a list of hooks, and a decorator adding one: `@my_flow.on_crashed`.
        self.on_completion: Hooks = hooks.lists["on_completion"]
        self.on_failure: Hooks = hooks.lists["on_failure"]
        self.on_running: Hooks = hooks.lists["on_running"]
        self.on_cancellation: Hooks = hooks.lists["on_cancellation"]
        self.on_crashed: Hooks = hooks.lists["on_crashed"]
        self._hooks = hooks
        hooks.label = f"flow {self.name!r}"
        self.description = description if description is not None else inspect.getdoc(fn)
        self.task_runner = task_runner
        self.is_async = is_async_callable(fn)
        self._retry = RetryPolicy(self.retries, self.retry_delay_seconds) if self.retries else None
        self._signature = inspect.signature(fn)
        check_not_return_state(self._signature.parameters, f"flow {self.name!r}")
        # Prefect's names: the option, and a `validate_parameters(dict)` method.
        self.should_validate_parameters = validate_parameters
        self._parameters = FlowParameters(fn, f"flow {self.name!r}")  # built on first call
        functools.update_wrapper(self, fn)  # copies __doc__, __module__, __wrapped__...

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}>"

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed (same names as `@flow`)."""
        current = {
            option: getattr(self, _ATTRIBUTES.get(option, option)) for option in _OPTION_NAMES
        }
        unknown = set(options) - _OPTION_NAMES
        if unknown:
            raise TypeError(f"flow {self.name!r}: unknown option(s) {sorted(unknown)}")
        return Flow(rewrap_method(self.fn, self._method_kind), **{**current, **options})

    # ---- methods: `C().f` is this flow bound to the instance (`_methods.py`) -------------
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Flow[P, R]: ...

    @overload
    def __get__(
        self: Flow[Concatenate[S, P2], R2], instance: S, owner: type[Any] | None = None
    ) -> Flow[P2, R2]: ...

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        """A flow on a method, looked up on an instance: the flow bound to it (a class
        method's flow binds the class; a static method's binds nothing)."""
        return bind_flow(self, self._method_kind, instance, owner)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """`parameters` checked against the function's annotations, with the values
        pydantic converts converted (what a call does first, as Prefect's method).

        Raises:
            ParameterTypeError: a parameter does not fit its annotation.
            ImportError: a parameter needs checking and pydantic is not installed.
        """
        return self._parameters.validated(parameters)

    def _checked(
        self, bound: inspect.BoundArguments, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's (resolved) arguments, validated: converted values replace given
        ones (`_validation.py`); raises `ParameterTypeError` before the body runs."""
        if self.should_validate_parameters and self._parameters.apply(bound.arguments):
            return bound.args, bound.kwargs
        return args, kwargs

    def _begin(self, bound: inspect.BoundArguments) -> _Began | None:
        """A call starts (None: this flow has no hooks, so nothing to record)."""
        if not self._hooks.any():
            return None
        return _Began(dict(bound.arguments))

    @contextlib.contextmanager
    def _tagged(self, began: _Began | None) -> Iterator[None]:
        """The flow's tags around its body, as a `with tags(...)` block: the runs it
        submits and the flows it calls carry them (the call's record too)."""
        with tags(*self.tags) if self.tags else contextlib.nullcontext():
            if began is not None:
                began.tags = current_tags()
            yield

    def _attempts(self, began: _Began | None) -> _FlowAttempts:
        """The attempt machine of one call (the call's record counts its attempts)."""
        attempts = _FlowAttempts(str(self.name), self._retry)
        if began is not None:
            began.attempts = attempts
        return attempts

    def _attempt_begins(self, attempts: _FlowAttempts, began: _Began | None) -> None:
        """An attempt starts: count it, and call the `on_running` hooks."""
        attempts.begin()
        attempts.timed_out = False
        if began is not None and self.on_running:
            state = State(StateType.RUNNING)
            self._hooks.call(("on_running",), self, state, lambda: self._record(began, None))

    def _record(self, began: _Began, final: State | None) -> Any:
        state = began.state if final is None else final
        return flow_run_record(
            str(self.name),
            began.id,
            began.parameters,
            state,
            began.state.timestamp,
            final is not None,
            1 if began.attempts is None else began.attempts.attempt,
            began.tags,
        )

    def _end(
        self, value: Any, exc: BaseException | None, began: _Began | None, return_state: bool
    ) -> Any:
        """What a call that ended (with `value`, or raising `exc`) gives its caller: the
        value, the exception raised, or with `return_state` the final State carrying
        either (a KeyboardInterrupt or a cancellation of the caller still propagates).
        A returned `State` is the flow's final state (the core's `ending_of` rule)."""
        if exc is None and isinstance(value, State):
            ending = ending_of_returned_state(value, str(self.name), 1, "flow")
            state, value, exc = ending.state, ending.value, ending.error
        elif exc is None:
            state = State(StateType.COMPLETED)
        else:
            state = _raised_state(exc)
        if began is not None:
            kinds = self._hooks.final_kinds(state)
            self._hooks.call(kinds, self, state, lambda: self._record(began, state))
        if return_state and (exc is None or isinstance(exc, Exception)):
            return state_with_data(state, value if exc is None else exc)
        if exc is not None:
            raise exc
        return value

    def _timeout_error(self) -> TaskTimeout:
        return TaskTimeout(f"flow {self.name!r} exceeded its timeout of {self.timeout_seconds} s")

    def _new_runner(self) -> TaskRunner:
        if self.task_runner is not None:
            return self.task_runner.duplicate()
        if installed_runner() is not None:
            # An application (a web server's lifespan) shares its pools: this call gets
            # its own scope on them rather than a pool of its own.
            return SharedTaskRunner()
        return ThreadPoolTaskRunner()

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    # `return_state=` cannot sit beside `P.kwargs` (PEP 612): with it the arguments are
    # not checked against the function, but the State's value type is kept. The async
    # overload comes first and wins (pyright calls the pair an unsafe overlap).
    @overload
    def __call__(  # pyright: ignore[reportOverlappingOverload]
        self: Flow[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        **kwargs: Any,
    ) -> Coroutine[Any, Any, State[T]]: ...

    @overload
    def __call__(
        self: Flow[P, T], *args: Any, return_state: Literal[True], **kwargs: Any
    ) -> State[T]: ...

    @overload
    def __call__(self, *args: Any, return_state: Literal[False], **kwargs: Any) -> R: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the flow; with `return_state=True`, return its final `State` (whose
        `.result()` gives the value or raises) instead of raising for its failure."""
        return_state = return_state_flag(kwargs, "flow", self.name)
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"flow {self.name!r}: {exc}") from None
        upstreams, rebuild = find_upstreams(bound.arguments)
        if self.is_async:
            return self._call_async(args, kwargs, bound, rebuild, return_state)
        call_args: tuple[Any, ...] = args
        call_kwargs: dict[str, Any] = kwargs
        if rebuild:  # futures among the arguments: the flow gets their values (as Prefect)
            for fut, _ in upstreams:
                block_until_final(fut)
            if return_state and (skipped := not_ready_state(upstreams, str(self.name), "flow")):
                return skipped
            call_args, call_kwargs = _resolved_arguments(bound, upstreams, str(self.name))
        call_args, call_kwargs = self._checked(bound, call_args, call_kwargs)
        began = self._begin(bound)
        try:
            value = self._retry_sync(call_args, call_kwargs, began)
        except BaseException as exc:
            return self._end(None, exc, began, return_state)
        return self._end(value, None, began, return_state)

    def _retry_sync(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], began: _Began | None
    ) -> Any:
        """Attempts of a sync flow until one ends the call (the machine decides)."""
        attempts = self._attempts(began)
        with self._tagged(began):
            while True:
                self._attempt_begins(attempts, began)
                try:
                    return self._call_sync(args, kwargs, attempts)
                except Exception as exc:
                    delay = attempts.next_delay(exc)
                    if delay is None:
                        raise
                _sleep(delay)

    def _call_sync(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], attempts: _FlowAttempts
    ) -> Any:
        timed_out = threading.Event()
        with self._new_runner() as runner:
            timer = None
            if self.timeout_seconds is not None:
                timer = threading.Timer(
                    self.timeout_seconds, _expire_flow, (runner, timed_out, self.timeout_seconds)
                )
                timer.name = "asyncflow-flow-timeout"
                timer.daemon = True
                timer.start()
            try:
                value = self.fn(*args, **kwargs)
                futures = _return_futures(value)
                for fut in futures:
                    block_until_final(fut)
                result = _resolve_return(value, futures)
            except Exception as exc:
                if timed_out.is_set():
                    attempts.timed_out = True
                    raise self._timeout_error() from exc
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                    timer.join()
        if timed_out.is_set():
            attempts.timed_out = True
            raise self._timeout_error()
        return result

    async def _call_async(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        bound: inspect.BoundArguments,
        rebuild: bool,
        return_state: bool = False,
    ) -> Any:
        if rebuild:  # futures among the arguments: awaited, their values passed
            upstreams, _ = find_upstreams(bound.arguments)
            for fut, _allow in upstreams:
                check_not_self(fut)
                await Suspend(fut)
            if return_state and (skipped := not_ready_state(upstreams, str(self.name), "flow")):
                return skipped
            args, kwargs = _resolved_arguments(bound, upstreams, str(self.name))
        args, kwargs = self._checked(bound, args, kwargs)
        began = self._begin(bound)
        try:
            value = await self._retry_async(args, kwargs, began)
        except BaseException as exc:
            return self._end(None, exc, began, return_state)
        return self._end(value, None, began, return_state)

    async def _retry_async(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], began: _Began | None
    ) -> Any:
        """Attempts of an async flow until one ends the call (the machine decides)."""
        attempts = self._attempts(began)
        with self._tagged(began):
            while True:
                self._attempt_begins(attempts, began)
                try:
                    return await self._attempt_async(args, kwargs, attempts)
                except Exception as exc:
                    delay = attempts.next_delay(exc)
                    if delay is None:
                        raise
                await _sleep_async(delay)

    async def _attempt_async(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], attempts: _FlowAttempts
    ) -> Any:
        if self.timeout_seconds is None:
            return await self._run_async(args, kwargs)
        try:
            return await asyncio.wait_for(self._run_async(args, kwargs), self.timeout_seconds)
        except asyncio.TimeoutError as exc:  # TimeoutError's alias from 3.11 on
            attempts.timed_out = True
            raise self._timeout_error() from exc

    async def _run_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async with self._new_runner():
            value = await cast("Callable[..., Coroutine[Any, Any, Any]]", self.fn)(*args, **kwargs)
            futures = _return_futures(value)
            for fut in futures:
                check_not_self(fut)
                await Suspend(fut)
            return _resolve_return(value, futures)


def _raised_state(exc: BaseException) -> State:
    """The final state of a flow whose call raised `exc`."""
    name = "TimedOut" if isinstance(exc, TaskTimeout) else None
    kind = StateType.FAILED if isinstance(exc, Exception) else StateType.CRASHED
    if isinstance(exc, asyncio.CancelledError):
        kind = StateType.CANCELLED
    return State(kind, name, f"{type(exc).__name__}: {exc}")


def _resolved_arguments(
    bound: inspect.BoundArguments, upstreams: Upstreams, name: str
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with every (final) future replaced by its value; a failed
    one, unless in `allow_failure`, raises `UpstreamFailed` before the flow starts."""
    raise_if_upstream_failed(upstreams, name, "flow")
    for key, value in bound.arguments.items():
        bound.arguments[key] = resolve(value)
    return bound.args, bound.kwargs


def _expire_flow(runner: TaskRunner, flag: threading.Event, seconds: float) -> None:
    flag.set()
    runner.time_out_all(seconds)


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    description: str | None = None,
    task_runner: TaskRunner | None = None,
    timeout_seconds: float | None = None,
    validate_parameters: bool = True,
    retries: int = 0,
    retry_delay_seconds: RetryDelay = 0,
    tags: Iterable[str] | None = None,
    on_completion: Sequence[FlowHook] | None = None,
    on_failure: Sequence[FlowHook] | None = None,
    on_running: Sequence[FlowHook] | None = None,
    on_cancellation: Sequence[FlowHook] | None = None,
    on_crashed: Sequence[FlowHook] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    __fn: Callable[P, R] | None = None, **options: Any
) -> Flow[P, R] | Callable[[Callable[P, R]], Flow[P, R]]:
    """Decorate a function (sync or async) as a flow; options are validated now.

    ```python
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8), timeout_seconds=60)
    def etl() -> None: ...
    ```

    A flow is a scope: it returns only once the runs it submitted are final; if its
    body raises, runs not started are cancelled. Each call uses a fresh
    `task_runner.duplicate()`. Each call first checks the arguments against the
    function's annotations and converts them, with pydantic (`"3"` becomes `3` for
    `n: int`; an argument that does not fit raises `ParameterTypeError` before the
    body runs); `validate_parameters=False` turns that off (docs/flows.md).
    `retries=N` re-runs the whole body (each attempt with
    a fresh runner) after an exception, waiting `retry_delay_seconds` (as a task's);
    `timeout_seconds` bounds each attempt, and a timed-out attempt is not retried.
    `tags` are entered as a `with tags(...)` block around the body: the runs it
    submits carry them.

    Raises:
        ValueError: an option is out of range (e.g. `timeout_seconds=0`, `retries=-1`).
        TypeError: an unknown option, or a `task_runner` that is not a `TaskRunner`.
    """
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"@flow got unknown option(s) {sorted(unknown)}")
    if __fn is not None:
        return Flow(__fn, **options)
    Flow(_probe, **options)  # validate the options at decoration time

    def decorator(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, **options)

    return decorator


def _probe() -> None:
    """Stand-in function used to validate `@flow(...)` options before the function."""


_OPTION_NAMES = frozenset(inspect.signature(Flow.__init__).parameters.keys() - {"self", "fn"})
# Options kept under another attribute name (`validate_parameters` is also a method).
_ATTRIBUTES = {"validate_parameters": "should_validate_parameters"}
