"""Run states: `State` snapshots and their coarse `StateType`."""

from ._core import State, StateType

__all__ = ("State", "StateType")
