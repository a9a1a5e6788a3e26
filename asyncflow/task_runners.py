"""Task runners: where task runs execute.

Examples:
    >>> from asyncflow import task
    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> with ThreadPoolTaskRunner(max_workers=4) as runner:
    ...     runner.submit(double, {"x": 2}).result()
    4

`Run` is the type of what a runner's `start_run` is handed (docs/writing-a-runner.md).

`WorkerTaskRunner` sends runs to task workers through a broker (docs/workers.md).

`DaskTaskRunner` (from `asyncflow.contrib.dask`, extra `asyncflow[dask]`) is also
importable from here; it is loaded on first access, so importing this module never
imports dask (and it is left out of `__all__`, so `import *` does not either).
"""

from typing import TYPE_CHECKING, Any

from ._core import Run
from ._public import publish
from ._runners._base import TaskRunner
from ._runners._process import ProcessPoolTaskRunner
from ._runners._thread import ThreadPoolTaskRunner

if TYPE_CHECKING:
    from ._taskworkers import WorkerTaskRunner as WorkerTaskRunner
    from .contrib.dask import DaskTaskRunner as DaskTaskRunner

__all__ = (
    "ProcessPoolTaskRunner",
    "Run",
    "TaskRunner",
    "ThreadPoolTaskRunner",
    "WorkerTaskRunner",
)

publish(__name__, __all__, globals())


def __getattr__(name: str) -> Any:
    if name == "WorkerTaskRunner":  # loaded on first use: it brings the broker's modules
        from ._taskworkers import WorkerTaskRunner

        publish(__name__, (name,), {name: WorkerTaskRunner})
        return WorkerTaskRunner
    if name == "DaskTaskRunner":
        from .contrib.dask import DaskTaskRunner

        return DaskTaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
