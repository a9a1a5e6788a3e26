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

import math
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from ._core import MAX_PENDING_RUNS
from ._public import publish

__all__ = ("Settings", "concurrency_limits", "get_settings")

THREAD_POOL_MAX_WORKERS = "ASYNCFLOW_TASK_RUNNER_THREAD_POOL_MAX_WORKERS"
PROCESS_POOL_MAX_WORKERS = "ASYNCFLOW_TASK_RUNNER_PROCESS_POOL_MAX_WORKERS"
HANDLE_SIGTERM = "ASYNCFLOW_HANDLE_SIGTERM"
CONCURRENCY_LIMITS = "ASYNCFLOW_CONCURRENCY_LIMITS"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Settings(NamedTuple):
    """A snapshot of asyncflow's settings (None: use the built-in default)."""

    thread_pool_max_workers: int | None = None
    process_pool_max_workers: int | None = None
    handle_sigterm: bool = True  # SIGTERM unwinds scripts like Ctrl-C (docs/policies.md)
    # Most runs per runner not final yet before `.submit()` waits (None: unbounded).
    max_pending_runs: int | None = None
    # Named limits for `asyncflow.concurrency`: name -> (limit, slot_decay_per_second).
    concurrency_limits: Mapping[str, tuple[int, float | None]] = MappingProxyType({})


def _positive_int(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0  # refused below, with the same message
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


def _limit_entry(entry: str) -> tuple[str, tuple[int, float | None]]:
    name, sep, spec = entry.partition("=")
    limit_text, colon, decay_text = spec.partition(":")
    try:
        if not sep or not name.strip():
            raise ValueError
        limit = int(limit_text)
        decay = float(decay_text) if colon else None
    except ValueError:
        raise ValueError(
            f"environment variable {CONCURRENCY_LIMITS}: {entry.strip()!r} is not "
            "name=limit or name=limit:slot_decay_per_second (e.g. 'database=2,api=10:0.5')"
        ) from None
    if limit < 1 or (decay is not None and not (math.isfinite(decay) and decay >= 0)):
        raise ValueError(
            f"environment variable {CONCURRENCY_LIMITS}: in {entry.strip()!r} the limit must "
            "be an integer >= 1 and slot_decay_per_second a finite number >= 0"
        )
    return name.strip(), (limit, decay or None)


def concurrency_limits() -> dict[str, tuple[int, float | None]]:
    """`ASYNCFLOW_CONCURRENCY_LIMITS`, e.g. `"database=2, api=10:0.5"`: a name, `=`, its
    number of slots, and optionally `:` and the slots freed per second (a rate limit)."""
    raw = os.environ.get(CONCURRENCY_LIMITS, "")
    return dict(_limit_entry(e) for e in raw.split(",") if e.strip())


def get_settings() -> Settings:
    """Read the environment now (not cached: runners call this when created)."""
    return Settings(
        thread_pool_max_workers=_positive_int(THREAD_POOL_MAX_WORKERS),
        process_pool_max_workers=_positive_int(PROCESS_POOL_MAX_WORKERS),
        handle_sigterm=_flag(HANDLE_SIGTERM, True),
        max_pending_runs=_positive_int(MAX_PENDING_RUNS),
        concurrency_limits=concurrency_limits(),
    )


publish(__name__, __all__, globals())
