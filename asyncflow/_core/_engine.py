"""The engine: drives the resolver and the attempt machine, and completes runs.

A submission is a one-way trip: the runner builds a `Run` and calls `submit`; the
engine asks the resolver whether it may start; `owner.start_run` puts it where it
executes (a pool thread, an event loop, a worker process, a cluster). From there on
the run's life is decided by its attempt machine (`_attempt.py`) and carried out here:

* `execute_sync` (a thread) and `execute_async` (an event loop) are the two local
  drivers: they call the task, report each outcome and wait out retry delays;
* a runner that executes calls elsewhere drives the same machine through `begin`,
  `report_value`, `report_error` and `report_crash`, and `retry_later` for a delay;
* `cancel` / `stop_runs` (one way to stop runs, for every reason: a cancel, a failing
  scope, Ctrl-C, a flow deadline, a shutdown) and `expire` (a run's deadline) ask the
  machine what a stop means for the run in its current phase, then do it;
* `complete` sets a final state, which may start or skip dependents.

The resolver, the attempt machines and every future's state share one lock (`LOCK`),
so a dependent that registers while its upstream finishes is never lost and each
decision lands together with the state change it implies. Every state change goes
through `_set_state_locked` or `_finalize_locked`, and `_events.emit` tells any
listener after the lock is released (a listener costs nothing when none is added).
Runs with no upstreams skip the resolver: the common case costs one lock round-trip
to start and one to complete.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from . import _events, _portal
from ._attempt import Attempts, CancelReason, Finish, Phase, Retry, Stop
from ._context import current_run
from ._exceptions import TaskCancelled, TaskCrashed, TaskTimeout, UpstreamFailed
from ._future import LOCK, TaskFuture, run_callbacks
from ._resolver import Outcome, Resolver, Skip, Upstream
from ._run import CallSpec, RunOptions, RunOwner
from ._states import State, StateType, running_state

__all__ = (
    "Run",
    "admit",
    "begin",
    "begin_many",
    "cancel",
    "cancelled",
    "check_cancelled",
    "complete",
    "crashed",
    "execute_async",
    "execute_sync",
    "expire",
    "release_limit",
    "report_crash",
    "report_error",
    "report_remote",
    "report_value",
    "retry_later",
    "start",
    "start_on_loop",
    "stop_runs",
    "submit",
    "upstream_failed",
)

logger = logging.getLogger("asyncflow")
_get_running_loop = asyncio._get_running_loop
_RUNNING = Phase.RUNNING
_FINAL = Phase.FINAL
_PENDING = Phase.PENDING

_resolver: Resolver[TaskFuture[Any]] = Resolver()


def _after_fork_in_child() -> None:
    # A forked child has one thread and none of the parent's runs: a fresh graph (the
    # lock is re-initialised in place by `_future`, so every module's reference works).
    global _resolver
    _resolver = Resolver()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Run(Attempts):
    """One execution of a task: its future, its call, its options, its owner.

    `call()` executes it here (`call.parts()` to ship it elsewhere); `context` is the
    submitter's context copy, entered for every attempt; `loop` is where an async run
    executes; `task` is its asyncio task while it executes; `timer` its deadline's
    timer; `parent` the run that submitted it, if any. The attempt machine's state
    (attempt number, phase, cancel reason) lives in the inherited slots.
    """

    __slots__ = (
        "call",
        "context",
        "future",
        "holds_slot",
        "is_async",
        "limit",
        "loop",
        "on_final",
        "on_running",
        "owner",
        "parent",
        "task",
        "timer",
    )

    def __init__(
        self,
        future: TaskFuture[Any],
        call: CallSpec,
        options: RunOptions,
        owner: RunOwner,
        context: contextvars.Context,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # Attempts.__init__, inlined: this runs once per submission.
        self.name = future.name
        self.retry = options.retry
        self.timeout = options.timeout
        self.attempt = 0
        self.phase = _PENDING
        self.cancel_reason = None
        self.cancel_message = ""
        self.future = future
        self.call = call
        self.is_async = call.is_async
        self.limit = options.limit
        self.on_final = options.on_final
        self.on_running = options.on_running
        self.holds_slot = False
        self.owner = owner
        self.context = context
        self.parent: Run | None = current_run.get()
        self.loop = loop
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        future._run = self
        if loop is not None:
            future._loop = loop

    def cancel(self) -> bool:
        """Cancel this run (what `TaskFuture.cancel` calls)."""
        return cancel(self)

    # ---- what a runner calls (see docs/writing-a-runner.md) ------------------------------
    def execute(self) -> None:
        """Execute a sync run here, in this thread, to its final state (every attempt)."""
        execute_sync(self)

    def start_on_loop(self) -> None:
        """Execute an async run as an asyncio task on its loop (`run.loop`), to its final
        state (every attempt); callable from any thread, returns at once."""
        assert self.loop is not None, f"task {self.name!r} is not an async run"
        start_on_loop(self, self.loop)

    def abandon(self, message: str) -> bool:
        """End the run now, CANCELLED with `message`, whatever it is doing: its runner
        shut down and can no longer execute it. A late outcome is dropped."""
        return cancelled(self, message)

    def begin_attempt(self) -> int:
        """Before sending an attempt elsewhere: mark the run RUNNING (and arm its
        deadline at the first attempt). The attempt number, or 0: do not send it."""
        return begin(self)

    def report_value(self, value: Any) -> None:
        """The attempt returned `value`."""
        report_value(self, value)

    def report_error(self, error: BaseException) -> float | None:
        """The task's code raised `error`. Returns the delay before the next attempt
        if the run retries (then call `retry_later`), else None: the run is final."""
        return report_error(self, error)

    def report_crash(self, error: BaseException) -> float | None:
        """The attempt ended outside the task's code (its worker died, the cluster
        lost it): `error` says how (wrapped in `TaskCrashed` unless it is one). As
        `report_error`, a crash is retried when the task's retry policy agrees."""
        if not isinstance(error, TaskCrashed):
            crash = TaskCrashed(f"task {self.name!r} crashed: {type(error).__name__}: {error}")
            crash.__cause__ = error
            error = crash
        return report_crash(self, error)

    def retry_later(self, delay: float, again: Callable[[Run], object]) -> None:
        """Call `again(run)` after `delay` seconds (on the engine loop's timer), unless
        the run is stopped meanwhile; `again` calls `begin_attempt` first."""
        retry_later(self, delay, again)

    def report_remote(
        self, state: State, value: Any = None, error: BaseException | None = None
    ) -> bool:
        """For a runner whose runs live their whole life elsewhere, attempts, retries
        and deadline included (a task worker): the run is in `state` there. A state
        that is not final (Running) marks the run as executing, with no attempt
        counted and no deadline armed here (reported once: a second report is
        dropped); a final one ends it with `value` or
        `error`, as a stop requested meanwhile says if there was one. False if the
        run is final already (the report is dropped)."""
        return report_remote(self, state, value, error)

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
        instructions = _settle_skips_locked(_resolver.submit(fut, ups))
    if fut._loop is None:
        fut._loop = wait_loop
    _dispatch(instructions)


