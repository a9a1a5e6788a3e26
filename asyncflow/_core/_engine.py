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
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import _portal
from ._context import current_run
from ._exceptions import TaskCancelled, TaskCrashed, TaskTimeout, UpstreamFailed
from ._future import LOCK, TaskFuture, finalize_locked, run_callbacks
from ._policy import ConcurrencyLimit, RetryPolicy
from ._resolver import Outcome, Resolver, Skip, Start, Upstream
from ._states import State, StateType, completed_state, running_state

__all__ = (
    "Run",
    "RunOwner",
    "cancel",
    "cancelled",
    "check_cancelled",
    "complete",
    "crashed",
    "execute_async",
    "execute_sync",
    "expire",
    "failure_state",
    "mark_running",
    "mark_running_many",
    "retry_delay",
    "start",
    "start_on_loop",
    "submit",
)

logger = logging.getLogger("asyncflow")
_get_running_loop = asyncio._get_running_loop

_resolver: Resolver[TaskFuture[Any]] = Resolver()


def _after_fork_in_child() -> None:
    global _resolver
    _resolver = Resolver()  # the parent's runs do not exist in a forked child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
        "cancel_reason",
        "context",
        "future",
        "holds_slot",
        "invoke",
        "is_async",
        "limit",
        "loop",
        "on_final",
        "owner",
        "parent",
        "policy",
        "task",
        "timeout",
        "timer",
    )

    def __init__(
        self,
        future: TaskFuture[Any],
        invoke: Callable[[], Any],
        is_async: bool,
        owner: RunOwner,
        context: contextvars.Context,
        loop: asyncio.AbstractEventLoop | None = None,
        policy: RetryPolicy | None = None,
        timeout: float | None = None,
        limit: ConcurrencyLimit | None = None,
        on_final: Callable[[State], object] | None = None,
    ) -> None:
        self.future = future
        self.policy = policy
        self.timeout = timeout
        self.limit = limit
        self.holds_slot = False
        self.on_final = on_final
        self.cancel_reason: str | None = None  # "timeout" / "cancelled": see check_cancelled
        self.timer: asyncio.TimerHandle | None = None
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
        start(run)
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
            start(run)
        else:
            # The upstream may itself be a skip of this cascade that another thread has
            # not completed yet: report it once it is final, with its real state/cause.
            ins.upstream.add_done_callback(functools.partial(_skip, run))


def _skip(run: Run, up: TaskFuture[Any]) -> None:
    err = UpstreamFailed(
        f"task {run.future.name!r} did not run: its upstream task {up.name!r} ended "
        f"{up._state.name}"
    )
    err.__cause__ = up._exception
    state = State(StateType.PENDING, "NotReady", str(err))
    # The resolver already propagated this skip to the runs it knew; telling it
    # again releases any run that registered on this one in the meantime.
    complete(run, state, None, err)


def start(run: Run) -> None:
    """Hand a ready run to its owner, unless its task's concurrency limit is full."""
    limit = run.limit
    if limit is not None:
        if not limit.acquire_or_park(run):
            return  # parked: `_release_limit` starts it when a slot frees up
        run.holds_slot = True
    try:
        run.owner.start_run(run)
    except BaseException as exc:
        crashed(run, exc)


def _release_limit(limit: ConcurrencyLimit) -> None:
    while (parked := limit.release()) is not None:
        parked.holds_slot = True  # the slot passed straight to it
        if parked.future._state._final:  # cancelled while parked: pass the slot on
            parked.holds_slot = False
            continue
        else:
            try:
                parked.owner.start_run(parked)
            except BaseException as exc:
                crashed(parked, exc)
            return


# ---- completion ------------------------------------------------------------------------


def complete(run: Run, state: State, value: Any = None, exc: BaseException | None = None) -> bool:
    """Set `run`'s final state; wake or skip its dependents. False if already final."""
    fut = run.future
    instructions: list[Any] | None = None
    with LOCK:
        if fut._state._final:
            return False
        fut._run = None
        cbs = finalize_locked(fut, state, value, exc)
        if fut._has_dependents:
            outcome = Outcome.COMPLETED if state.type is StateType.COMPLETED else Outcome.FAILED
            instructions = _resolver.finish(fut, outcome)
    _after_final(run, cbs, instructions)
    return True


def _after_final(run: Run, cbs: list[Any] | None, instructions: list[Any] | None) -> None:
    """Everything that follows a final state, outside the lock."""
    fut = run.future
    if run.timer is not None:
        _cancel_timer(run.timer)
    if cbs:
        run_callbacks(fut, cbs)
    if run.on_final is not None:
        try:
            run.on_final(fut._state)
        except Exception:
            logger.exception("a state hook of task %r raised", fut.name)
    try:
        run.owner.release_run(run)
    finally:
        if run.holds_slot:
            run.holds_slot = False
            assert run.limit is not None
            _release_limit(run.limit)
        if instructions:
            _dispatch(instructions)


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
    _after_final(run, cbs, instructions)
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
    """Seconds to wait before another attempt, or None to give up (every runner)."""
    policy = run.policy
    if policy is None or run.cancel_reason is not None or not policy.should_retry(exc, attempt):
        return None
    run.future._set_state(
        State(StateType.RUNNING, "Retrying", f"{type(exc).__name__}: {exc}", attempts=attempt)
    )
    return policy.delay_for(attempt)


