"""Run asyncflow tasks on a Dask cluster (needs `pip install asyncflow[dask]`).

    >>> from asyncflow import flow, task                          # doctest: +SKIP
    >>> from asyncflow.contrib.dask import DaskTaskRunner
    >>> @flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 4}))
    ... def pipeline(xs): return double.map(xs)

Also importable as `asyncflow.task_runners.DaskTaskRunner` (loaded on first use, so
importing asyncflow never imports dask). See docs/runners.md.
"""

from .._public import publish
from .._runners._dask import DaskTaskRunner

__all__ = ("DaskTaskRunner",)

publish(__name__, __all__, globals())
