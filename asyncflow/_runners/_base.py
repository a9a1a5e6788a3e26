"""The `TaskRunner` contract and the bookkeeping every runner shares.

A runner is a structured scope: `with runner:` / `async with runner:` starts its
resources, makes it the target of `.submit()` in that context (see `_current`), and
on exit waits for every run it accepted (cancelling the ones not started if the block
raised), then reports failures nobody looked at. A runner that lives as long as a
process or an app (the default runner, a web engine's) is started and stopped
unscoped instead: `start_unscoped()` / `stop_unscoped()`.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import inspect
import logging
import os
import warnings
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._arguments import allow_failure, expand_map, find_upstreams, resolve
from .._core import (
    NO_OPTIONS,
    CancelReason,
    CircularDependency,
    FutureList,
    PendingLimit,
    Run,
    RunnerNotStarted,
    RunOptions,
    StateType,
    TaskFuture,
    check_count,
    claim_sigterm,
    crashed,
    current_run,
    drain,
    drain_async,
    engine_loop,
    error_of,
    release_sigterm,
    state_of,
    stop_runs,
    submit_run,
    sync_scope,
    terminating,
    was_observed,
)
from .._tags import run_tags
from ..settings import get_settings
from ._by_name import task_function_ref
from ._current import entered, entered_runner, sigterm_enabled

if TYPE_CHECKING:  # for the overloads only: _tasks imports this module
    from .._tasks import Task

__all__ = (
    "Call",
    "TaskRunner",
    "TaskSpec",
    "check_max_workers",
    "entered_runner",  # lives in _current; tests/test_process.py imports it from here
    "new_run",
    "wait_for_upstreams",
)

logger = logging.getLogger("asyncflow")
R = TypeVar("R")
T = TypeVar("T")
Self_ = TypeVar("Self_", bound="TaskRunner")

_REPORTED = (StateType.FAILED, StateType.CRASHED)


class TaskSpec(abc.ABC):
    """What a runner needs from a task (implemented by `asyncflow.task`).

    `run_options` are the task's execution options, built once (retry policy,
    timeout, concurrency limit, state hooks) and shared by all its runs;
    `variadic_keywords` names the function's `**kwargs` parameter (`.map()` maps the
    values inside it), None if it has none.
    """

    name: str
    fn: Callable[..., Any]
    is_async: bool
    run_options: RunOptions = NO_OPTIONS
    variadic_keywords: str | None = None  # the name of the function's `**kwargs`, if any
    tags: frozenset[str] = frozenset()  # the task's own tags (a run adds those around it)

    @abc.abstractmethod
    def invoke(self, parameters: dict[str, Any]) -> Any:
        """Call the function with these (resolved) parameters."""

    @abc.abstractmethod
    def split(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """`(args, kwargs)` for calling `fn` with these parameters elsewhere (a process)."""


class Call:
    """What a run executes: a task and its parameters (futures among them are
    replaced by their results when the call is made; `rebuild` says whether any are).

    `call()` executes it here; `parts()` gives `(function, args, kwargs)` with the
    arguments resolved, for runners that execute it in another process or machine.
    `tags` are the run's: its task's and those around its submission.
    """

    __slots__ = ("is_async", "parameters", "rebuild", "tags", "task")

    def __init__(
        self,
        task: TaskSpec,
        parameters: dict[str, Any],
        rebuild: bool,
        tags: frozenset[str] = frozenset(),
    ) -> None:
        self.task = task
        self.is_async = task.is_async
        self.parameters = parameters
        self.rebuild = rebuild
        self.tags = tags

    def resolved_parameters(self) -> dict[str, Any]:
        """Parameters with upstream futures replaced by their results (all are final)."""
        if self.rebuild:
            return {k: resolve(v) for k, v in self.parameters.items()}
        return self.parameters

    def parts(
        self,
        by_name: bool = False,
        stand_in: Callable[[TaskFuture[Any]], Any] | None = None,
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
        """`(function, args, kwargs)`; `by_name`: a module-level task's function as a
        reference that pickles by name (`@task` took its name in the module, so plain
        pickle cannot find it); other functions as they are. `stand_in(future)` may
        replace a parameter that is an upstream future (a handle to its value where
        the call executes, say); None there means: pass the future's value."""
        task = self.task
        params = self.resolved_parameters() if stand_in is None else self._stand_ins(stand_in)
        args, kwargs = task.split(params)
        fn = (task_function_ref(task) if by_name else None) or task.fn
        return fn, args, kwargs

    def _stand_ins(self, stand_in: Callable[[TaskFuture[Any]], Any]) -> dict[str, Any]:
        if not self.rebuild:
            return self.parameters
        out = {}
        for name, value in self.parameters.items():
            replaced = stand_in(value) if isinstance(value, TaskFuture) else None
            out[name] = resolve(value) if replaced is None else replaced
        return out

    def __call__(self) -> Any:
        if self.rebuild:
            return self.task.invoke(self.resolved_parameters())
        return self.task.invoke(self.parameters)  # per run: one call fewer when no futures

    def __repr__(self) -> str:
        return f"<Call {self.task.name!r}>"