def _dispatch(instructions: list[Any]) -> None:
    """Carry out resolver instructions, outside the lock: start the ready runs, and
    finish the work of the skipped ones (`_Skipped`, already final)."""
    for ins in instructions:
        if isinstance(ins, _Skipped):
            _after_final(ins.run, ins.callbacks, None)
            continue
        run = ins.key._run
        if run is not None:  # else already final (cancelled by a racing caller)
            start(run)


class _Skipped:
    """A run the resolver skipped, made final (NotReady) under the lock that decided it."""

    __slots__ = ("callbacks", "run")

    def __init__(self, run: Run, callbacks: list[Any] | None) -> None:
        self.run = run
        self.callbacks = callbacks


def _settle_skips_locked(instructions: list[Any]) -> list[Any]:
    """Make every run the resolver skipped final at once, under the lock that decided
    it, so no dependent (an `allow_failure` one) can start before the skip is final
    and see no value. The resolver lists a cascade breadth-first, so each skip's
    upstream is final here already (a failure, or a skip earlier in the list)."""
    if not instructions:
        return instructions
    out: list[Any] = []
    for ins in instructions:
        if not isinstance(ins, Skip):
            out.append(ins)
            continue
        run = ins.key._run
        if run is None:  # already final (cancelled by a racing caller)
            continue
        err = upstream_failed(ins.upstream, f"task {run.future.name!r} did not run: its ")
        state = State(StateType.PENDING, "NotReady", str(err))
        cbs, _ = _finalize_locked(run, state, None, err)  # the resolver dropped it: no more
        out.append(_Skipped(run, cbs))
    return out


