"""The life of one run, as a sans-I/O state machine: events in, instructions out.

A run executes its task's code one or more times (attempts). Every runner asks the
same questions between "the run may start" and "the run is final": did this attempt
end the run, or is another one due, after which delay? What does a cancel request do
to a run that waits in a retry delay, or to one that executes where it cannot be
interrupted? What does a deadline do? This module answers them, once. The engine's
drivers carry the answers out: a pool thread (`execute_sync`), an event loop
(`execute_async`), and runners that ship calls elsewhere (a worker process, a Dask
cluster) through `begin` / `report_*`. They own the I/O (sleeping, cancelling a task,
killing a worker); this module owns the rules. Nothing here imports asyncio, reads a
clock, takes a lock or logs, so every rule is tested without a loop
(`tests/test_attempt.py`, with a hypothesis test against a plain reference loop).

Phases, and the events that move a run between them::

    PENDING --begin--> RUNNING --returned/raised/crashed--> FINAL
                        ^   |
                  begin |   | raised/crashed, and the retry policy says "again"
                        |   v
                      RETRY_WAIT

    cancel(reason) / deadline, in any phase but FINAL:
      PENDING, RETRY_WAIT           -> FINAL at once (nothing executes)
      RUNNING, stoppable driver     -> Stop: the driver interrupts the attempt; the
                                       outcome it then reports ends the run as the
                                       reason says (Cancelled, or TimedOut)
      RUNNING, unstoppable (thread) -> a plain cancel is refused (the run goes on);
                                       a deadline, an interrupt or a shutdown ends the
                                       run at once and abandons the attempt (its late
                                       outcome is dropped)
      RUNNING, interrupt (Ctrl-C, SIGTERM) -> FINAL at once, and a stoppable attempt is
                                       interrupted too: the program is on its way out
                                       and may not live to see the attempt's outcome

The rules, in words:

* Only `Exception`s are retried, up to `retries` times, when `retry_condition_fn`
  (if any) agrees. A crash (the attempt ended outside the task's code: its worker
  process died) is reported as `TaskCrashed`, an `Exception`, so it is retried the same
  way; a condition that returns False for `TaskCrashed` keeps crashes final.
* `sys.exit()` in task code is the task's own failure: it becomes `TaskExited` (an
  `Exception`, FAILED), never an exit of the caller. Other `BaseException`s
  (KeyboardInterrupt in a worker thread, say) end the run CRASHED and are not retried.
* A timeout bounds the whole run, retries and their delays included, and is final: a
  timed-out run is not retried (a thread cannot be stopped, so a retry would run
  beside the abandoned attempt).
* Once a stop was requested, whatever the attempt reports ends the run as the stop's
  reason says: a value that arrives after a cancel does not make the run COMPLETED.
* A `State` returned by the task's code (`asyncflow.states.Completed(data=x)`,
  `Failed(message=..., data=exc)`, ...) is the run's final state, not its value
  (`ending_of`, which flows apply too): COMPLETED gives `data` as the value (a run's
  own state, `future.state`, which carries no data, is itself the value); FAILED,
  CANCELLED and CRASHED raise the exception in `data` from `.result()`, or one built
  from the message (`TaskFailed`, `TaskCancelled`, `TaskCrashed`, naming the task).
  A returned state is the task's decision, so it is not retried (as in Prefect,
  whose engine retries only what raised). A state that is not final (Pending,
  Running, Retrying) cannot end a run: it fails it with a `TypeError` that says so.
  A runner whose engine keeps values where they were made (Dask) reports a returned
  state as the `ReturnedState` it raised there; it means the same.

The machine is a base class whose slots hold its state, so the engine's `Run` *is* its
machine: no extra object per run. It is not thread-safe: the engine calls it under its
one lock, together with the future's state change that follows from each decision.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from ._exceptions import (
    ExitInWorker,
    TaskCancelled,
    TaskCrashed,
    TaskExited,
    TaskFailed,
    TaskTimeout,
    Terminated,
)
from ._states import State, StateType, carries_data, completed_state

if TYPE_CHECKING:
    import random

    from ._policy import RetryPolicy

__all__ = (
    "Attempts",
    "CancelReason",
    "Finish",
    "Phase",
    "Retry",
    "ReturnedState",
    "Stop",
    "ending_of",
    "task_error",
)


class Phase(enum.Enum):
    PENDING = "pending"  # submitted, not started (waiting on upstreams, a slot, a worker)
    RUNNING = "running"  # an attempt executes
    RETRY_WAIT = "retry wait"  # between a failed attempt and the next one
    FINAL = "final"


class CancelReason(enum.Enum):
    """Why a run is being stopped; the value is the verb used in messages."""

    CANCELLED = "cancelled"  # future.cancel(), a scope whose body raised or was cancelled
    TIMED_OUT = "timed out"  # the run's own deadline, or its flow's
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM in the process that owns the run
    SHUTDOWN = "shut down"  # its runner or application stopped with the run unfinished


class Finish:
    """The run is final: set `state`, with `value` (completed) or `error`."""

    __slots__ = ("error", "state", "value")

    def __init__(self, state: State, value: Any = None, error: BaseException | None = None):
        self.state = state
        self.value = value
        self.error = error

    def __repr__(self) -> str:
        return f"Finish({self.state!r}, error={self.error!r})"


class Retry:
    """Attempt number `attempt` is due (after `Attempts.retry_delay()` seconds); until
    then the run reports `state` (RUNNING, named "Retrying")."""

    __slots__ = ("attempt", "state")

    def __init__(self, attempt: int, state: State) -> None:
        self.attempt = attempt
        self.state = state

    def __repr__(self) -> str:
        return f"Retry(attempt={self.attempt})"


class Stop:
    """The attempt executes and its driver can interrupt it: do so; the outcome it
    then reports ends the run (see `Attempts.cancel_reason`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Stop()"


STOP = Stop()

# Module constants for the per-run methods: on Python 3.11 every `Phase.X` goes through
# the Enum metaclass's `__getattr__` hook.
_FINAL = Phase.FINAL
_RUNNING = Phase.RUNNING

# Reasons that end a run at once even where its attempt cannot be interrupted.
_ABANDONING = (CancelReason.TIMED_OUT, CancelReason.INTERRUPTED, CancelReason.SHUTDOWN)


class ReturnedState(Exception):
    """Carries a `State` that task code returned, from where the code ran to the run,
    on a runner that cannot look at a value before leaving it where it was made (a
    Dask cluster keeps a value its dependents read there). Reported as the attempt's
    error, it ends the run exactly as the state returned would (`ending_of`)."""

    def __init__(self, state: State) -> None:
        super().__init__(state)
        self.state = state


# The error a returned final state without an exception of its own stands for.
_RETURNED_ERRORS: dict[StateType, type[Exception]] = {
    StateType.FAILED: TaskFailed,
    StateType.CANCELLED: TaskCancelled,
    StateType.CRASHED: TaskCrashed,
}


def ending_of(returned: State, name: str, attempts: int, kind: str = "task") -> Finish:
    """How a run ends whose code returned the state `returned` (the one place this
    rule lives; `kind` and `name` name the task or flow in messages). The final state
    keeps the returned type, name, message and timestamp, not its data: the value
    (COMPLETED) or the error is the Finish's, as for every run."""
    type_ = returned.type
    data = returned.data
    if type_ is StateType.COMPLETED:
        state = State(
            type_, returned.name, returned.message, timestamp=returned.timestamp, attempts=attempts
        )
        # A run's own state (`future.state`) carries no data: it is passed on as the
        # value, as Prefect passes on the completed states of other runs.
        return Finish(state, data if carries_data(returned) else returned)
    error: BaseException
    if type_ in _RETURNED_ERRORS:
        if isinstance(data, BaseException):
            error = data
        else:
            why = returned.message or (data if isinstance(data, str) else None)
            error = _RETURNED_ERRORS[type_](
                f"{kind} {name!r} returned a {returned.name} state" + (f": {why}" if why else "")
            )
        message = returned.message or _describe(error)
        state = State(
            type_, returned.name, message, timestamp=returned.timestamp, attempts=attempts
        )
        return Finish(state, None, error)
    error = TypeError(
        f"{kind} {name!r} returned {returned!r}, which is not a final state: return "
        f"Completed(...), Failed(...), Cancelled(...) or Crashed(...) from "
        f"asyncflow.states to set how the run ends"
    )
    return Finish(State(StateType.FAILED, message=_describe(error), attempts=attempts), None, error)


def task_error(error: BaseException, name: str) -> BaseException:
    """The exception a failed attempt stands for (the one place this rule lives): the
    task's own, except that `sys.exit()` in task code becomes `TaskExited` (an
    `Exception`: FAILED, retried like any failure, never an exit of the caller).
    asyncflow's own `Terminated` (SIGTERM in the main thread) is not the task's doing
    and stays as it is; `ExitInWorker` is a remote worker's `sys.exit()` carried back."""
    if isinstance(error, ExitInWorker):
        error = SystemExit(error.code).with_traceback(error.__traceback__)
    if not isinstance(error, SystemExit) or isinstance(error, Terminated):
        return error
    call = "sys.exit()" if error.code is None else f"sys.exit({error.code!r})"
    exited = TaskExited(f"task {name!r} called {call}", error.code)
    exited.__cause__ = error
    return exited.with_traceback(error.__traceback__)


class Attempts:
    """The attempt machine of one run (see the module docstring).

    `name` names the task in messages; `retry` is its retry policy (None: no retries);
    `timeout` its `timeout_seconds`. Subclasses (the engine's `Run`) add the I/O side.
    """

    __slots__ = ("attempt", "cancel_message", "cancel_reason", "name", "phase", "retry", "timeout")

    def __init__(self, name: str, retry: RetryPolicy | None, timeout: float | None) -> None:
        self.name = name
        self.retry = retry
        self.timeout = timeout
        self.attempt = 0  # attempts begun so far
        self.phase = Phase.PENDING
        self.cancel_reason: CancelReason | None = None
        self.cancel_message = ""

    # ---- events from the driver --------------------------------------------------------
    def begin(self) -> int:
        """An attempt is about to execute: its number, or 0 if the run may not start
        (it is final, or a stop was requested while it waited)."""
        if self.phase is _FINAL or self.cancel_reason is not None:
            return 0
        self.phase = _RUNNING
        self.attempt += 1
        return self.attempt

    def returned(self, value: Any) -> Finish | None:
        """The attempt returned `value`. None means the run is already final (a stop
        ended it while the attempt ran on): drop the value."""
        ending = self.returned_state(value)
        if isinstance(ending, State):
            return Finish(ending, value)
        return ending

    def returned_state(self, value: Any = None) -> State | Finish | None:
        """`returned`, as the engine's per-run hot path needs it: the run's COMPLETED
        state when the value completes it (the caller keeps the value: no `Finish` is
        built per run), a Finish when a stop ends the run as its reason says or the
        value is a `State` (`ending_of`), None to drop the value."""
        if self.phase is _FINAL:
            return None
        if self.cancel_reason is not None:
            return self._stopped()
        self.phase = _FINAL
        if isinstance(value, State):
            return ending_of(value, self.name, self.attempt)
        return completed_state(self.attempt)

    def judge(self, error: BaseException) -> tuple[BaseException, bool]:
        """Before a failure is reported: the exception it stands for, and whether the
        retry policy wants another attempt. It changes nothing and may run user code
        (`retry_condition_fn`), so drivers call it outside the engine's lock, then pass
        both to `raised` / `crashed` under the lock."""
        error = task_error(error, self.name)
        policy = self.retry
        again = (
            policy is not None
            and isinstance(error, Exception)
            and not isinstance(error, ReturnedState)  # the task's decision: final
            and policy.should_retry(error, self.attempt, self)
        )
        return error, again

    def raised(self, error: BaseException, again: bool = False) -> Finish | Retry | None:
        """The task's code raised `error` (as returned by `judge`, with its verdict)."""
        if self.phase is Phase.FINAL:
            return None
        if self.cancel_reason is not None:
            return self._stopped()
        if not isinstance(error, Exception):
            state = State(StateType.CRASHED, message=_describe(error), attempts=self.attempt)
            return self._final(state, error)
        if isinstance(error, ReturnedState):  # a state returned where values stay put
            self.phase = Phase.FINAL
            return ending_of(error.state, self.name, self.attempt)
        return self._retry_or_fail(error, StateType.FAILED, again)

    def crashed(self, error: BaseException, again: bool = False) -> Finish | Retry | None:
        """The attempt ended outside the task's code (its worker died, say): `error` is
        a `TaskCrashed` (as returned by `judge`, with its verdict)."""
        if self.phase is Phase.FINAL:
            return None
        if self.cancel_reason is not None:
            return self._stopped()
        return self._retry_or_fail(error, StateType.CRASHED, again)

    def retry_delay(self, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt a `Retry` announced. It may run user code
        (a delay function), so drivers call it outside the lock, once the run shows
        its "Retrying" state."""
        assert self.retry is not None
        return self.retry.delay_for(self.attempt, rng)

    def cancel_requested(
        self, reason: CancelReason, stoppable: bool, message: str | None = None
    ) -> Finish | Stop | None:
        """A stop was requested for `reason`. `stoppable`: the driver can interrupt the
        attempt that executes now (an asyncio task, a worker process). None: nothing
        to do (already final, a stop is under way, or a plain cancel of an attempt
        that cannot be interrupted, which goes on). A Finish for an executing,
        stoppable attempt (an interrupt) also means: interrupt it."""
        phase = self.phase
        if phase is Phase.FINAL or self.cancel_reason is not None:
            return None
        if phase is Phase.RUNNING and reason is not CancelReason.INTERRUPTED:
            if stoppable:
                self.cancel_reason = reason
                self.cancel_message = message or reason.value
                return STOP
            if reason not in _ABANDONING:
                return None
        self.cancel_reason = reason
        self.cancel_message = message or (
            f"{reason.value} before it started" if phase is Phase.PENDING else reason.value
        )
        return self._stopped()

    def deadline(self, seconds: float, stoppable: bool) -> Finish | Stop | None:
        """The run's deadline (`seconds` after it began) passed."""
        self.timeout = seconds
        return self.cancel_requested(CancelReason.TIMED_OUT, stoppable)

    # ---- decisions ---------------------------------------------------------------------
    def _retry_or_fail(
        self, error: BaseException, final_type: StateType, again: bool
    ) -> Finish | Retry:
        attempt = self.attempt
        message = _describe(error)
        if again:
            self.phase = Phase.RETRY_WAIT
            return Retry(
                attempt + 1, State(StateType.RUNNING, "Retrying", message, attempts=attempt)
            )
        return self._final(State(final_type, message=message, attempts=attempt), error)

    def _stopped(self) -> Finish:
        """The run ends as its stop's reason says."""
        reason = self.cancel_reason
        assert reason is not None
        if reason is CancelReason.TIMED_OUT:
            state = State(
                StateType.FAILED,
                "TimedOut",
                f"timed out after {self.timeout} s",
                attempts=self.attempt,
            )
            error: BaseException = TaskTimeout(
                f"task {self.name!r} exceeded its timeout of {self.timeout} s"
            )
        else:
            message = self.cancel_message
            state = State(StateType.CANCELLED, message=message, attempts=self.attempt)
            error = TaskCancelled(f"task {self.name!r} was {message}")
        return self._final(state, error)

    def _final(self, state: State, error: BaseException) -> Finish:
        self.phase = Phase.FINAL
        return Finish(state, None, error)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