def new_run(
    owner: TaskRunner,
    task: TaskSpec,
    parameters: dict[str, Any],
    rebuild: bool,
    loop: asyncio.AbstractEventLoop | None,
) -> Run:
    tags = run_tags(task.tags)
    run = Run(
        TaskFuture(task.name),
        Call(task, parameters, rebuild, tags),
        task.run_options,
        owner,
        contextvars.copy_context(),
        loop,
    )
    if tags:  # a limit on one of them (`tag:<name>`) holds the run back until a slot frees
        from .._concurrency._tag_limits import limit_by_tags  # first tagged run: the registry

        limit_by_tags(run, tags)
    return run


def check_max_workers(max_workers: int | None, configured: int | None, fallback: int) -> int:
    """A runner's `max_workers`: the argument, else the environment setting, else the
    runner's own default; a clear error for anything but a positive int."""
    if max_workers is None:
        max_workers = configured or fallback
    return check_count("max_workers", max_workers, minimum=1)


def _check_not_circular(fut: TaskFuture[Any], task_name: str) -> None:
    run = current_run.get()
    while run is not None:
        if run.future is fut:
            raise CircularDependency(
                f"task {task_name!r} cannot depend on task {fut.name!r}: that run is still "
                "executing the code that submits it, so it would wait on itself"
            )
        run = run.parent


