"""The hot-path state constructors build exactly what `State(...)` builds."""

from __future__ import annotations

import pytest

from asyncflow._core._states import State, StateType, completed_state, running_state


@pytest.mark.parametrize(
    ("fast", "type_"),
    [(running_state, StateType.RUNNING), (completed_state, StateType.COMPLETED)],
)
def test_fast_states_match_the_constructor(fast: object, type_: StateType) -> None:
    slow = State(type_, attempts=3)
    quick = fast(3)  # type: ignore[operator]
    for attr in ("type", "name", "message", "attempts", "_final"):
        assert getattr(quick, attr) == getattr(slow, attr), attr
    assert quick == slow
    assert abs(quick.timestamp - slow.timestamp) < 60
    assert quick.is_final() is (type_ is StateType.COMPLETED)
