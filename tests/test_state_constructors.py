"""Prefect's state constructors in `asyncflow.states` (issue 15): type, default name,
Prefect's keywords, `data` carried, bad input named."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest

from asyncflow import flow, task
from asyncflow.states import (
    Cancelled,
    Completed,
    Crashed,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    StateType,
)

CONSTRUCTORS: list[tuple[Callable[..., State], StateType, str, bool]] = [
    (Completed, StateType.COMPLETED, "Completed", True),
    (Failed, StateType.FAILED, "Failed", True),
    (Crashed, StateType.CRASHED, "Crashed", True),
    (Cancelled, StateType.CANCELLED, "Cancelled", True),
    (Pending, StateType.PENDING, "Pending", False),
    (Running, StateType.RUNNING, "Running", False),
    (Retrying, StateType.RUNNING, "Retrying", False),
]


@pytest.mark.parametrize(("make", "type_", "name", "final"), CONSTRUCTORS)
def test_constructor_builds_its_type_and_default_name(
    make: Callable[..., State], type_: StateType, name: str, final: bool
) -> None:
    state = make()
    assert isinstance(state, State)
    assert (state.type, state.name, state.message, state.data) == (type_, name, None, None)
    assert state.is_final() is final


@pytest.mark.parametrize(("make", "type_", "name", "final"), CONSTRUCTORS)
def test_constructor_takes_prefects_keywords(
    make: Callable[..., State], type_: StateType, name: str, final: bool
) -> None:
    payload = {"rows": 3}
    state = make(message="why", name="Custom", data=payload, timestamp=12.5)
    assert (state.type, state.name, state.message, state.timestamp) == (
        type_,
        "Custom",
        "why",
        12.5,
    )
    assert state.data is payload


def test_failed_carries_an_exception_as_data() -> None:
    error = ValueError("bad row")
    state = Failed(message="validation failed", data=error)
    assert state.is_failed()
    assert state.data is error


def test_pending_named_not_ready_is_final_like_the_engines() -> None:
    assert Pending(name="NotReady").is_final()


def test_states_with_data_pickle() -> None:
    back = pickle.loads(pickle.dumps(Completed(message="m", data=[1, 2])))
    assert (back.type, back.message, back.data) == (StateType.COMPLETED, "m", [1, 2])


def test_engine_states_carry_no_data() -> None:
    @task
    def one() -> int:
        return 1

    @flow
    def pipeline() -> State:
        fut = one.submit()
        fut.wait()
        return fut.state

    state = pipeline()
    assert state.is_completed()
    assert state.data is None  # the value lives in the future, not in the state


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"message": 1}, "message"),
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ({"timestamp": "now"}, "timestamp"),
        ({"timestamp": True}, "timestamp"),
    ],
)
def test_bad_keywords_are_type_errors_naming_them(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(TypeError, match=param):
        Completed(**kwargs)


def test_prefect_only_keywords_and_positionals_are_refused() -> None:
    with pytest.raises(TypeError):
        Completed(state_details={})  # type: ignore[call-arg]  # Prefect's server detail
    with pytest.raises(TypeError):
        Completed(State)  # type: ignore[call-arg]  # Prefect's `cls` is not copied