class TaskRunner(abc.ABC):
    """Runs tasks. Use as `with runner:` or `async with runner:` (or via `@flow`).

    For asyncflow's own modules (not users): `started`, `unfinished()`, `submit_checked`,
    `abandon`, and the unscoped lifecycle `start_unscoped` / `refuse_submissions` /
    `stop_unscoped` of runners that live as long as a process or an app.
    """

    def __init__(self, *, max_pending_runs: int | None = None) -> None:
        if max_pending_runs is None:
            max_pending_runs = get_settings().max_pending_runs
        else:
            check_count("max_pending_runs", max_pending_runs, minimum=1)
        # None (the default) costs `.submit()` one attribute check.
        self._pending_limit = None if max_pending_runs is None else PendingLimit(max_pending_runs)
        self._started = False
        self._inflight: set[Run] = set()
        self._failed: list[TaskFuture[Any]] = []
        self._track_failures = True
        self._abandoned = False  # set on Ctrl-C: do not wait for threads on the way out
        self._sigterm_claims: list[bool] = []  # per entry: did it claim SIGTERM (_core)?
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokens: list[tuple[contextvars.Token[Any], ...]] = []

    @property
    def name(self) -> str:
        """The runner's name in messages: its class name unless a subclass says otherwise."""
        return type(self).__name__

    @property
    def started(self) -> bool:
        """True while the runner accepts submissions."""
        return self._started

    @abc.abstractmethod
    def duplicate(self: Self_) -> Self_:
        """A fresh, not started runner with the same settings."""

    @abc.abstractmethod
    def _start_resources(self) -> None:
        """Acquire pools etc. Called when the runner is entered."""

    @abc.abstractmethod
    def _stop_resources(self) -> None:
        """Release them; every accepted run is final by now."""

    @abc.abstractmethod
    def start_run(self, run: Run) -> None:
        """Begin executing `run` (the engine calls this once its upstreams are final)."""

    @property
    def abandoned(self) -> bool:
        """True once the runner was interrupted (Ctrl-C, SIGTERM) or its flow timed out:
        `_stop_resources` should not wait for work it could not stop."""
        return self._abandoned

    def withdraw(self, run: Run) -> None:  # noqa: B027  (optional hook)
        """`run` has not started and is about to be stopped: make sure it never starts.
        The default does nothing: a local runner checks the run's state before it
        starts an attempt. A runner that hands runs to a remote queue asks the queue
        and, if a worker took the run already, reports it Running
        (`run.report_remote`) before returning, so the stop treats it as executing."""

    def can_stop(self, run: Run) -> bool:
        """Can this runner interrupt `run`'s executing attempt (kill its worker,
        cancel it remotely)? The default, False, suits runners that execute calls on
        threads: a cancel leaves the attempt running, a deadline abandons it."""
        return False

    def stop_running(self, run: Run) -> None:  # noqa: B027  (optional hook)
        """Interrupt `run`'s executing attempt (only asked after `can_stop` said yes);
        report its outcome afterwards as usual."""

    def release_run(self, run: Run) -> None:
        """Forget `run`, which is final now (called once per run, by the engine).

        A runner that keeps per-run state (a remote handle, a queue entry) drops it
        here; an override must call `super().release_run(run)`, which records an
        unobserved failure to report when the runner exits.
        """
        # set.add/discard and list.append are atomic (the GIL, or per-object locks on
        # free-threaded builds): no runner lock on this per-task path.
        self._inflight.discard(run)
        if self._track_failures and state_of(run.future).type in _REPORTED:
            self._failed.append(run.future)
        if run.cancel_reason is not None:
            self._release_stopped(run)

    def _release_stopped(self, run: Run) -> None:  # noqa: B027  (an optional hook)
        """`run`, which a stop ended (see `run.cancel_reason`), was released: free what
        it still holds. Called from `release_run`, so a runner that needs it does not
        override that per-run path (most runs were never stopped)."""

    # ---- submission --------------------------------------------------------------------
    @overload
    def submit(
        self,
        task: Task[..., Coroutine[Any, Any, T]],
        parameters: Mapping[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: Mapping[str, Any] | None = None,
    ) -> TaskFuture[T]: ...

    @overload
    def submit(
        self,
        task: Task[..., T],
        parameters: Mapping[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: Mapping[str, Any] | None = None,
    ) -> TaskFuture[T]: ...

    @overload
    def submit(
        self,
        task: object,
        parameters: Mapping[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: Mapping[str, Any] | None = None,
    ) -> TaskFuture[Any]: ...

    def submit(
        self,
        task: Any,
        parameters: Mapping[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: Mapping[str, Any] | None = None,
    ) -> TaskFuture[Any]:
        """Schedule one run of `task` with `parameters`; return its future at once.

        `dependencies` is accepted for Prefect compatibility; data dependencies are
        found in `parameters` themselves.

        Raises:
            TypeError: `task` is not a task (a function decorated with `@task`).
            RunnerNotStarted: the runner is not started (use `with runner:`).
            CircularDependency: the run would wait for its own future.
        """
        if not isinstance(task, TaskSpec):
            raise TypeError(
                f"{self.name}.submit() expects a task (a function decorated with @task), "
                f"got {type(task).__name__}: {task!r}"
            )
        return self.submit_checked(task, dict(parameters), wait_for)

    def submit_checked(
        self, task: TaskSpec, params: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> TaskFuture[Any]:
        """`submit` once `task` is known to be a task and `params` a fresh dict (the
        hot path of `Task.submit`)."""
        if not self._started:
            raise RunnerNotStarted(
                f"{self.name} is not started: use `with runner:` or `async with runner:` "
                f"before submitting task {task.name!r}"
            )
        ordering = () if wait_for is None else wait_for_upstreams(wait_for, task.name)
        if self._pending_limit is None:
            return self._launch(task, params, ordering)
        return self._launch_bounded(self._pending_limit, task, params, ordering)

    def _launch_bounded(
        self,
        limit: PendingLimit,
        task: TaskSpec,
        params: dict[str, Any],
        ordering: Iterable[tuple[TaskFuture[Any], bool]],
    ) -> TaskFuture[Any]:
        """`_launch` once there is room under `max_pending_runs`; the slot is given back
        when the run is final, whichever way it ends."""
        if not limit.acquire(task.name):
            return self._launch(task, params, ordering)
        try:
            fut = self._launch(task, params, ordering)
        except BaseException:
            limit.release()
            raise
        fut.add_done_callback(limit.release)
        return fut

    def _launch(
        self,
        task: TaskSpec,
        params: dict[str, Any],
        ordering: Iterable[tuple[TaskFuture[Any], bool]] = (),
    ) -> TaskFuture[Any]:
        """Make the run and hand it to the engine; `ordering` are `wait_for` upstreams."""
        upstreams, rebuild = find_upstreams(params)
        upstreams.extend(ordering)
        for fut, _ in upstreams:
            _check_not_circular(fut, task.name)
        loop = self._async_loop() if task.is_async else None
        run = new_run(self, task, params, rebuild, loop)
        self._inflight.add(run)
        try:
            submit_run(run, upstreams)
        except BaseException as exc:
            crashed(run, exc)
            raise
        return run.future

    @overload
    def map(
        self,
        task: Task[..., Coroutine[Any, Any, T]],
        parameters: Mapping[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[T]: ...

    @overload
    def map(
        self,
        task: Task[..., T],
        parameters: Mapping[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[T]: ...

    @overload
    def map(
        self, task: object, parameters: Mapping[str, Any], wait_for: Iterable[Any] | None = None
    ) -> FutureList[Any]: ...

    def map(
        self,
        task: Any,
        parameters: Mapping[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        """One run per element of the iterable parameters (see `Task.map`).

        Raises:
            TypeError: `task` is not a task.
            RunnerNotStarted: the runner is not started.
            MappingLengthMismatch: the iterables have different lengths.
            MappingMissingIterable: no parameter is an iterable to map over.
        """
        if not isinstance(task, TaskSpec):
            raise TypeError(f"{self.name}.map() expects a task, got {type(task).__name__}")
        if not self._started:
            raise RunnerNotStarted(f"{self.name} is not started: use `with runner:` first")
        # Validated once, before any run starts; shared by every run of the map.
        ordering = () if wait_for is None else wait_for_upstreams(wait_for, task.name)
        expanded = expand_map(task.name, parameters, task.variadic_keywords)
        batching = self._begin_batch()
        try:
            return FutureList(self._launch(task, params, ordering) for params in expanded)
        finally:
            if batching:
                self._end_batch()

    def _begin_batch(self) -> bool:
        """A `map` starts: runners may hold the runs it starts and hand them over at
        once in `_end_batch` (True if they do)."""
        return False

    def _end_batch(self) -> None:  # noqa: B027  (an optional hook: a no-op by default)
        """Hand over the runs held since `_begin_batch`."""

    def cancel_all(self) -> int:
        """Cancel every accepted run that has not started; running ones finish.

        Returns how many were cancelled.
        """
        return stop_runs(self.pending_runs(), CancelReason.CANCELLED, pending_only=True)

    def _cancel_everything(
        self, reason: CancelReason = CancelReason.CANCELLED, seconds: float | None = None
    ) -> None:
        """Stop every run that can be stopped: those not started end Cancelled first (so
        none starts meanwhile), then the running ones are stopped for `reason`: async
        runs are cancelled, runs the runner can stop (a process worker is killed) are
        stopped through it; thread runs go on after a plain cancel (a thread cannot be
        interrupted) and are abandoned after a deadline."""
        runs = self.pending_runs()
        stop_runs(runs, CancelReason.CANCELLED, pending_only=True)
        stop_runs(runs, reason, seconds=seconds)

    def _async_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop if self._loop is not None else engine_loop()

    # ---- unscoped lifecycle: runners as long-lived as a process or an app ---------------
    def start_unscoped(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start without entering a scope: submissions reach it through `_current` (the
        default, installed or named runner), not this context. Async runs submitted
        outside flows go to `loop` (None: the engine loop). Failures are not collected
        (a list of every failed run of a process's life would grow without bound)."""
        self._start(loop)
        self._track_failures = False

    def refuse_submissions(self) -> None:
        """From now on `.submit()` raises and shared scopes end new runs Cancelled."""
        self._started = False

    def stop_unscoped(self) -> None:
        """Release the resources of `start_unscoped` (drain or `abandon` first)."""
        self._started = False
        try:
            self._stop_resources()
        finally:
            self._loop = None

    # ---- lifecycle ---------------------------------------------------------------------
    def _start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._started:
            raise RuntimeError(f"{self.name} is already started; use runner.duplicate()")
        self._loop = loop
        self._start_resources()
        self._started = True

    def _enter(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self._start(loop)
        self._sigterm_claims.append(claim_sigterm(sigterm_enabled))
        self._tokens.append(
            (entered.set(self), current_run.set(None), sync_scope.set(loop is None))
        )

    def _leave(self) -> None:
        try:
            self.stop_unscoped()
        finally:
            if self._sigterm_claims.pop():
                release_sigterm()
            runner_token, run_token, scope_token = self._tokens.pop()
            entered.reset(runner_token)
            current_run.reset(run_token)
            sync_scope.reset(scope_token)
            self._report_failures()

    def _report_failures(self) -> None:
        failed, self._failed = self._failed, []
        for fut in failed:
            if not was_observed(fut):
                logger.error(
                    "task %r failed and nothing looked at its result: %s",
                    fut.name,
                    state_of(fut).message,
                    exc_info=error_of(fut),
                )

    def pending_runs(self) -> list[Run]:
        """The runs accepted and not final yet."""
        return list(self._inflight)

    def unfinished(self) -> list[TaskFuture[Any]]:
        """Their futures (what `drain` waits for)."""
        return [run.future for run in list(self._inflight)]

    def __enter__(self: Self_) -> Self_:
        self._enter(None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            fatal = exc_type is not None and not issubclass(exc_type, Exception)
            if self._abandoned_on_exit(exc_type, fatal):
                return
            try:
                drain(self.unfinished)
            except BaseException as interrupt:  # Ctrl-C / SIGTERM while waiting for runs
                self.abandon(_interrupt_reason(type(interrupt)))
                raise
        finally:
            self._leave()

    def _abandoned_on_exit(self, exc_type: type[BaseException] | None, fatal: bool) -> bool:
        """Leaving the scope with `exc_type`: on SIGTERM or a `fatal` one (Ctrl-C,
        SystemExit) stop now and say True: runs still on threads are abandoned (their
        futures end Cancelled; daemon threads do not hold up exit). On another error,
        cancel what can be cancelled; the caller then drains the rest."""
        if terminating() or fatal:
            self.abandon(_interrupt_reason(exc_type))
            return True
        if exc_type is not None:
            self._cancel_everything()
        return False

    def abandon(self, reason: str, cause: CancelReason = CancelReason.INTERRUPTED) -> None:
        """Stop everything now (Ctrl-C, SIGTERM, a shutdown's grace ran out): runs still
        on threads end Cancelled at once and their threads are not joined."""
        self._abandoned = True
        stop_runs(self.pending_runs(), cause, reason)

    def time_out_all(self, seconds: float | None) -> None:
        """A flow's deadline passed: runs not started end Cancelled; running ones end
        TimedOut (async and process runs are stopped, thread runs abandoned: their
        threads are not joined on exit)."""
        self._abandoned = True
        self._cancel_everything(CancelReason.TIMED_OUT, seconds)

    async def __aenter__(self: Self_) -> Self_:
        self._enter(asyncio.get_running_loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            fatal = exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
            if self._abandoned_on_exit(exc_type, fatal):  # a CancelledError is not fatal
                return
            try:
                await drain_async(self.unfinished)
            except asyncio.CancelledError:
                if terminating():  # asyncio.run cancels us on its way out
                    self.abandon(_interrupt_reason(None))
                    raise
                # Cancelled while draining: stop what we can, then keep draining so no
                # run outlives its scope, and re-raise at the end.
                self._cancel_everything()
                await drain_async(self.unfinished)
                raise
            except BaseException as interrupt:  # Ctrl-C / SIGTERM while waiting
                self.abandon(_interrupt_reason(type(interrupt)))
                raise
        finally:
            self._leave()


def _interrupt_reason(exc_type: type[BaseException] | None) -> str:
    """How futures abandoned on the way out say why (their Cancelled message)."""
    if terminating():
        return "interrupted by SIGTERM"
    return f"interrupted by {exc_type.__name__ if exc_type else 'an interrupt'}"


def wait_for_upstreams(wait_for: Any, task_name: str) -> list[tuple[TaskFuture[Any], bool]]:
    """`wait_for=` as `(future, allow_failure)` pairs (SPEC "Fine print").

    Futures order the run, also inside `allow_failure(...)`, which may wrap one future
    or a whole list of them (a `FutureList` from `.map()`), and `allow_failure` around
    the whole `wait_for`. A plain value (a result, an exception object) orders nothing:
    it is ignored with a warning naming it, as Prefect ignores it. A task, a function
    or a coroutine object there is a mistake (a missing `.submit()`): a TypeError.
    """
    allow = isinstance(wait_for, allow_failure)
    if allow:
        wait_for = wait_for.value
    if isinstance(wait_for, TaskFuture):
        return [(wait_for, allow)]
    if not isinstance(wait_for, Iterable) or isinstance(wait_for, (str, bytes)):
        raise TypeError(f"task {task_name!r}: wait_for must be a list of futures, got {wait_for!r}")
    pairs: list[tuple[TaskFuture[Any], bool]] = []
    ignored: list[Any] = []
    for item in wait_for:
        _add_wait_for_item(item, allow, task_name, pairs, ignored)
    if ignored:
        shown = ", ".join(f"{type(v).__name__}: {v!r}"[:80] for v in ignored)
        warnings.warn(
            f"task {task_name!r}: wait_for got {shown}, which is not a future; "
            "it orders nothing and is ignored",
            UserWarning,
            stacklevel=_caller_stacklevel(),
        )
    return pairs


def _caller_stacklevel() -> int:
    """The `stacklevel` of the first frame outside asyncflow, for the function that
    calls this one: a warning points at the user's `.submit()`, `.map()` or call,
    however deep inside asyncflow it is raised."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    here = inspect.currentframe()
    frame = here.f_back if here is not None else None  # the function that warns: level 1
    level = 1
    while frame is not None and frame.f_back is not None:
        if not frame.f_code.co_filename.startswith(package):
            break
        frame, level = frame.f_back, level + 1
    return level


def _add_wait_for_item(
    item: Any,
    allow: bool,
    task_name: str,
    pairs: list[tuple[TaskFuture[Any], bool]],
    ignored: list[Any],
) -> None:
    if isinstance(item, allow_failure):
        allow, item = True, item.value
        if isinstance(item, (list, tuple)):  # allow_failure(futures), e.g. a FutureList
            for inner in item:
                _add_wait_for_item(inner, True, task_name, pairs, ignored)
            return
    if isinstance(item, TaskFuture):
        pairs.append((item, allow))
    elif isinstance(item, TaskSpec) or callable(item) or inspect.iscoroutine(item):
        raise TypeError(
            f"task {task_name!r}: wait_for must contain futures, got "
            f"{type(item).__name__}: {item!r} (did you mean to .submit() it?)"
        )
    else:
        ignored.append(item)
