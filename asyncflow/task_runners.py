"""Task runners: where task runs execute.

>>> with ThreadPoolTaskRunner(max_workers=4) as runner:    # doctest: +SKIP
...     runner.submit(double, {"x": 2}).result()

`Run` is the type of what a runner's `start_run` is handed (docs/writing-a-runner.md).

`WorkerTaskRunner` sends runs to task workers through a broker (docs/workers.md).

`DaskTaskRunner` (from `asyncflow.contrib.dask`, extra `asyncflow[dask]`) is also
importable from here; it is loaded on first access, so importing this module never
imports dask (and it is left out of `__all__`, so `import *` does not either).
"""

from typing import TYPE_CHECKING, Any

from ._core import Run
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


def __getattr__(name: str) -> Any:
    if name == "WorkerTaskRunner":  # loaded on first use: it brings the broker's modules
        from ._taskworkers import WorkerTaskRunner

        return WorkerTaskRunner
    if name == "DaskTaskRunner":
        from .contrib.dask import DaskTaskRunner

        return DaskTaskRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
