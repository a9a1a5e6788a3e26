"""Run asyncflow tasks on a Dask cluster (needs `pip install asyncflow[dask]`).

Examples:
    A temporary in-process cluster per flow run (pass `address=` or `cluster=` to
    use one that is already running):

    >>> from asyncflow import flow, task
    >>> from asyncflow.contrib.dask import DaskTaskRunner
    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> cluster = {"n_workers": 1, "processes": False, "dashboard_address": None}
    >>> @flow(task_runner=DaskTaskRunner(cluster_kwargs=cluster))
    ... def pipeline(xs: list[int]) -> list[int]:
    ...     return double.map(xs)
    >>> pipeline([1, 2, 3])
    [2, 4, 6]

Also importable as `asyncflow.task_runners.DaskTaskRunner` (loaded on first use, so
importing asyncflow never imports dask). See docs/runners.md.
"""

from .._public import publish
from .._runners._dask import DaskTaskRunner

__all__ = ("DaskTaskRunner",)

publish(__name__, __all__, globals())
