"""Prefect's state constructors: `Completed(message=..., data=...)`, `Failed(...)`, ...

Each builds a `State` of its type with Prefect's keywords (`message=`, `name=`,
`data=`, `timestamp=`) and Prefect's default name. Only the states whose type
asyncflow has are here: PENDING, RUNNING (and RUNNING "Retrying"), COMPLETED, FAILED,
CANCELLED, CRASHED. Prefect's SCHEDULED, PAUSED and CANCELLING states
(`Scheduled`, `AwaitingRetry`, `Late`, `Paused`, `Suspended`, `Cancelling`) need a
server's scheduler; they are not copied.

    >>> Completed(message="cached", data=42).data
    42

A task or flow that returns one of these states ends in it, with `data` as its
result (a `Failed` with an exception as `data` raises it from `.result()`): the rule
is the core's (`_core/_attempt.ending_of`), so every runner applies it. A state
built here always carries its `data` (None included): `Completed().result()` is None,
where an engine state's `result()` raises `MissingResult`.
"""

from __future__ import annotations

from typing import Any

from ._core import State, StateType

__all__ = ("Cancelled", "Completed", "Crashed", "Failed", "Pending", "Retrying", "Running")


def _build(
    type_: StateType,
    default_name: str | None,
    message: str | None,
    name: str | None,
    data: Any,
    timestamp: float | None,
) -> State:
    if message is not None and not isinstance(message, str):
        raise TypeError(f"message must be a string or None, got {type(message).__name__}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty string or None, got {name!r}")
    if timestamp is not None and (
        isinstance(timestamp, bool) or not isinstance(timestamp, (int, float))
    ):
        raise TypeError(f"timestamp must be a number (time.time()) or None, got {timestamp!r}")
    return State(
        type_,
        name if name is not None else default_name,
        message,
        timestamp=None if timestamp is None else float(timestamp),
        data=data,
    )


# Prefect's names are capitalised like classes: ported code calls `Completed(...)`.
def Completed(
    *,
    message: str | None = None,
    name: str | None = None,
    data: Any = None,
    timestamp: float | None = None,
) -> State:
    """A COMPLETED state (name "Completed" unless given), carrying `data`."""
    return _build(StateType.COMPLETED, None, message, name, data, timestamp)


def Failed(
    *,
    message: str | None = None,
    name: str | None = None,
    data: Any = None,
    timestamp: float | None = None,
) -> State:
    """A FAILED state (name "Failed" unless given); `data` is typically the exception."""
    return _build(StateType.FAILED, None, message, name, data, timestamp)


def Crashed(
    *,
    message: str | None = None,
    name: str | None = None,
    data: Any = None,
    timestamp: float | None = None,
) -> State:
    """A CRASHED state (name "Crashed" unless given): the run's code could not finish."""
    return _build(StateType.CRASHED, None, message, name, data, timestamp)


def Cancelled(
    *,
    message: str | None = None,
    name: str | None = None,
    data: Any = None,
    timestamp: float | None = None,
) -> State:
    """A CANCELLED state (name "Cancelled" unless given)."""
    return _build(StateType.CANCELLED, None, message, name, data, timestamp)


def Pending(
    *,
    message: str | None = None,
    name: str | None = None,
    data: Any = None,
    timestamp: float | None = None,
) -> State:
    """A PENDING state (name "Pending" unless given; "NotReady" makes it final)."""
    return _build(StateType.PENDING, None, message, name, data, timestamp)


def Running(
    *,
    message: str | None = None,
    name: str | None = None,
    data: Any = None,
    timestamp: float | None = None,
) -> State:
    """A RUNNING state (name "Running" unless given)."""
    return _build(StateType.RUNNING, None, message, name, data, timestamp)


def Retrying(
    *,
    message: str | None = None,
    name: str | None = None,
    data: Any = None,
    timestamp: float | None = None,
) -> State:
    """A RUNNING state named "Retrying", as Prefect's and as asyncflow's own retries."""
    return _build(StateType.RUNNING, "Retrying", message, name, data, timestamp)
