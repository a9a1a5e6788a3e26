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

import asyncio
import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, overload

from ._arguments import find_upstreams, raise_if_upstream_failed
from ._core import (
    ConcurrencyLimit,
    DeadlineAlarm,
    FutureList,
    RetryPolicy,
    Run,
    RunOptions,
    State,
    StateType,
    Suspend,
    TaskFuture,
    UpstreamFailed,
    awaitable_result,
    block_until_final,
    check_count,
    check_factor,
    check_not_self,
    check_timeout,
    consume_generator,
    execute_async,
    execute_sync,
    outcome,
    state_with_data,
    validate_delay,
)
from ._methods import bind_task, rewrap_method, unwrap_method
from ._runners._base import TaskSpec, new_run, wait_for_upstreams
from ._runners._current import current_runner
from ._runs import RUN_BOOK, Hooks, HookSet, attempt_failed_state, takes_run_record, task_run_record
from ._streaming import MapIter
from ._tags import check_tags

__all__ = ("Task", "is_async_callable", "task")

P = ParamSpec("P")
# Covariant (R is only returned): pyright types what an `async def` returns as
# `CoroutineType[...]`, a subclass of `Coroutine`, and only a covariant R lets that task
# match `.submit()`'s `Task[P, Coroutine[Any, Any, T]]` overload, so `TaskFuture[T]`
# under pyright as under mypy (not a future of a coroutine).
R = TypeVar("R", covariant=True)
T = TypeVar("T")
# A bound method's task: its parameters after the first (`self`), its return type.
P2 = ParamSpec("P2")
R2 = TypeVar("R2")
S = TypeVar("S")

_RESERVED = "wait_for"
# The keyword of a direct call that returns the run's final State (as Prefect's).
RETURN_STATE = "return_state"
logger = logging.getLogger("asyncflow")
# asyncflow's `hook(task, state)` or Prefect's `hook(task, task_run, state)` (`_runs`).
StateHook = Callable[[Any, State], object] | Callable[[Any, Any, State], object]
RetryCondition = Callable[[Any, BaseException], bool] | Callable[[Any, Any, State], bool]
# A delay, one per retry, `f(attempt) -> seconds`, or Prefect's `f(retries) -> [seconds]`
# (what `exponential_backoff` returns); `_core/_policy.py` tells the two callables apart.
RetryDelay = float | Sequence[float] | Callable[[int], float] | Callable[[int], list[float]]


def check_not_return_state(params: Any, label: str) -> None:
    """A function parameter named `return_state` would be shadowed by the call's own
    keyword (Prefect reserves it too): refused at decoration, naming `label`."""
    if RETURN_STATE in params:
        raise ValueError(
            f"{label}: a parameter named {RETURN_STATE!r} is reserved by asyncflow "
            f"(a call with return_state=True returns the run's final State); rename the "
            f"parameter"
        )


def return_state_flag(kwargs: dict[str, Any], kind: str, name: object) -> bool:
    """Pop the call's `return_state=` keyword (a bool, checked now) of the task or flow
    (`kind`) `name`; the label is formatted only for the error (this runs per call)."""
    flag = kwargs.pop(RETURN_STATE, False)
    if not isinstance(flag, bool):
        raise TypeError(f"{kind} {name!r}: return_state must be True or False, got {flag!r}")
    return flag


def final_state(fut: TaskFuture[Any]) -> State:
    """The final state of a direct call's run, carrying its value or its error (what
    `return_state=True` returns; the future's own state carries neither)."""
    return state_with_data(fut.state, outcome(fut, False))


