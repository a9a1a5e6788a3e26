"""The `TaskRunner` contract, shared bookkeeping, and which runner a submission uses.

A runner is a structured scope: `with runner:` / `async with runner:` starts its
resources, makes it the target of `.submit()` in that context, and on exit waits for
every run it accepted (cancelling the ones not started if the block raised), then
reports failures nobody looked at.

Which runner `.submit()` uses, innermost first: the runner of the task run that is
submitting (nested submission), the runner entered in this context (a flow's, or
`with runner:`), else the process-wide default `ThreadPoolTaskRunner`.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .._arguments import allow_failure, expand_map, find_upstreams, resolve
from .._core import _engine, _portal, _signals, _validate
from .._core._attempt import CancelReason
from .._core._context import current_run, sync_scope
from .._core._exceptions import CircularDependency, RunnerNotStarted
from .._core._future import FutureList, Suspend, TaskFuture
from .._core._policy import PendingLimit
from .._core._run import NO_OPTIONS, RunOptions
from .._core._states import StateType
from ..settings import get_settings
from ._by_name import task_function_ref

if TYPE_CHECKING:  # for the overloads only: _tasks imports this module
    from .._tasks import Task

__all__ = (
    "Call",
    "TaskRunner",
    "TaskSpec",
    "check_max_workers",
    "current_runner",
    "entered_runner",
    "new_run",
    "wait_for_upstreams",
)

logger = logging.getLogger("asyncflow")
R = TypeVar("R")
T = TypeVar("T")
Self_ = TypeVar("Self_", bound="TaskRunner")

_REPORTED = (StateType.FAILED, StateType.CRASHED)

_entered: contextvars.ContextVar[TaskRunner | None] = contextvars.ContextVar(
    "asyncflow_runner", default=None
)


class TaskSpec(abc.ABC):
    """What a runner needs from a task (implemented by `asyncflow.task`).

    `run_options` are the task's execution options, built once (retry policy,
    timeout, concurrency limit, state hooks) and shared by all its runs.
    """

    name: str
    fn: Callable[..., Any]
    is_async: bool
    run_options: RunOptions = NO_OPTIONS

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
    """

    __slots__ = ("is_async", "parameters", "rebuild", "task")

    def __init__(self, task: TaskSpec, parameters: dict[str, Any], rebuild: bool) -> None:
        self.task = task
        self.is_async = task.is_async
        self.parameters = parameters
        self.rebuild = rebuild

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
        return self.task.invoke(self.resolved_parameters())

    def __repr__(self) -> str:
        return f"<Call {self.task.name!r}>"


def new_run(
    owner: TaskRunner,
    task: TaskSpec,
    parameters: dict[str, Any],
    rebuild: bool,
    loop: asyncio.AbstractEventLoop | None,
) -> _engine.Run:
    return _engine.Run(
        TaskFuture(task.name),
        Call(task, parameters, rebuild),
        task.run_options,
        owner,
        contextvars.copy_context(),
        loop,
    )


def entered_runner() -> TaskRunner | None:
    return _entered.get()


def current_runner() -> TaskRunner:
    """The runner a `.submit()` made here goes to."""
    run = current_run.get()
    if run is not None:
        owner: TaskRunner = run.owner
        return owner
    runner = _entered.get()
    if runner is not None:
        return runner
    from ._thread import default_runner  # here, not at the top: _thread imports this module

    return default_runner()


