"""Run states: `State` snapshots, their coarse `StateType`, and Prefect's constructors.

`Completed(message=..., name=..., data=...)`, `Failed`, `Crashed`, `Cancelled`,
`Pending`, `Running` and `Retrying` build a `State` with Prefect's keywords
(`from asyncflow.states import Completed` ports `from prefect.states import Completed`).
A task or flow that returns one ends in it; `task(x, return_state=True)` returns the
final `State`, whose `.result()` gives the value or raises (docs/semantics.md).
"""

from ._core import State, StateType
from ._public import publish
from ._state_constructors import Cancelled, Completed, Crashed, Failed, Pending, Retrying, Running

__all__ = (
    "Cancelled",
    "Completed",
    "Crashed",
    "Failed",
    "Pending",
    "Retrying",
    "Running",
    "State",
    "StateType",
)

publish(__name__, __all__, globals())