def not_ready_state(
    upstreams: list[tuple[TaskFuture[Any], bool]], name: str, kind: str = "task"
) -> State | None:
    """The NotReady state a `return_state=True` call (of a task or a flow, `kind`) ends
    in when an upstream did not complete (without it the call raises that
    `UpstreamFailed`), else None."""
    try:
        raise_if_upstream_failed(upstreams, name, kind)
    except UpstreamFailed as err:
        return State(StateType.PENDING, "NotReady", str(err), data=err)
    return None


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """True for `async def` functions, also behind partials and callable objects."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True  # an async generator's yields are collected on a loop (docs/policies.md)
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


_UNSET: Any = object()
_NO_SLOTS = contextlib.nullcontext()  # reusable (sync and async): it keeps no state


def _tag_limits_of(task: TaskSpec, run: Run) -> Any:
    """`_concurrency._tag_limits` if `run`'s tags have limits, else None. A direct call
    then holds their slots around the call (a submitted run waits in the engine)."""
    if run.limit is task.run_options.limit:  # no tag limit was added for this run
        return None
    from ._concurrency import _tag_limits  # loaded by the first run whose tags have limits

    return _tag_limits


def validate_task_options(options: dict[str, Any]) -> tuple[dict[str, Any], HookSet]:
    """Check every option now (decoration time) and normalise it; raise clearly.
    Returns the options and the task's hooks (whose lists the options now hold)."""
    name = options.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"task name must be a non-empty string, got {name!r}")
    check_count("retries", options.get("retries", 0))
    options["retry_delay_seconds"] = validate_delay(options.get("retry_delay_seconds", 0))
    options["retry_jitter_factor"] = check_factor(
        "retry_jitter_factor", options.get("retry_jitter_factor")
    )
    condition = options.get("retry_condition_fn")
    if condition is not None and not callable(condition):
        raise TypeError(f"retry_condition_fn must be callable, got {condition!r}")
    if condition is not None:
        options["_prefect_condition"] = takes_run_record(
            condition,
            "retry_condition_fn",
            "(task, exception)",
            "(task, task_run, state)",
        )
    # Zero would time every run out before it starts (processes) or be ignored
    # (threads, loops): rejected rather than meaning different things per runner.
    options["timeout_seconds"] = check_timeout(
        "timeout_seconds", options.get("timeout_seconds"), allow_zero=False
    )
    limit = options.get("max_concurrency")
    if limit is not None:
        check_count("max_concurrency", limit, minimum=1)
    options["tags"] = check_tags(options.get("tags"))
    hooks = HookSet("task", options)
    options.update(hooks.lists)
    return options, hooks


