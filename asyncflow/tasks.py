"""Tasks under Prefect's module path: `from asyncflow.tasks import task, Task`.

The same objects as `asyncflow.task` and `asyncflow.Task`, plus `exponential_backoff`
for `retry_delay_seconds=` (Prefect's `prefect.tasks.exponential_backoff`).
"""

from ._backoff import exponential_backoff
from ._public import publish
from ._tasks import Task, task

__all__ = ("Task", "exponential_backoff", "task")

publish(__name__, __all__, globals())
