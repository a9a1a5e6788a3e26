"""Run states: `State` snapshots and their coarse `StateType`."""

from ._core._states import State, StateType

__all__ = ("State", "StateType")