class Task(TaskSpec, Generic[P, R]):
    """A task: call it (`t(x)`), submit it (`t.submit(x)`), or map it (`t.map(xs)`)."""

    fn: Callable[P, R]  # the function, with its own type (`TaskSpec` needs only a callable)

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        retries: int = 0,
        retry_delay_seconds: RetryDelay = 0,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: RetryCondition | None = None,
        timeout_seconds: float | None = None,
        max_concurrency: int | None = None,
        tags: Iterable[str] | None = None,
        on_completion: Sequence[StateHook] | None = None,
        on_failure: Sequence[StateHook] | None = None,
        on_running: Sequence[StateHook] | None = None,
        on_cancellation: Sequence[StateHook] | None = None,
        on_crashed: Sequence[StateHook] | None = None,
    ) -> None:
        fn, self._method_kind = unwrap_method(fn)  # `@task @classmethod`: its function
        if not callable(fn):
            raise TypeError(f"@task expects a function, got {type(fn).__name__}: {fn!r}")
        label = name if isinstance(name, str) and name else _callable_name(fn)
        try:
            opts, hooks = validate_task_options(
                {
                    "name": name,
                    "description": description,
                    "retries": retries,
                    "retry_delay_seconds": retry_delay_seconds,
                    "retry_jitter_factor": retry_jitter_factor,
                    "retry_condition_fn": retry_condition_fn,
                    "timeout_seconds": timeout_seconds,
                    "max_concurrency": max_concurrency,
                    "tags": tags,
                    "on_completion": on_completion,
                    "on_failure": on_failure,
                    "on_running": on_running,
                    "on_cancellation": on_cancellation,
                    "on_crashed": on_crashed,
                }
            )
        except (TypeError, ValueError) as exc:  # name the task in the message
            raise type(exc)(f"task {label!r}: {exc}") from None
        prefect_condition = opts.pop("_prefect_condition", False)
        self._options = opts
        self.fn = fn
        self.name = label  # `name` is a non-empty str or None by now
        self.description = description if description is not None else inspect.getdoc(fn)
        self.retries: int = retries
        self.retry_delay_seconds = opts["retry_delay_seconds"]
        self.timeout_seconds: float | None = opts["timeout_seconds"]
        self.max_concurrency = max_concurrency
        self.tags: frozenset[str] = opts["tags"]  # a run's tags add those around it
        # Each a list of hooks, and a decorator adding one: `@my_task.on_failure`.
        self.on_completion: Hooks = hooks.lists["on_completion"]
        self.on_failure: Hooks = hooks.lists["on_failure"]
        self.on_running: Hooks = hooks.lists["on_running"]
        self.on_cancellation: Hooks = hooks.lists["on_cancellation"]
        self.on_crashed: Hooks = hooks.lists["on_crashed"]
        self._hooks = hooks
        hooks.label = f"task {self.name!r}"
        hooks.on_change = self._build_run_options
        self._retry = (
            RetryPolicy(
                retries,
                opts["retry_delay_seconds"],
                opts["retry_jitter_factor"],
                self._retry_condition(retry_condition_fn, prefect_condition),
                condition_wants_run=prefect_condition,
            )
            if retries
            else None
        )
        self._limit = ConcurrencyLimit(max_concurrency) if max_concurrency else None
        self._build_run_options()
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
        check_not_return_state(params, f"task {self.name!r}")
        # Simple signatures (only positional-or-keyword parameters) are called with
        # `fn(**parameters)` and bound without `inspect.Signature.bind` when all
        # arguments are positional: the hot path of `.submit()`.
        self._simple = all(
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params.values()
        )
        self._names = tuple(params)
        self.variadic_keywords = next(
            (n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None
        )
        functools.update_wrapper(self, fn)  # copies __doc__, __module__, __wrapped__...

    def __repr__(self) -> str:
        return f"<Task {self.name!r} ({'async' if self.is_async else 'sync'})>"

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed (same names as `@task`).

        The copy has its own `max_concurrency` limit.
        """
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"task {self.name!r}: unknown option(s) {sorted(unknown)}")
        merged = {**self._options, **options}
        if "name" not in options:
            merged["name"] = self.name
        return Task(rewrap_method(self.fn, self._method_kind), **merged)

    # ---- methods: `C().m` is this task bound to the instance (`_methods.py`) -------------
    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Task[P, R]: ...

    @overload
    def __get__(
        self: Task[Concatenate[S, P2], R2], instance: S, owner: type[Any] | None = None
    ) -> Task[P2, R2]: ...

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        """A task on a method, looked up on an instance: the task bound to it (a class
        method's task binds the class; a static method's binds nothing)."""
        return bind_task(self, self._method_kind, instance, owner)

    # ---- execution options, hooks, retry conditions ----------------------------------------
    def _build_run_options(self) -> None:
        """The options every run of this task shares, built once (and again when a hook
        is added by decorator); runs without hooks pay nothing for them."""
        hooks = self._hooks
        prefect_condition = self._retry is not None and self._retry.condition_wants_run
        book = hooks.any() or prefect_condition  # Prefect's run records need start times
        self.run_options = RunOptions(
            retry=self._retry,
            timeout=self.timeout_seconds,
            limit=self._limit,
            on_final=self._on_final if book else None,
            on_running=self._on_running if book else None,
        )

    def _retry_condition(self, fn: Any, prefect_form: bool) -> Callable[..., bool] | None:
        if fn is None:
            return None
        if not prefect_form:
            return functools.partial(fn, self)

        def prefect_condition(error: BaseException, run: Run) -> bool:
            state = attempt_failed_state(error, run.attempt)
            return bool(fn(self, task_run_record(run, state, final=False), state))

        return prefect_condition

    def _on_running(self, state: State, run: Run) -> None:
        RUN_BOOK.started(run, state)
        if self.on_running:
            self._hooks.call(
                ("on_running",), self, state, lambda: task_run_record(run, state, False)
            )

    def _on_final(self, state: State, run: Run) -> None:
        try:
            kinds = self._hooks.final_kinds(state)
            self._hooks.call(
                kinds, self, state, functools.partial(task_run_record, run, state, True)
            )
        finally:
            RUN_BOOK.forget(run)

    # ---- binding and invoking ----------------------------------------------------------
    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._simple and not kwargs and len(args) == len(self._names):
            if len(args) == 1:  # the common case of `.submit(x)`: no zip needed
                return {self._names[0]: args[0]}
            return dict(zip(self._names, args, strict=True))
        try:
            return dict(self._signature.bind(*args, **kwargs).arguments)
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None

    def invoke(self, parameters: dict[str, Any]) -> Any:
        """Call the function with bound, resolved `parameters` (as a runner does); a
        generator it returns is consumed into a list (an awaitable that gives one)."""
        fn: Callable[..., Any] = self.fn
        if self._simple:
            value = fn(**parameters)
        else:
            args, kwargs = self.split(parameters)
            value = fn(*args, **kwargs)
        return awaitable_result(value) if self.is_async else consume_generator(value)

    def split(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Bound parameters back to `(args, kwargs)` for `fn(*args, **kwargs)`."""
        if self._simple:
            return (), parameters
        bound = inspect.BoundArguments(self._signature, parameters)  # type: ignore[arg-type, unused-ignore]  # typeshed (some versions) wants an OrderedDict
        return bound.args, bound.kwargs

    # ---- direct call -------------------------------------------------------------------
    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    # `return_state=` cannot sit beside `P.kwargs` (PEP 612): with it the arguments are
    # not checked against the function, but the State's value type is kept. The async
    # overload comes first and wins (pyright calls the pair an unsafe overlap).
    @overload
    def __call__(  # pyright: ignore[reportOverlappingOverload]
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        return_state: Literal[True],
        **kwargs: Any,
    ) -> Coroutine[Any, Any, State[T]]: ...

    @overload
    def __call__(
        self: Task[P, T], *args: Any, return_state: Literal[True], **kwargs: Any
    ) -> State[T]: ...

    @overload
    def __call__(self, *args: Any, return_state: Literal[False], **kwargs: Any) -> R: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run now, keeping the function's colour: sync returns the value, async an
        awaitable. Futures among the arguments are resolved first.

        With `return_state=True` the call returns the run's final `State` instead
        (awaitable for an async task), whose `.result()` gives the value or raises:
        the call itself does not raise for the task's failure (nor for an upstream's:
        the state is then NotReady).
        """
        wait_for = kwargs.pop(_RESERVED, None)
        return_state = return_state_flag(kwargs, "task", self.name)
        params = self._bind(args, kwargs)
        upstreams, rebuild = find_upstreams(params)
        if wait_for is not None:
            upstreams.extend(wait_for_upstreams(wait_for, self.name))
        if self.is_async:
            return self._call_async(params, upstreams, rebuild, return_state)
        for fut, _ in upstreams:
            block_until_final(fut)
        if return_state and (skipped := not_ready_state(upstreams, self.name)) is not None:
            return skipped
        raise_if_upstream_failed(upstreams, self.name)
        run = new_run(current_runner(), self, params, rebuild, None)
        limits = _tag_limits_of(self, run)
        with limits.held_around_call(run) if limits else _NO_SLOTS:
            if self.timeout_seconds is None:
                execute_sync(run)
            else:
                with DeadlineAlarm(run):  # interrupts the body at the deadline, if it can
                    execute_sync(run)
        return final_state(run.future) if return_state else outcome(run.future)

    async def _call_async(
        self,
        params: dict[str, Any],
        upstreams: list[tuple[TaskFuture[Any], bool]],
        rebuild: bool,
        return_state: bool = False,
    ) -> Any:
        for fut, _ in upstreams:
            check_not_self(fut)
            await Suspend(fut)
        if return_state and (skipped := not_ready_state(upstreams, self.name)) is not None:
            return skipped
        raise_if_upstream_failed(upstreams, self.name)
        run = new_run(current_runner(), self, params, rebuild, None)
        # As every run, a direct call runs in its own copy of the context (a task of
        # its own, created inside the copy): context changes in the task do not leak
        # into the caller. Cancelling the caller cancels the awaited task.
        limits = _tag_limits_of(self, run)
        async with limits.held_around_call_async(run) if limits else _NO_SLOTS:
            await run.context.run(asyncio.ensure_future, execute_async(run))
        return final_state(run.future) if return_state else outcome(run.future)

    # ---- submit and map ----------------------------------------------------------------
    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> TaskFuture[T]: ...

    @overload
    def submit(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> TaskFuture[T]: ...

    # With `wait_for=`, the arguments are not checked against the function: PEP 612
    # allows no keyword parameter beside `P.kwargs` (the result type is still kept).
    @overload
    def submit(
        self: Task[P, Coroutine[Any, Any, T]],
        *args: Any,
        wait_for: Iterable[Any] | TaskFuture[Any],
        **kwargs: Any,
    ) -> TaskFuture[T]: ...

    @overload
    def submit(
        self: Task[P, T], *args: Any, wait_for: Iterable[Any] | TaskFuture[Any], **kwargs: Any
    ) -> TaskFuture[T]: ...

    def submit(self, *args: Any, **kwargs: Any) -> TaskFuture[Any]:
        """Schedule a run on the current task runner and return its future at once.

        `wait_for=[futures]` orders this run after them without passing data. Inside a
        flow the run goes to the flow's runner, inside `with runner:` to that runner,
        anywhere else to a process-wide default `ThreadPoolTaskRunner`.

        Raises:
            TypeError: the arguments do not fit the function's signature, or
                `wait_for` holds a task, a function or a coroutine (the message names it).
            CircularDependency: `wait_for` or the arguments include this run's own
                future (a task waiting for itself).
            WouldDeadlock: `ASYNCFLOW_MAX_PENDING_RUNS` is reached and the caller is on
                an event loop's thread, where waiting for room would block the loop.
        """
        wait_for = kwargs.pop(_RESERVED, None)
        return current_runner().submit_checked(self, self._bind(args, kwargs), wait_for)

    @overload
    def delay(
        self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> TaskFuture[T]: ...

    @overload
    def delay(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> TaskFuture[T]: ...

    def delay(self, *args: Any, **kwargs: Any) -> TaskFuture[Any]:
        """Send one run to task workers and return its future at once (docs/workers.md)."""
        return self.apply_async(args, kwargs)

    @overload
    def apply_async(
        self: Task[P, Coroutine[Any, Any, T]],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | TaskFuture[Any] | None = None,
    ) -> TaskFuture[T]: ...

    @overload
    def apply_async(
        self: Task[P, T],
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | TaskFuture[Any] | None = None,
    ) -> TaskFuture[T]: ...

    def apply_async(
        self,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[Any] | TaskFuture[Any] | None = None,
    ) -> TaskFuture[Any]:
        """`delay(*args, **kwargs)`, with `wait_for=` futures to run after."""
        from ._taskworkers import apply_async  # loaded on first use: the broker's modules

        return apply_async(self, self._bind(tuple(args), dict(kwargs or {})), wait_for)

    @overload
    def map(self: Task[P, Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    @overload
    def map(self: Task[P, T], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    def map(self, *args: Any, **kwargs: Any) -> FutureList[Any]:
        """Submit one run per element of the iterable arguments; results keep input order.

        `str`/`bytes` and non-iterables are broadcast; wrap an iterable in
        `unmapped(...)` to broadcast it. Defaults are not mapped.
        `max_concurrency=N` runs at most N of this map's runs at once (unless the
        function itself has a parameter of that name, which then gets the value).

        Raises:
            MappingLengthMismatch: the iterables have different lengths.
            MappingMissingIterable: no argument is an iterable to map over.
            TypeError: the arguments do not fit the function's signature.
        """
        if "max_concurrency" in kwargs and "max_concurrency" not in self._signature.parameters:
            limit = kwargs.pop("max_concurrency")
            if limit is not None:
                return self.with_options(max_concurrency=limit).map(*args, **kwargs)
        wait_for: Iterable[Any] | None = kwargs.pop(_RESERVED, None)
        return current_runner().map(self, self._bind(args, kwargs), wait_for=wait_for)

    @overload
    def map_iter(
        self: Task[P, Coroutine[Any, Any, T]],
        *iterables: Iterable[Any],
        max_concurrency: int = 64,
        ordered: bool = True,
        **static: Any,
    ) -> MapIter[T]: ...

    @overload
    def map_iter(
        self: Task[P, T],
        *iterables: Iterable[Any],
        max_concurrency: int = 64,
        ordered: bool = True,
        **static: Any,
    ) -> MapIter[T]: ...

    def map_iter(
        self,
        *iterables: Iterable[Any],
        max_concurrency: int = 64,
        ordered: bool = True,
        **static: Any,
    ) -> MapIter[Any]:
        """Stream runs over (possibly huge or lazy) iterables with bounded concurrency.

        Element i of each iterable becomes positional argument i of run i; keyword
        arguments are passed to every run. At most `max_concurrency` runs are in
        flight; iterate the result with `for` or `async for` to get the values, in
        input order (or as they finish with `ordered=False`).

        Raises:
            ValueError: `max_concurrency` is below 1.
            TypeError: no iterable given, an argument that is not an iterable (or is a
                `str`/`bytes`), or a `max_concurrency` that is not an int.
        """
        return MapIter(self, iterables, static, self._bind, max_concurrency, ordered)


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    description: str | None = None,
    retries: int = 0,
    retry_delay_seconds: RetryDelay = 0,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: RetryCondition | None = None,
    timeout_seconds: float | None = None,
    max_concurrency: int | None = None,
    tags: Iterable[str] | None = None,
    on_completion: Sequence[StateHook] | None = None,
    on_failure: Sequence[StateHook] | None = None,
    on_running: Sequence[StateHook] | None = None,
    on_cancellation: Sequence[StateHook] | None = None,
    on_crashed: Sequence[StateHook] | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    __fn: Callable[P, R] | None = None, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a function (sync or async) as a task; options are validated now.

    ```python
    @task
    def fetch(url: str) -> bytes: ...

    @task(retries=2, retry_delay_seconds=[1, 5], timeout_seconds=30)
    async def load(key: str) -> dict: ...
    ```

    Options: `name`, `description`, `retries`, `retry_delay_seconds` (a number, a list
    per attempt, or a callable of the attempt number), `retry_jitter_factor`,
    `retry_condition_fn(task, exception) -> bool`, `timeout_seconds`,
    `max_concurrency` (runs of this task at once, process-wide), `tags` (labels its
    runs carry, with the tags around them; the named limit `tag:<tag>` limits the runs
    carrying a tag, process-wide), and lists of state
    hooks `on_completion`, `on_failure`, `on_running`, `on_cancellation`, `on_crashed`
    (`hook(task, state)`, or Prefect's `hook(task, task_run, state)`; also decorators:
    `@my_task.on_failure`). `retry_condition_fn` may also be Prefect's
    `fn(task, task_run, state)`.

    Raises:
        ValueError: an option is out of range (`retries=-1`, `timeout_seconds=0`, a
            NaN delay), or the function has a parameter named `wait_for` (the one
            reserved keyword); at decoration time, not when the task runs.
        TypeError: an unknown option, an option of the wrong type, or a hook or
            `retry_condition_fn` whose signature fits neither form.
    """
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"@task got unknown option(s) {sorted(unknown)}")
    if __fn is not None:
        return Task(__fn, **options)
    try:
        validate_task_options(dict(options))  # raises now, before the function is known
    except (TypeError, ValueError) as exc:
        name = options.get("name")
        where = f"task {name!r}" if isinstance(name, str) and name else "@task"
        raise type(exc)(f"{where}: {exc}") from None

    def decorator(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    return decorator


_OPTION_NAMES = frozenset(inspect.signature(Task.__init__).parameters.keys() - {"self", "fn"})
