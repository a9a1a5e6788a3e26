"""asyncflow: an asyncio-native task framework. No server, no database, no config.

from asyncflow import flow, task

@task
def double(x: int) -> int:
    return 2 * x

@flow
def pipeline(xs: list[int]) -> list[int]:
    return double.map(xs).result()

pipeline([1, 2, 3])   # [2, 4, 6]
"""

from ._arguments import allow_failure, quote, unmapped
from ._core import FutureList, State, TaskFuture, check_cancelled
from ._flows import Flow, flow
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
    "task",
    "unmapped",
)
