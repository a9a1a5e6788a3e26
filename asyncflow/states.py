"""Run states: `State` snapshots and their coarse `StateType`."""

from ._core import State, StateType
from ._public import publish

__all__ = ("State", "StateType")

publish(__name__, __all__, globals())