# The name of the task whose failure started a NotReady cascade, kept on each
# UpstreamFailed so that the next skip can name it without walking a chain.
_ROOT_TASK = "_asyncflow_root_task"


def upstream_failed(up: TaskFuture[Any], lead: str = "") -> UpstreamFailed:
    """`UpstreamFailed` for a run that depends on `up`, which did not complete.

    Its `__cause__` is the root failure: `up`'s own exception when `up` failed (or
    crashed, or was cancelled), and, when `up` was itself skipped (NotReady), the
    exception that started the cascade. Chaining each skip's error to the next would
    give the tail of an N-deep chain an N-deep `__cause__` chain (megabytes to format,
    all kept alive); the message names both the direct upstream and the root task.
    """
    cause = up._exception
    root = up.name
    if isinstance(cause, UpstreamFailed) and cause.__cause__ is not None:
        root = getattr(cause, _ROOT_TASK, root)
        cause = cause.__cause__
    message = f"{lead}upstream task {up.name!r} ended {up._state.name}"
    if root != up.name:
        message += f" (the failure started at task {root!r}: see __cause__)"
    err = UpstreamFailed(message)
    err.__cause__ = cause
    setattr(err, _ROOT_TASK, root)  # a private attribute, not part of the exception's API
    return err


def start(run: Run) -> None:
    """Hand a ready run to its owner, unless its concurrency limit is full."""
    limit = run.limit
    if limit is not None:
        if not limit.acquire_or_park(run):
            return  # parked: the limit hands it its slot later (`admit`)
        run.holds_slot = True
    _start_run(run)


def admit(run: Run) -> bool:
    """`run`, parked by its limit, now holds its slot: start it. False if it is final
    (cancelled while parked): it took nothing, the caller passes the slot on.

    A limit's `release()` returns the parked run that gets the freed slot (the task's
    `max_concurrency`); a limit that grants slots by itself, from any thread (a tag
    limit, through the named-limit registry), calls this instead."""
    run.holds_slot = True  # the slot passed straight to it
    if run.future._state._final:
        run.holds_slot = False
        return False
    _start_run(run)
    return True


def _start_run(run: Run) -> None:
    """`owner.start_run(run)`; if it raises, the run ends CRASHED. A Ctrl-C or SIGTERM
    that lands in the submitting thread meanwhile also goes on: swallowed here, the
    script would block in its next `.result()` instead of unwinding."""
    try:
        run.owner.start_run(run)
    except Exception as exc:
        crashed(run, exc)
    except BaseException as exc:
        crashed(run, exc)
        raise


def release_limit(limit: Any) -> None:
    """Free one slot of `limit`: it goes to the first parked run still waiting."""
    while (parked := limit.release()) is not None:
        if admit(parked):
            return


# ---- state changes: the one place they happen --------------------------------------------


def _set_state_locked(run: Run, state: State) -> None:
    """A non-final transition (Running, Retrying); the caller holds LOCK."""
    run.future._state = state


