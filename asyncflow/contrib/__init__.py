"""Integrations with optional engines, each imported only when used.

- `asyncflow.contrib.dask`: `DaskTaskRunner` (needs `pip install asyncflow[dask]`).
"""

__all__ = ()
