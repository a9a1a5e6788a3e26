"""Per-context and per-thread facts the engine needs: the run being executed, and
whether this thread is a pool worker that must be compensated when it blocks."""

from __future__ import annotations

import contextvars
import os
import threading
from typing import Any, Protocol

__all__ = (
    "BlockingAware",
    "current_run",
    "enter_blocking",
    "exit_blocking",
    "set_worker_pool",
    "sync_scope",
)

# The engine `Run` executing in this context (None outside task code).
current_run: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "asyncflow_current_run", default=None
)

# True inside a sync scope (a sync flow, `with runner:`), even on a thread whose event
# loop runs (a notebook): there, `wait(futures)` must block rather than return an
# awaitable that sync code would never await.
sync_scope: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asyncflow_sync_scope", default=False
)


class BlockingAware(Protocol):
    """A worker pool that lends out one more thread while one of its workers blocks."""

    def blocking_enter(self) -> None: ...
    def blocking_exit(self) -> None: ...


_tls = threading.local()


def _after_fork_in_child() -> None:
    global _tls
    _tls = threading.local()  # the parent's worker pools do not exist in a forked child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_worker_pool(pool: BlockingAware | None) -> None:
    """Called by a worker thread of `pool` at start, so blocking waits can compensate."""
    _tls.pool = pool


def enter_blocking() -> BlockingAware | None:
    """Announce that this thread is about to block on a future.

    On a bounded pool's worker this lets the pool start another thread, so a task
    that waits for its children cannot starve them (no nested-submission deadlock).
    """
    pool: BlockingAware | None = getattr(_tls, "pool", None)
    if pool is not None:
        pool.blocking_enter()
    return pool


def exit_blocking(pool: BlockingAware | None) -> None:
    if pool is not None:
        pool.blocking_exit()
