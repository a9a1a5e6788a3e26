"""Run state events: where run logging, metrics and tracing will hook in.

Every state change of a run goes through the engine's two transition functions; after
the lock is released they call `emit`, but only when a listener is registered, so an
unobserved run pays one truthiness check per transition. Listeners are called on the
thread that made the change, with the future and its new state; one that raises is
logged and the others still run. Not for per-task work: keep listeners cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ("Listener", "add_listener", "emit", "listeners", "remove_listener")

logger = logging.getLogger("asyncflow")

Listener = Callable[[Any, Any], object]  # (TaskFuture, State) -> ignored

# Read without a lock on the hot path (a list's truthiness is atomic); replaced, never
# mutated, so `emit` iterates a stable snapshot while listeners come and go.
listeners: tuple[Listener, ...] = ()


def add_listener(listener: Listener) -> None:
    """Call `listener(future, state)` after every state change of every run."""
    global listeners
    listeners = (*listeners, listener)


def remove_listener(listener: Listener) -> None:
    """Stop calling `listener` (ValueError if it was not added)."""
    global listeners
    items = list(listeners)
    items.remove(listener)
    listeners = tuple(items)


def emit(future: Any, state: Any) -> None:
    for listener in listeners:
        try:
            listener(future, state)
        except Exception:
            logger.exception("run event listener %r raised", listener)
