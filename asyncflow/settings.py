"""Settings from `ASYNCFLOW_*` environment variables, read when a runner is created.

>>> import os
>>> os.environ["ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"] = "8"
>>> get_settings().thread_pool_max_workers
8
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ._core._policy import MAX_PENDING_RUNS

__all__ = ("Settings", "get_settings")

THREAD_POOL_MAX_WORKERS = "ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"
PROCESS_POOL_MAX_WORKERS = "ASYNCFLOW_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS"


class Settings(NamedTuple):
    """A snapshot of asyncflow's settings (None: use the built-in default)."""

    thread_pool_max_workers: int | None = None
    process_pool_max_workers: int | None = None
    # Most runs per runner not final yet before `.submit()` waits (None: unbounded).
    max_pending_runs: int | None = None


def _positive_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name} must be a positive integer, got {raw!r}"
        ) from None
    if value < 1:
        raise ValueError(f"environment variable {name} must be a positive integer, got {raw!r}")
    return value


def get_settings() -> Settings:
    """Read the environment now (not cached: runners call this when created)."""
    return Settings(
        thread_pool_max_workers=_positive_int(THREAD_POOL_MAX_WORKERS),
        process_pool_max_workers=_positive_int(PROCESS_POOL_MAX_WORKERS),
        max_pending_runs=_positive_int(MAX_PENDING_RUNS),
    )