def _finalize_locked(
    run: Run, state: State, value: Any, exc: BaseException | None
) -> tuple[list[Any] | None, list[Any] | None]:
    """The final transition; the caller holds LOCK and calls `_after_final` after."""
    fut = run.future
    run.phase = _FINAL
    fut._run = None
    fut._state = state
    fut._value = value
    fut._exception = exc
    cbs = fut._callbacks
    fut._callbacks = None
    instructions = None
    if fut._has_dependents:
        outcome = Outcome.COMPLETED if state.type is StateType.COMPLETED else Outcome.FAILED
        instructions = _settle_skips_locked(_resolver.finish(fut, outcome))
    return cbs, instructions


def complete(run: Run, state: State, value: Any = None, exc: BaseException | None = None) -> bool:
    """Set `run`'s final state; wake or skip its dependents. False if already final."""
    with LOCK:
        if run.future._state._final:
            return False
        cbs, instructions = _finalize_locked(run, state, value, exc)
    _after_final(run, cbs, instructions)
    return True


def _after_final(run: Run, cbs: list[Any] | None, instructions: list[Any] | None) -> None:
    """Everything that follows a final state, outside the lock."""
    fut = run.future
    if run.timer is not None:
        _cancel_timer(run.timer)
    if _events.listeners:
        _events.emit(fut, fut._state)
    if cbs:
        run_callbacks(fut, cbs)
    if run.on_final is not None:
        try:
            run.on_final(fut._state, run)
        except Exception:
            logger.exception("a state hook of task %r raised", fut.name)
    try:
        run.owner.release_run(run)
    finally:
        if run.holds_slot:
            run.holds_slot = False
            assert run.limit is not None
            release_limit(run.limit)
        if instructions:
            _dispatch(instructions)


def _report_failure(run: Run, exc: BaseException, crash: bool) -> float | None:
    """Feed a failed attempt to the machine and carry out its decision: the run ends,
    or it shows "Retrying" and the delay before its next attempt is returned."""
    error, again = run.judge(exc)  # may call retry_condition_fn: not under the lock
    cbs = instructions = None
    with LOCK:
        ins = run.crashed(error, again) if crash else run.raised(error, again)
        if isinstance(ins, Retry):
            _set_state_locked(run, ins.state)
        elif ins is not None:  # a value only for a `ReturnedState` (`_attempt.ending_of`)
            cbs, instructions = _finalize_locked(run, ins.state, ins.value, ins.error)
    if isinstance(ins, Retry):
        if _events.listeners:
            _events.emit(run.future, ins.state)
        return run.retry_delay()  # may call a delay function: not under the lock
    if ins is not None:
        _after_final(run, cbs, instructions)
    return None


