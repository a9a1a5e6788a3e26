"""Run states: what a future reports about its run, without doing any I/O.

>>> s = State(StateType.COMPLETED)
>>> s.name, s.is_completed(), s.is_final()
('Completed', True, True)
"""

from __future__ import annotations

import enum
from time import time as _now
from typing import Any

__all__ = ("State", "StateType", "completed_state", "running_state")


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
# Facts per member, stored on the member: hashing an Enum runs Python code, and
# State() is built twice per task run. The label of PENDING is "Pending", and so on.
for _member in StateType:
    _member._label = _member.name.capitalize()  # type: ignore[attr-defined]
    _member._final = _member.name in _FINAL_TYPES  # type: ignore[attr-defined]
del _member

# Pending-typed states that are nevertheless final: the run will never start.
_FINAL_PENDING_NAMES = ("NotReady",)


class State:
    """An immutable snapshot of a run's state.

    `type` is the coarse `StateType`; `name` refines it ("NotReady", "TimedOut",
    "Retrying", ...); `attempts` counts the runs of the task's code so far. `data` is
    what a state built with `asyncflow.states.Completed(data=...)` (and the other
    constructors) carries; the engine's own states carry None.
    """

    __slots__ = ("_final", "attempts", "data", "message", "name", "timestamp", "type")

    type: StateType
    name: str
    message: str | None
    timestamp: float
    attempts: int
    data: Any

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        *,
        timestamp: float | None = None,
        attempts: int = 0,
        data: Any = None,
    ) -> None:
        self.type = type
        self.message = message
        self.data = data
        self.timestamp = _now() if timestamp is None else timestamp
        self.attempts = attempts
        if name is None:
            self.name = type._label  # type: ignore[attr-defined]
            self._final: bool = type._final  # type: ignore[attr-defined]
        else:
            self.name = name
            self._final = type._final or name in _FINAL_PENDING_NAMES  # type: ignore[attr-defined]

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
    state.data = None
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
