"""The background engine loop: one per process, for sync callers' async work.

Sync code (a sync flow, a script, a worker thread) cannot run coroutines itself, so
async task runs it submits go to this loop, running in a daemon thread named
"asyncflow-portal". uvloop is used when installed. Callers never block on the loop's
own thread: they hand work over with `call_soon_threadsafe` and block on futures.

anyio's `BlockingPortal` does the same job per *call* (a task and a
`concurrent.futures.Future` each); the engine needs the raw loop to schedule one
callback per task run, so this module keeps only the thread and loop lifecycle.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ("get_loop", "run_sync", "stop")

T = TypeVar("T")
THREAD_NAME = "asyncflow-portal"
NO_UVLOOP = "ASYNCFLOW_NO_UVLOOP"
logger = logging.getLogger("asyncflow")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def _new_loop() -> asyncio.AbstractEventLoop:
    # Which loop the engine got is logged at DEBUG: a slower asyncio loop is a
    # question users ask, and the answer should be one `logging.DEBUG` away.
    if os.environ.get(NO_UVLOOP, "") not in ("", "0"):
        logger.debug("engine loop: asyncio (uvloop disabled by %s)", NO_UVLOOP)
        return asyncio.new_event_loop()
    try:
        import uvloop  # optional: imported only when the portal starts
    except ImportError as exc:
        logger.debug("engine loop: asyncio (uvloop is not installed: %s)", exc)
        return asyncio.new_event_loop()
    logger.debug("engine loop: uvloop %s", getattr(uvloop, "__version__", ""))
    return uvloop.new_event_loop()


def get_loop() -> asyncio.AbstractEventLoop:
    """The engine loop, started on first use."""
    loop = _loop
    if loop is not None:
        return loop
    with _lock:
        if _loop is None:
            _start()
        assert _loop is not None
        return _loop


def _start() -> None:
    global _loop, _thread
    loop = _new_loop()
    ready = threading.Event()
    thread = threading.Thread(target=_serve, args=(loop, ready), name=THREAD_NAME, daemon=True)
    thread.start()
    ready.wait()
    _loop, _thread = loop, thread


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the engine loop and block this (non-loop) thread for it."""
    return asyncio.run_coroutine_threadsafe(coro, get_loop()).result()


def stop() -> None:
    """Stop the engine loop (at interpreter exit, after the default runner drained)."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is not None and thread is not None:
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()


def _after_fork_in_child() -> None:
    # The loop thread does not exist in a forked child; start afresh on first use.
    global _loop, _thread, _lock
    _loop = _thread = None
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