def crashed(run: Run, exc: BaseException) -> None:
    """`run` could not be executed at all (its owner raised starting it)."""
    err = TaskCrashed(f"task {run.future.name!r} crashed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    complete(run, State(StateType.CRASHED, message=str(err)), None, err)


# ---- attempts: what every driver calls ----------------------------------------------------


def begin(run: Run) -> int:
    """The run's next attempt executes now: mark it RUNNING and arm the run's deadline
    at the first attempt. Returns the attempt number, or 0 if it may not start."""
    with LOCK:
        attempt = run.begin()
        if not attempt:
            return 0
        state = running_state(attempt)
        _set_state_locked(run, state)
    if _events.listeners:
        _events.emit(run.future, state)
    if run.on_running is not None:
        _call_on_running(run, state)
    if attempt == 1 and run.timeout is not None:
        _arm_deadline(run)
    return attempt


def begin_many(runs: list[Run]) -> list[Run]:
    """`begin` for a batch handed over together, under one lock round-trip; returns
    the runs that may start (runs with a timeout are never batched)."""
    started = []
    with LOCK:
        for run in runs:
            attempt = run.begin()
            if attempt:
                _set_state_locked(run, running_state(attempt))
                started.append(run)
    if _events.listeners:
        for run in started:
            _events.emit(run.future, run.future._state)
    for run in started:
        if run.on_running is not None:
            _call_on_running(run, run.future._state)
    return started


def _call_on_running(run: Run, state: State) -> None:
    """The task's hook for a Running state (outside the lock); one that raises is logged."""
    assert run.on_running is not None
    try:
        run.on_running(state, run)
    except Exception:
        logger.exception("a running hook of task %r raised", run.name)


def report_value(run: Run, value: Any) -> None:
    """The attempt returned `value` (a late value of an abandoned attempt is dropped;
    one that arrives after a stop ends the run as the stop says, without the value).
    A `State` value sets the run's final state instead (`_attempt.ending_of`)."""
    with LOCK:
        ending = run.returned_state(value)
        if ending is None:
            return
        if type(ending) is State:  # the common case: completed, no Finish built
            cbs, instructions = _finalize_locked(run, ending, value, None)
        else:  # a stop ended it, or the value was a State (`_attempt.ending_of`)
            assert isinstance(ending, Finish)
            cbs, instructions = _finalize_locked(run, ending.state, ending.value, ending.error)
    _after_final(run, cbs, instructions)


def report_error(run: Run, exc: BaseException) -> float | None:
    """The task's code raised `exc`: the run ends, or the delay before its next
    attempt is returned (the driver waits it out, then calls `begin` again)."""
    return _report_failure(run, exc, False)


def report_crash(run: Run, error: TaskCrashed) -> float | None:
    """The attempt ended outside the task's code (its worker died); as `report_error`."""
    return _report_failure(run, error, True)


def report_remote(run: Run, state: State, value: Any, error: BaseException | None) -> bool:
    """See `Run.report_remote`: the state of a run that executes entirely elsewhere."""
    if state._final and state.attempts and run.phase is _PENDING and run.on_running is not None:
        # It ran, but ended before anyone here saw it Running: its hooks still hear it.
        report_remote(run, State(StateType.RUNNING, timestamp=state.timestamp), None, None)
    cbs = instructions = None
    with LOCK:
        if run.phase is _FINAL:
            return False
        if not state._final:
            if run.cancel_reason is not None or run.phase is not _PENDING:
                return False  # stopped, or reported executing already (once is enough)
            run.phase = _RUNNING
            _set_state_locked(run, state)
        else:
            if run.cancel_reason is not None:  # ends as the stop says (the machine's rule)
                stopped = run.returned(None)
                assert stopped is not None
                state, value, error = stopped.state, None, stopped.error
            cbs, instructions = _finalize_locked(run, state, value, error)
    if not state._final:
        if _events.listeners:
            _events.emit(run.future, state)
        if run.on_running is not None:  # the remote side started it: its hooks are here
            _call_on_running(run, state)
        return True
    _after_final(run, cbs, instructions)
    return True


def retry_later(run: Run, delay: float, again: Callable[[Run], object]) -> None:
    """For runners that execute elsewhere: call `again(run)` after `delay` seconds,
    on the engine loop's timer, unless the run was stopped meanwhile (`again` must
    call `begin` first, which returns 0 then)."""
    if delay <= 0:
        again(run)
        return
    loop = _portal.get_loop()
    loop.call_soon_threadsafe(loop.call_later, delay, again, run)


# ---- stopping runs: one way, for every reason ---------------------------------------------


def _can_stop(run: Run) -> bool:
    """Can the attempt executing now be interrupted (asked outside the lock)?"""
    if run.task is not None:
        return True
    try:
        return bool(run.owner.can_stop(run))
    except Exception:
        logger.exception("asking %r whether it can stop task %r failed", run.owner, run.name)
        return False


def _withdraw(run: Run) -> None:
    """`run` is pending and about to be stopped: its owner makes sure nothing starts it,
    or, if a remote worker took it already, reports it Running, so that the stop
    treats it as the executing run it is (asked outside the lock)."""
    try:
        run.owner.withdraw(run)
    except Exception:
        logger.exception("withdrawing task %r from %r failed", run.name, run.owner)


def _interrupt(run: Run) -> None:
    """Interrupt the executing attempt (an asyncio task here, or through its owner)."""
    task, loop = run.task, run.loop or (run.task.get_loop() if run.task else None)
    if task is not None and loop is not None:
        if _get_running_loop() is loop:
            task.cancel()
        else:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # its loop is closed: the task is gone with it
                pass
        return
    try:
        run.owner.stop_running(run)
    except Exception:
        logger.exception("stopping task %r failed", run.name)


def cancel(
    run: Run,
    reason: CancelReason = CancelReason.CANCELLED,
    message: str | None = None,
    seconds: float | None = None,
) -> bool:
    """Stop `run` for `reason`, as its attempt machine decides for its phase. True if
    it ended, or will end, as the reason says (False: a plain cancel of a thread run
    that executes, which goes on; or the run is final otherwise)."""
    fut = run.future
    state = fut._state
    if state._final:
        return state.type is StateType.CANCELLED
    if run.phase is _PENDING:
        _withdraw(run)  # a remote queue answers whether a worker has it: then it runs
    stoppable = run.phase is not _PENDING and _can_stop(run)
    cbs = instructions = None
    with LOCK:
        phase = run.phase
        if seconds is not None and phase is not _FINAL:
            run.timeout = seconds
        ins = run.cancel_requested(reason, stoppable, message)
        if isinstance(ins, Finish):
            waiting = phase is _PENDING and _resolver.is_waiting(fut)
            if waiting:
                _, instructions = _resolver.cancel(fut)  # dependents see a failure
            cbs, more = _finalize_locked(run, ins.state, None, ins.error)
            if waiting:  # now that `fut` is final, its skipped dependents can be
                instructions = _settle_skips_locked(instructions or [])
            instructions = (instructions or []) + (more or []) or None
    if ins is None:
        return fut._state.type is StateType.CANCELLED
    if (
        isinstance(ins, Stop)
        or (phase is _RUNNING and stoppable)  # an interrupt: final now, and stopped
        or (phase is Phase.RETRY_WAIT and run.task is not None)  # asleep in a retry delay
    ):
        _interrupt(run)
    if isinstance(ins, Finish):
        _after_final(run, cbs, instructions)
    return True


def cancelled(run: Run, message: str) -> bool:
    """End a run that its runner can no longer execute (it shut down, say)."""
    return cancel(run, CancelReason.SHUTDOWN, message)


def stop_runs(
    runs: Iterable[Run],
    reason: CancelReason,
    message: str | None = None,
    *,
    pending_only: bool = False,
    seconds: float | None = None,
) -> int:
    """Stop every run in `runs` for `reason` (`pending_only`: only runs that have not
    started, as `cancel_all` does). Returns how many ended or will end so."""
    stopped = 0
    for run in list(runs):
        if pending_only and run.phase is not _PENDING:
            continue
        if cancel(run, reason, message, seconds):
            stopped += 1
    return stopped


# ---- deadlines -------------------------------------------------------------------------


def _arm_deadline(run: Run) -> None:
    """Arm the run's deadline where it can be enforced: an async run's own loop (it is
    cancelled there), else the engine loop (the run fails TimedOut at the deadline and
    its owner is asked to stop it: a process worker is killed, a thread abandoned)."""
    assert run.timeout is not None
    loop = run.task.get_loop() if run.task is not None else None
    if loop is not None and _get_running_loop() is loop:
        run.timer = loop.call_later(run.timeout, expire, run)
        return
    loop = loop or _portal.get_loop()
    loop.call_soon_threadsafe(_arm_timer, run, loop)


def _arm_timer(run: Run, loop: asyncio.AbstractEventLoop) -> None:
    if run.phase is not _FINAL and run.timeout is not None:
        run.timer = loop.call_later(run.timeout, expire, run)


def _cancel_timer(timer: asyncio.TimerHandle) -> None:
    loop = _portal.get_loop()
    if _get_running_loop() is loop:
        timer.cancel()
    else:
        loop.call_soon_threadsafe(timer.cancel)


def expire(run: Run) -> None:
    """The run's deadline passed: stop it as a timeout (see `_attempt`)."""
    run.timer = None
    cancel(run, CancelReason.TIMED_OUT)


# ---- the local drivers -------------------------------------------------------------------


def _call_in_run(run: Run) -> Any:
    # Inside the run's own context copy. Reset afterwards: a context that kept the run
    # would form a cycle (run -> context -> run) that only the cyclic GC frees, and
    # collections of 100k-run backlogs stall every thread (the GIL is held).
    token = current_run.set(run)
    try:
        return run.call()
    finally:
        current_run.reset(token)


def _wait_retry_delay(run: Run, delay: float) -> None:
    """Sleep out a retry delay in this thread; returns early if the run is stopped
    (a cancel in the delay ends it at once). A worker thread lends its pool slot
    meanwhile, as when it blocks on a future."""
    run.future._wait(delay)


def execute_sync(run: Run) -> None:
    """Run a sync task to its final state in this thread (a pool worker or the caller)."""
    attempt = begin(run)
    while attempt:
        try:
            value = run.context.run(_call_in_run, run)
        except BaseException as exc:
            delay = report_error(run, exc)
            if delay is None:
                return
            if delay:
                _wait_retry_delay(run, delay)
            attempt = begin(run)
        else:
            report_value(run, value)
            return


def _report_cancelled(run: Run) -> None:
    """The async driver's task was cancelled: by a stop (the machine knows why), or
    from outside (its awaiting caller or scope): then it is a plain cancel."""
    with LOCK:
        ins: Finish | Stop | Retry | None = run.cancel_requested(CancelReason.CANCELLED, True)
        if isinstance(ins, Stop) or ins is None:
            ins = run.raised(asyncio.CancelledError())  # ends the run as the stop says
    if isinstance(ins, Finish):
        complete(run, ins.state, None, ins.error)


def _swallow_cancellation(run: Run) -> bool:
    """The driver's task was cancelled (in the call or a retry delay): end the run;
    True if the cancellation was the run's own deadline, consumed here (the task
    returns normally), False if it must propagate."""
    _report_cancelled(run)
    if run.cancel_reason is not CancelReason.TIMED_OUT:
        return False
    current = asyncio.current_task()
    if current is not None and sys.version_info >= (3, 11):
        current.uncancel()  # our own cancellation, consumed here (3.11+)
    return True


async def execute_async(run: Run) -> None:
    """Run an async task to its final state on the current loop.

    Called as the body of the run's own asyncio task (submitted runs and direct calls;
    a direct call's caller sees cancellation re-raised). A deadline cancels the task
    and the run ends TimedOut; a cancel ends it Cancelled and re-raises.
    """
    if run.task is None:
        run.task = asyncio.current_task()
    attempt = begin(run)
    token = current_run.set(run)
    try:
        while attempt:
            try:
                value = await run.call()
            except asyncio.CancelledError:
                if _swallow_cancellation(run):
                    return
                raise
            except BaseException as exc:
                delay = report_error(run, exc)
                if delay is None:
                    return
                try:
                    await asyncio.sleep(delay)  # a stop meanwhile cancels this task
                except asyncio.CancelledError:
                    if _swallow_cancellation(run):
                        return
                    raise
                attempt = begin(run)
            else:
                report_value(run, value)
                return
    finally:
        run.task = None
        current_run.reset(token)


def check_cancelled() -> None:
    """Raise if the current task run timed out or was cancelled; else do nothing.

    A running thread cannot be interrupted: long sync tasks call this now and then
    to stop early once their deadline has passed or they were abandoned.
    """
    run = current_run.get()
    if run is None or run.cancel_reason is None:
        return
    if run.cancel_reason is CancelReason.TIMED_OUT:
        raise TaskTimeout(f"task {run.future.name!r} exceeded its timeout of {run.timeout} s")
    raise TaskCancelled(f"task {run.future.name!r} was {run.cancel_message}")


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
