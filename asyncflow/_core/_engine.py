"""The engine: drives the sans-I/O resolver and executes runs.

A submission is a one-way trip: the runner builds a `Run` and calls `submit`; the
engine asks the resolver whether it may start; `owner.start_run` offloads it (a
pool thread, an event loop, a process); `execute_sync` / `execute_async` call the
task and `complete` sets the final state, which may start or skip dependents.

The resolver and every future's state share one lock (`LOCK`), so a dependent that
registers while its upstream finishes is never lost. Runs with no upstreams skip
the resolver entirely: the common case costs one lock round-trip, at completion.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ._context import current_run
from ._exceptions import TaskCancelled, TaskCrashed, UpstreamFailed
from ._future import LOCK, TaskFuture, finalize_locked, run_callbacks
from ._resolver import Outcome, Resolver, Skip, Start, Upstream
from ._states import State, StateType

__all__ = (
    "Run",
    "RunOwner",
    "cancel",
    "cancelled",
    "complete",
    "crashed",
    "execute_async",
    "execute_sync",
    "failure_state",
    "retry_delay",
    "start_on_loop",
    "submit",
)

logger = logging.getLogger("asyncflow")
_get_running_loop = asyncio._get_running_loop

_resolver: Resolver[TaskFuture[Any]] = Resolver()


class RunOwner(Protocol):
    """What the engine needs from a task runner."""

    def start_run(self, run: Run) -> None:
        """Begin executing `run` (all its upstreams are final and acceptable)."""

    def release_run(self, run: Run) -> None:
        """`run` reached a final state; drop any bookkeeping for it."""

    def cancel_running(self, run: Run) -> bool:
        """Try to stop a run that already started; True if it will end CANCELLED."""


class Run:
    """One execution of a task: its future, how to call it, where it belongs.

    `invoke()` calls the task's function with resolved arguments: it returns the
    value (sync) or a coroutine (async). `context` is the submitter's context copy.
    """

    __slots__ = (
        "context",
        "future",
        "invoke",
        "is_async",
        "loop",
        "owner",
        "parent",
        "retries",
        "retry_delay",
        "task",
    )

    def __init__(
        self,
        future: TaskFuture[Any],
        invoke: Callable[[], Any],
        is_async: bool,
        owner: RunOwner,
        context: contextvars.Context,
        loop: asyncio.AbstractEventLoop | None = None,
        retries: int = 0,
        retry_delay: float = 0.0,
    ) -> None:
        self.future = future
        self.retries = retries
        self.retry_delay = retry_delay
        self.invoke = invoke
        self.is_async = is_async
        self.owner = owner
        self.context = context
        self.parent: Run | None = current_run.get()
        self.loop = loop  # where an async run executes
        self.task: asyncio.Task[None] | None = None
        future._run = self
        if loop is not None:
            future._loop = loop

    def cancel(self) -> bool:
        return cancel(self)

    def __repr__(self) -> str:
        return f"<Run {self.future.name!r} {self.future._state.name}>"


# ---- submission ------------------------------------------------------------------------


def submit(run: Run, upstreams: Iterable[tuple[TaskFuture[Any], bool]] = ()) -> None:
    """Start `run` once its upstream futures are final (`(future, allow_failure)` pairs)."""
    if not upstreams:
        run.owner.start_run(run)
        return
    fut = run.future
    wait_loop = None
    ups = []
    with LOCK:
        for up, allow in upstreams:
            state = up._state
            if state._final:
                outcome: Outcome | None = (
                    Outcome.COMPLETED if state.type is StateType.COMPLETED else Outcome.FAILED
                )
            else:
                outcome = None
                up._has_dependents = True
                if wait_loop is None:
                    wait_loop = up._loop
            ups.append(Upstream(up, allow, outcome))
        instructions = _resolver.submit(fut, ups)
    if fut._loop is None:
        fut._loop = wait_loop
    _dispatch(instructions)


def _dispatch(instructions: list[Start[TaskFuture[Any]] | Skip[TaskFuture[Any]]]) -> None:
    """Carry out resolver instructions, outside the lock."""
    for ins in instructions:
        run = ins.key._run
        if run is None:  # already final (cancelled by a racing caller)
            continue
        if isinstance(ins, Start):
            try:
                run.owner.start_run(run)
            except BaseException as exc:
                crashed(run, exc)
        else:
            up = ins.upstream
            err = UpstreamFailed(
                f"task {ins.key.name!r} did not run: its upstream task {up.name!r} ended "
                f"{up._state.name}"
            )
            err.__cause__ = up._exception
            state = State(StateType.PENDING, "NotReady", str(err))
            # The resolver already propagated this skip; only the future is updated.
            _finish(run, state, None, err, notify_resolver=False)


# ---- completion ------------------------------------------------------------------------


def complete(run: Run, state: State, value: Any = None, exc: BaseException | None = None) -> bool:
    """Set `run`'s final state; wake or skip its dependents. False if already final."""
    return _finish(run, state, value, exc, notify_resolver=True)


