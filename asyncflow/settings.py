"""Settings from `ASYNCFLOW_*` environment variables, read when a runner is created.

Examples:
    >>> import os
    >>> os.environ["ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"] = "8"
    >>> get_settings().thread_pool_max_workers
    8
    >>> del os.environ["ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"]
    >>> get_settings().thread_pool_max_workers is None      # the built-in default
    True
"""

from __future__ import annotations

import os
from typing import NamedTuple

from ._core import MAX_PENDING_RUNS
from ._public import publish

__all__ = ("Settings", "get_settings")

THREAD_POOL_MAX_WORKERS = "ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"
PROCESS_POOL_MAX_WORKERS = "ASYNCFLOW_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS"
HANDLE_SIGTERM = "ASYNCFLOW_HANDLE_SIGTERM"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Settings(NamedTuple):
    """A snapshot of asyncflow's settings (None: use the built-in default)."""

    thread_pool_max_workers: int | None = None
    process_pool_max_workers: int | None = None
    handle_sigterm: bool = True  # SIGTERM unwinds scripts like Ctrl-C (docs/policies.md)
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


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE or raw in _FALSE:
        return raw in _TRUE
    raise ValueError(f"environment variable {name} must be 1 or 0 (true/false), got {raw!r}")


def get_settings() -> Settings:
    """Read the environment now (not cached: runners call this when created)."""
    return Settings(
        thread_pool_max_workers=_positive_int(THREAD_POOL_MAX_WORKERS),
        process_pool_max_workers=_positive_int(PROCESS_POOL_MAX_WORKERS),
        handle_sigterm=_flag(HANDLE_SIGTERM, True),
        max_pending_runs=_positive_int(MAX_PENDING_RUNS),
    )


publish(__name__, __all__, globals())