def mark_running(run: Run, attempt: int = 1) -> bool:
    """Set RUNNING (False if the run may not start) and arm a thread/process deadline."""
    if not run.future._set_running(attempt):
        return False
    if attempt == 1 and run.timeout is not None and not run.is_async:
        # A thread cannot be interrupted: at the deadline the future fails TimedOut and
        # the owner is asked to stop the work (a process runner kills the worker).
        loop = _portal.get_loop()
        loop.call_soon_threadsafe(_arm_timer, run, loop)
    return True


def mark_running_many(runs: list[Run]) -> list[Run]:
    """`mark_running` for a batch handed over together, under one lock round-trip;
    returns the runs that may start (runs with a timeout are never batched)."""
    started = []
    with LOCK:
        for run in runs:
            fut = run.future
            if not fut._state._final:
                fut._state = running_state(1)
                started.append(run)
    return started


def _arm_timer(run: Run, loop: asyncio.AbstractEventLoop) -> None:
    if not run.future._state._final:
        assert run.timeout is not None
        run.timer = loop.call_later(run.timeout, expire, run)


def _cancel_timer(timer: asyncio.TimerHandle) -> None:
    loop = _portal.get_loop()
    if _get_running_loop() is loop:
        timer.cancel()
    else:
        loop.call_soon_threadsafe(timer.cancel)


def _timeout_error(run: Run) -> TaskTimeout:
    return TaskTimeout(f"task {run.future.name!r} exceeded its timeout of {run.timeout} s")


def _timed_out_state(run: Run, attempt: int) -> State:
    return State(StateType.FAILED, "TimedOut", f"timed out after {run.timeout} s", attempts=attempt)


def expire(run: Run) -> None:
    """The run's deadline passed: end it TimedOut and ask its owner to stop it."""
    run.timer = None
    state = run.future._state
    if state._final:
        return
    run.cancel_reason = "timeout"
    complete(run, _timed_out_state(run, state.attempts), None, _timeout_error(run))
    try:
        run.owner.cancel_running(run)
    except Exception:
        logger.exception("stopping timed-out task %r failed", run.future.name)


def execute_sync(run: Run) -> None:
    """Run a sync task to its final state in this thread (a pool worker or the caller)."""
    if not mark_running(run):
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
            if not mark_running(run, attempt):
                return
        else:
            complete(run, completed_state(attempt), value, None)
            return


def _expire_async(run: Run, task: asyncio.Task[Any]) -> None:
    if not run.future._state._final:
        run.cancel_reason = "timeout"
        task.cancel()


async def execute_async(run: Run) -> None:
    """Run an async task to its final state on the current loop.

    Called as the body of the run's own asyncio task (submitted runs) or awaited
    inline (direct calls, which then re-raise cancellation to their caller). A
    timeout cancels the task at the deadline and ends the run TimedOut.
    """
    if not mark_running(run):
        return
    token = current_run.set(run)
    attempt = 1
    timer = None
    if run.timeout is not None and (task := asyncio.current_task()) is not None:
        timer = asyncio.get_running_loop().call_later(run.timeout, _expire_async, run, task)
    try:
        while True:
            try:
                value = await run.invoke()
            except asyncio.CancelledError:
                if run.cancel_reason != "timeout":
                    cancelled(run)
                    raise
                current = asyncio.current_task()
                if current is not None and hasattr(current, "uncancel"):
                    current.uncancel()  # our own cancellation, consumed here (3.11+)
                complete(run, _timed_out_state(run, attempt), None, _timeout_error(run))
                return
            except BaseException as exc:
                delay = retry_delay(run, exc, attempt)
                if delay is None:
                    complete(run, failure_state(exc, attempt), None, exc)
                    return
                await asyncio.sleep(delay)
                attempt += 1
                if not mark_running(run, attempt):
                    return
            else:
                if run.cancel_reason == "timeout":  # the task swallowed our cancellation
                    complete(run, _timed_out_state(run, attempt), None, _timeout_error(run))
                else:
                    complete(run, completed_state(attempt), value, None)
                return
    finally:
        if timer is not None:
            timer.cancel()
        current_run.reset(token)


def check_cancelled() -> None:
    """Raise if the current task run timed out or was cancelled; else do nothing.

    A running thread cannot be interrupted: long sync tasks call this now and then
    to stop early once their deadline has passed.
    """
    run = current_run.get()
    if run is None or run.cancel_reason is None:
        return
    if run.cancel_reason == "timeout":
        raise _timeout_error(run)
    raise TaskCancelled(f"task {run.future.name!r} was cancelled")


def start_on_loop(run: Run, loop: asyncio.AbstractEventLoop) -> None:
    """Schedule an async run as a task on `loop`, from any thread."""
    if _get_running_loop() is loop:
        _create_task(run, loop)
    else:
        loop.call_soon_threadsafe(_create_task, run, loop)


def _create_task(run: Run, loop: asyncio.AbstractEventLoop) -> None:
    if run.future._state._final:
        return
    if sys.version_info >= (3, 11):  # the task runs in the run's own context copy, as is
        run.task = loop.create_task(execute_async(run), context=run.context)
    else:  # 3.10: entering the run's context makes the task copy it
        run.task = run.context.run(loop.create_task, execute_async(run))
