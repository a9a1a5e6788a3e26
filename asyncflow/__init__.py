"""asyncflow: an asyncio-native task framework. No server, no database, no config.

Examples:
    >>> from asyncflow import flow, task
    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> @flow
    ... def pipeline(xs: list[int]) -> list[int]:
    ...     return double.map(xs)          # futures in the return value are resolved
    >>> pipeline([1, 2, 3])
    [2, 4, 6]
    >>> double.submit(4).result()          # no flow needed
    8
"""

# The submodules first, so what they export reports their path (`asyncflow.futures.
# TaskFuture`), not the root's (see `_public.py`); the aliases mark them re-exported.
from . import exceptions as exceptions
from . import futures as futures
from . import states as states
from ._arguments import allow_failure, quote, unmapped
from ._core import FutureList, State, TaskFuture, check_cancelled
from ._flows import Flow, flow
from ._public import publish
from ._tags import tags
from ._tasks import Task, task
from .task_worker import aserve, serve

__version__ = "0.1.0"

__all__ = (
    "Flow",
    "FutureList",
    "State",
    "Task",
    "TaskFuture",
    "__version__",
    "allow_failure",
    "aserve",
    "check_cancelled",
    "flow",
    "quote",
    "serve",
    "tags",
    "task",
    "unmapped",
)

publish(__name__, __all__, globals())