def _finish(
    run: Run, state: State, value: Any, exc: BaseException | None, *, notify_resolver: bool
) -> bool:
    fut = run.future
    instructions: list[Any] = []
    with LOCK:
        if fut._state._final:
            return False
        fut._run = None
        cbs = finalize_locked(fut, state, value, exc)
        if notify_resolver and fut._has_dependents:
            outcome = Outcome.COMPLETED if state.type is StateType.COMPLETED else Outcome.FAILED
            instructions = _resolver.finish(fut, outcome)
    run_callbacks(fut, cbs)
    try:
        run.owner.release_run(run)
    finally:
        if instructions:
            _dispatch(instructions)
    return True


def crashed(run: Run, exc: BaseException) -> None:
    err = TaskCrashed(f"task {run.future.name!r} crashed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    complete(run, State(StateType.CRASHED, message=str(err)), None, err)


def cancelled(run: Run, message: str = "cancelled") -> bool:
    err = TaskCancelled(f"task {run.future.name!r} was {message}")
    return complete(run, State(StateType.CANCELLED, message=message), None, err)


def cancel(run: Run) -> bool:
    """Cancel a run: at once if it has not started; through its owner if it runs."""
    fut = run.future
    instructions: list[Any] = []
    with LOCK:
        state = fut._state
        if state._final:
            return state.type is StateType.CANCELLED
        if state.type is StateType.PENDING:
            # Waiting on upstreams, or queued: it will never start (workers check
            # `_set_running`, which fails on a final state).
            if _resolver.is_waiting(fut):
                _, instructions = _resolver.cancel(fut)
            elif fut._has_dependents:
                instructions = _resolver.finish(fut, Outcome.FAILED)
            err = TaskCancelled(f"task {fut.name!r} was cancelled before it started")
            fut._run = None
            cbs = finalize_locked(fut, State(StateType.CANCELLED, message="cancelled"), None, err)
            started = False
        else:
            started = True
    if started:
        task = run.task
        if task is not None and run.loop is not None:
            if _get_running_loop() is run.loop:
                task.cancel()
            else:
                run.loop.call_soon_threadsafe(task.cancel)
            return True
        return run.owner.cancel_running(run)
    run_callbacks(fut, cbs)
    try:
        run.owner.release_run(run)
    finally:
        _dispatch(instructions)
    return True


# ---- execution -------------------------------------------------------------------------


def _call_in_run(run: Run) -> Any:
    current_run.set(run)  # inside the run's own context copy
    return run.invoke()


def failure_state(exc: BaseException, attempts: int) -> State:
    if isinstance(exc, Exception):
        return State(StateType.FAILED, message=f"{type(exc).__name__}: {exc}", attempts=attempts)
    return State(StateType.CRASHED, message=f"{type(exc).__name__}: {exc}", attempts=attempts)


def retry_delay(run: Run, exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before another attempt, or None to give up (sync and async)."""
    if not isinstance(exc, Exception) or attempt > run.retries:
        return None
    run.future._set_state(
        State(StateType.RUNNING, "Retrying", f"{type(exc).__name__}: {exc}", attempts=attempt)
    )
    return run.retry_delay


def execute_sync(run: Run) -> None:
    """Run a sync task to its final state in this thread (a pool worker or the caller)."""
    fut = run.future
    if not fut._set_running():
        return  # cancelled while queued
    attempt = 1
    while True:
        try:
            value = run.context.run(_call_in_run, run)
        except BaseException as exc:
            delay = retry_delay(run, exc, attempt)
            if delay is None:
                complete(run, failure_state(exc, attempt), None, exc)
                return
            if delay:
                time.sleep(delay)
            attempt += 1
            if not fut._set_running(attempt):
                return
        else:
            complete(run, State(StateType.COMPLETED, attempts=attempt), value, None)
            return


async def execute_async(run: Run) -> None:
    """Run an async task to its final state on the current loop.

    Called as the body of the run's own asyncio task (submitted runs) or awaited
    inline (direct calls, which then re-raise cancellation to their caller).
    """
    fut = run.future
    if not fut._set_running():
        return
    token = current_run.set(run)
    attempt = 1
    try:
        while True:
            try:
                value = await run.invoke()
            except asyncio.CancelledError:
                cancelled(run)
                raise
            except BaseException as exc:
                delay = retry_delay(run, exc, attempt)
                if delay is None:
                    complete(run, failure_state(exc, attempt), None, exc)
                    return
                await asyncio.sleep(delay)
                attempt += 1
                if not fut._set_running(attempt):
                    return
            else:
                complete(run, State(StateType.COMPLETED, attempts=attempt), value, None)
                return
    finally:
        current_run.reset(token)


async def _task_body(run: Run) -> None:
    try:
        await execute_async(run)
    except asyncio.CancelledError:
        pass  # recorded on the future; nobody awaits this asyncio task itself


def start_on_loop(run: Run, loop: asyncio.AbstractEventLoop) -> None:
    """Schedule an async run as a task on `loop`, from any thread."""
    if _get_running_loop() is loop:
        _create_task(run, loop)
    else:
        loop.call_soon_threadsafe(_create_task, run, loop)


def _create_task(run: Run, loop: asyncio.AbstractEventLoop) -> None:
    if run.future._state._final:
        return
    # Entering the run's context makes the task copy it (works on 3.10, which has no
    # `context=` argument to create_task).
    run.task = run.context.run(loop.create_task, _task_body(run))
