"""Run states: what a future reports about its run, without doing any I/O.

>>> s = State(StateType.COMPLETED)
>>> s.name, s.is_completed(), s.is_final()
('Completed', True, True)
"""

from __future__ import annotations

import enum
from time import time as _now
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from ._exceptions import MissingResult, TaskCancelled, TaskCrashed, TaskFailed, UpstreamFailed

if TYPE_CHECKING:  # a default (PEP 696) lets `State` stand for `State[Any]`
    from typing_extensions import TypeVar

    R = TypeVar("R", default=Any)
else:  # typing_extensions costs ~30 ms to import: not at run time
    from typing import TypeVar

    R = TypeVar("R")

__all__ = ("State", "StateType", "carries_data", "completed_state", "running_state", "with_data")


class StateType(enum.Enum):
    """The coarse kind of a run's state; `State.name` refines it.

    PENDING (not started; "NotReady" is a final PENDING), RUNNING, and the final
    COMPLETED, FAILED, CANCELLED and CRASHED (the run ended outside its own code,
    e.g. its worker process died).
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"


_FINAL_TYPES = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def _store_facts() -> None:
    # Facts per member, stored on the member: hashing an Enum runs Python code, and
    # State() is built twice per task run. The label of PENDING is "Pending", and so on.
    for member in StateType:
        member._label = member.name.capitalize()  # type: ignore[attr-defined]
        member._final = member.name in _FINAL_TYPES  # type: ignore[attr-defined]


_store_facts()

# Pending-typed states that are nevertheless final: the run will never start.
_FINAL_PENDING_NAMES = ("NotReady",)


class _NoData:
    """What a state that carries no outcome holds (`data` reads None): the engine's
    own states, whose run's value or error lives in its future. Never pickled: a
    state leaves it out (`State.__getstate__`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no data>"


_NO_DATA: Any = _NoData()

# The error a state with no exception of its own stands for, per type, when its
# `result()` is asked for (Prefect's FailedRun / CancelledRun / CrashedRun).
_WRAPPERS: dict[StateType, type[Exception]] = {
    StateType.FAILED: TaskFailed,
    StateType.CANCELLED: TaskCancelled,
    StateType.CRASHED: TaskCrashed,
    StateType.PENDING: UpstreamFailed,  # a NotReady state: the run never started
}


class State(Generic[R]):
    """An immutable snapshot of a run's state.

    `type` is the coarse `StateType`; `name` refines it ("NotReady", "TimedOut",
    "Retrying", ...); `attempts` counts the runs of the task's code so far. `data` is
    the outcome a state carries: what `asyncflow.states.Completed(data=...)` (and the
    other constructors) was given, or the value or exception of a run called with
    `return_state=True`. The engine's own states (`future.state`) carry none: `data`
    is None and `result()` says so (the outcome lives in the future).
    """

    __slots__ = ("_data", "_final", "attempts", "message", "name", "timestamp", "type")

    type: StateType
    name: str
    message: str | None
    timestamp: float
    attempts: int

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        *,
        timestamp: float | None = None,
        attempts: int = 0,
        data: Any = _NO_DATA,
    ) -> None:
        self.type = type
        self.message = message
        self._data = data
        self.timestamp = _now() if timestamp is None else timestamp
        self.attempts = attempts
        if name is None:
            self.name = type._label  # type: ignore[attr-defined]
            self._final: bool = type._final  # type: ignore[attr-defined]
        else:
            self.name = name
            self._final = type._final or name in _FINAL_PENDING_NAMES  # type: ignore[attr-defined]

    def __getstate__(self) -> dict[str, Any]:
        # Slots by name, without the no-data marker: a state pickles by its public path
        # only (`asyncflow.states.State`), also from a worker process.
        state = {name: getattr(self, name) for name in State.__slots__}
        if state["_data"] is _NO_DATA:
            del state["_data"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._data = _NO_DATA
        for name, value in state.items():
            setattr(self, name, value)

    @property
    def data(self) -> Any:
        """The outcome this state carries (a value, or an exception), or None."""
        data = self._data
        return None if data is _NO_DATA else data

    @overload
    def result(self, raise_on_failure: Literal[True] = True) -> R: ...

    @overload
    def result(self, raise_on_failure: bool = True) -> R | BaseException: ...

    def result(self, raise_on_failure: bool = True) -> R | BaseException:
        """The value of a COMPLETED state; for any other final state, the exception it
        stands for, raised (or returned, with `raise_on_failure=False`).

        That exception is the one in `data` if there is one (a run's own error, for a
        state from `return_state=True`); else one built from the state's message:
        `TaskFailed` (FAILED), `TaskCancelled`, `TaskCrashed`, or `UpstreamFailed`
        (NotReady).

        Raises:
            MissingResult: the state is not final, or it carries no outcome: a run's
                own state (`future.state`), whose value is `future.result()`.
            Exception: the exception the state stands for (see above), unless
                `raise_on_failure=False`.
        """
        if not self._final:
            raise MissingResult(
                f"a {self.name} state has no result yet: the run is not final "
                f"(wait for the future, or call the task with return_state=True)"
            )
        data = self._data
        if self.type is StateType.COMPLETED:
            if data is _NO_DATA:
                raise MissingResult(
                    "this Completed state carries no result: it is a run's own state "
                    "(future.state); use future.result(), or call with return_state=True"
                )
            return data  # type: ignore[no-any-return]  # R is erased at run time
        error = data if isinstance(data, BaseException) else self._wrapper_error(data)
        if raise_on_failure:
            raise error
        return error

    def _wrapper_error(self, data: Any) -> Exception:
        text = data if isinstance(data, str) else self.message
        return _WRAPPERS[self.type](text or f"the run ended {self.name}")

    def is_pending(self) -> bool:
        """True for PENDING states, NotReady included."""
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        """True while the run's code executes (RUNNING)."""
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        """True if the run returned a value (COMPLETED)."""
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        """True if the run raised, timed out or exited (FAILED)."""
        return self.type is StateType.FAILED

    def is_cancelled(self) -> bool:
        """True if the run was cancelled (CANCELLED)."""
        return self.type is StateType.CANCELLED

    def is_crashed(self) -> bool:
        """True if the run ended outside its own code, e.g. its worker died (CRASHED)."""
        return self.type is StateType.CRASHED

    def is_final(self) -> bool:
        """True if the state will not change again: every type but PENDING and
        RUNNING, and the PENDING "NotReady" (the run will never start)."""
        return self._final

    def __repr__(self) -> str:
        msg = f", message={self.message!r}" if self.message else ""
        return f"State({self.type.name}, name={self.name!r}{msg})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (self.type, self.name, self.message) == (other.type, other.name, other.message)

    def __hash__(self) -> int:
        return hash((self.type, self.name, self.message))


PENDING = State(StateType.PENDING, timestamp=0.0)


def _plain_state(type_: StateType, attempts: int, _new: Any = object.__new__) -> State:
    # The per-run hot path (two states per run): `State(...)` without its argument
    # handling, same result.
    state: State = _new(State)
    state.type = type_
    state.name = type_._label  # type: ignore[attr-defined]
    state.message = None
    state.timestamp = _now()
    state.attempts = attempts
    state._data = _NO_DATA
    state._final = type_._final  # type: ignore[attr-defined]
    return state


def running_state(attempts: int) -> State:
    """`State(StateType.RUNNING, attempts=attempts)`, quickly."""
    return _plain_state(_RUNNING, attempts)


def completed_state(attempts: int) -> State:
    """`State(StateType.COMPLETED, attempts=attempts)`, quickly."""
    return _plain_state(_COMPLETED, attempts)


_RUNNING = StateType.RUNNING
_COMPLETED = StateType.COMPLETED


def carries_data(state: State[Any]) -> bool:
    """Was `state` given an outcome (`data=`, even None)? The engine's own states were not."""
    return state._data is not _NO_DATA


def with_data(state: State[Any], data: Any) -> State[Any]:
    """A copy of `state` carrying `data` (a run's value, or its exception): what a
    call with `return_state=True` returns."""
    return State(
        state.type,
        state.name,
        state.message,
        timestamp=state.timestamp,
        attempts=state.attempts,
        data=data,
    )