def check_max_workers(max_workers: int | None, configured: int | None, fallback: int) -> int:
    """A runner's `max_workers`: the argument, else the environment setting, else the
    runner's own default; a clear error for anything but a positive int."""
    if max_workers is None:
        max_workers = configured or fallback
    return _validate.count("max_workers", max_workers, minimum=1)


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
    """Runs tasks. Use as `with runner:` or `async with runner:` (or via `@flow`)."""

    def __init__(self, *, max_pending_runs: int | None = None) -> None:
        if max_pending_runs is None:
            max_pending_runs = get_settings().max_pending_runs
        else:
            _validate.count("max_pending_runs", max_pending_runs, minimum=1)
        # None (the default) costs `.submit()` one attribute check.
        self._pending_limit = None if max_pending_runs is None else PendingLimit(max_pending_runs)
        self._started = False
        self._inflight: set[_engine.Run] = set()
        self._failed: list[TaskFuture[Any]] = []
        self._track_failures = True
        self._abandoned = False  # set on Ctrl-C: do not wait for threads on the way out
        self._sigterm_claims: list[bool] = []  # per entry: did it claim SIGTERM (_signals)?
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tokens: list[tuple[contextvars.Token[Any], ...]] = []

    @property
    def name(self) -> str:
        return type(self).__name__

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
    def start_run(self, run: _engine.Run) -> None:
        """Begin executing `run` (the engine calls this once its upstreams are final)."""

    @property
    def abandoned(self) -> bool:
        """True once the runner was interrupted (Ctrl-C, SIGTERM) or its flow timed out:
        `_stop_resources` should not wait for work it could not stop."""
        return self._abandoned

    def can_stop(self, run: _engine.Run) -> bool:
        """Can this runner interrupt `run`'s executing attempt (kill its worker,
        cancel it remotely)? The default, False, suits runners that execute calls on
        threads: a cancel leaves the attempt running, a deadline abandons it."""
        return False

    def stop_running(self, run: _engine.Run) -> None:  # noqa: B027  (optional hook)
        """Interrupt `run`'s executing attempt (only asked after `can_stop` said yes);
        report its outcome afterwards as usual."""

    def release_run(self, run: _engine.Run) -> None:
        # set.add/discard and list.append are atomic (the GIL, or per-object locks on
        # free-threaded builds): no runner lock on this per-task path.
        self._inflight.discard(run)
        if self._track_failures and run.future._state.type in _REPORTED:
            self._failed.append(run.future)

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
        """
        if not isinstance(task, TaskSpec):
            raise TypeError(
                f"{self.name}.submit() expects a task (a function decorated with @task), "
                f"got {type(task).__name__}: {task!r}"
            )
        return self._submit_bound(task, dict(parameters), wait_for)

    def _submit_bound(
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
            _engine.submit(run, upstreams)
        except BaseException as exc:
            _engine.crashed(run, exc)
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
        """One run per element of the iterable parameters (see `Task.map`)."""
        if not isinstance(task, TaskSpec):
            raise TypeError(f"{self.name}.map() expects a task, got {type(task).__name__}")
        if not self._started:
            raise RunnerNotStarted(f"{self.name} is not started: use `with runner:` first")
        # Validated once, before any run starts; shared by every run of the map.
        ordering = () if wait_for is None else wait_for_upstreams(wait_for, task.name)
        expanded = expand_map(task.name, parameters)
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
        return _engine.stop_runs(self._pending_runs(), CancelReason.CANCELLED, pending_only=True)

    def _cancel_running(self) -> None:
        """Stop every run that can be stopped: those not started end Cancelled, async
        runs are cancelled, runs the runner can stop (a process worker is killed) are
        stopped through it; running thread runs go on (a thread cannot be interrupted)."""
        _engine.stop_runs(self._pending_runs(), CancelReason.CANCELLED)

    def _async_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop if self._loop is not None else _portal.get_loop()

    # ---- lifecycle ---------------------------------------------------------------------
    def _enter(self, loop: asyncio.AbstractEventLoop | None) -> None:
        if self._started:
            raise RuntimeError(f"{self.name} is already started; use runner.duplicate()")
        self._loop = loop
        self._start_resources()
        self._started = True
        self._sigterm_claims.append(_signals.claim(_sigterm_enabled))
        self._tokens.append(
            (_entered.set(self), current_run.set(None), sync_scope.set(loop is None))
        )

    def _leave(self) -> None:
        self._started = False
        try:
            self._stop_resources()
        finally:
            if self._sigterm_claims.pop():
                _signals.release()
            self._loop = None
            runner_token, run_token, scope_token = self._tokens.pop()
            _entered.reset(runner_token)
            current_run.reset(run_token)
            sync_scope.reset(scope_token)
            self._report_failures()

    def _report_failures(self) -> None:
        failed, self._failed = self._failed, []
        for fut in failed:
            if not fut._observed:
                logger.error(
                    "task %r failed and nothing looked at its result: %s",
                    fut.name,
                    fut._state.message,
                    exc_info=fut._exception,
                )

    def _pending_runs(self) -> list[_engine.Run]:
        return list(self._inflight)

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
            if _signals.terminating() or (
                exc_type is not None and not issubclass(exc_type, Exception)
            ):
                # Ctrl-C / SIGTERM / SystemExit: stop now. Runs still on threads are
                # abandoned (their futures end Cancelled; daemon threads do not hold up exit).
                self._abandon(_interrupt_reason(exc_type))
                return
            if exc_type is not None:
                self.cancel_all()
                self._cancel_running()
            try:
                while runs := self._pending_runs():
                    for run in runs:
                        run.future._wait(None)
            except BaseException as interrupt:  # Ctrl-C / SIGTERM while waiting for runs
                self._abandon(_interrupt_reason(type(interrupt)))
                raise
        finally:
            self._leave()

    def _abandon(self, reason: str) -> None:
        """Ctrl-C or SIGTERM: stop everything now; runs still on threads end Cancelled
        at once and their threads are not joined."""
        self._abandoned = True
        _engine.stop_runs(self._pending_runs(), CancelReason.INTERRUPTED, reason)

    def time_out_all(self, seconds: float | None) -> None:
        """A flow's deadline passed: runs not started end Cancelled; running ones end
        TimedOut (async and process runs are stopped, thread runs abandoned: their
        threads are not joined on exit)."""
        self._abandoned = True
        runs = self._pending_runs()
        _engine.stop_runs(runs, CancelReason.CANCELLED, pending_only=True)
        _engine.stop_runs(runs, CancelReason.TIMED_OUT, seconds=seconds)

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
            if _signals.terminating() or (
                exc_type is not None and issubclass(exc_type, (KeyboardInterrupt, SystemExit))
            ):
                self._abandon(_interrupt_reason(exc_type))  # as `__exit__` does
                return
            if exc_type is not None:
                self.cancel_all()
                self._cancel_running()
            while runs := self._pending_runs():
                for run in runs:
                    try:
                        await Suspend(run.future)
                    except asyncio.CancelledError:
                        if _signals.terminating():  # asyncio.run cancels us on its way out
                            self._abandon(_interrupt_reason(None))
                            raise
                        # Cancelled while draining: stop what we can, then keep draining
                        # so no run outlives its scope, and re-raise at the end.
                        self.cancel_all()
                        self._cancel_running()
                        await _drain_shielded(self)
                        raise
                    except BaseException as interrupt:  # Ctrl-C / SIGTERM while waiting
                        self._abandon(_interrupt_reason(type(interrupt)))
                        raise
        finally:
            self._leave()


def _sigterm_enabled() -> bool:
    return get_settings().handle_sigterm


def _interrupt_reason(exc_type: type[BaseException] | None) -> str:
    """How futures abandoned on the way out say why (their Cancelled message)."""
    if _signals.terminating():
        return "interrupted by SIGTERM"
    return f"interrupted by {exc_type.__name__ if exc_type else 'an interrupt'}"


async def _drain_shielded(runner: TaskRunner) -> None:
    while runs := runner._pending_runs():
        for run in runs:
            await asyncio.shield(_wait_final(run.future))


async def _wait_final(fut: TaskFuture[Any]) -> None:
    await Suspend(fut)


def wait_for_upstreams(wait_for: Any, task_name: str) -> list[tuple[TaskFuture[Any], bool]]:
    """`wait_for=` as `(future, allow_failure)` pairs; a clear TypeError for anything else."""
    if isinstance(wait_for, TaskFuture):
        return [(wait_for, False)]
    if not isinstance(wait_for, Iterable) or isinstance(wait_for, (str, bytes)):
        raise TypeError(f"task {task_name!r}: wait_for must be a list of futures, got {wait_for!r}")
    pairs = []
    for item in wait_for:
        allow = isinstance(item, allow_failure)
        inner = item.value if allow else item
        if not isinstance(inner, TaskFuture):
            raise TypeError(
                f"task {task_name!r}: wait_for must contain only futures, got "
                f"{type(inner).__name__}: {inner!r}"
            )
        pairs.append((inner, allow))
    return pairs
