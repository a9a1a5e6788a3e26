"""SIGTERM handled like Ctrl-C in scripts, where asyncflow owns the signal.

Python's default for SIGTERM kills the interpreter at once: no `finally`, no
`atexit`, no future reaches a final state. While a runner scope is open (a flow, a
`with runner:` / `async with runner:` block) or the process-wide default runner
exists, asyncflow installs a handler that raises `Terminated` (a `SystemExit` with
code 143) in the main thread, as Python's SIGINT handler raises `KeyboardInterrupt`;
runners then take their Ctrl-C path (`TaskRunner._abandon`), and the process exits
with status 143 once cleanup and `atexit` are done.

asyncflow owns SIGTERM only if all hold when a scope opens:

* the scope opens in the main thread (only it may set handlers, and it is the one
  Python delivers handlers to);
* the current handler is `SIG_DFL` (a host that installed its own, such as uvicorn or
  gunicorn, or a script's own handler, is left alone);
* the caller's setting allows it (`ASYNCFLOW_HANDLE_SIGTERM=0` opts out; the core
  does not read settings itself: `claim` takes a callable that does).

Scopes nest: the handler is installed by the outermost claim and `SIG_DFL` restored by
its release, unless something else replaced our handler meanwhile. After the first
SIGTERM the disposition is back to `SIG_DFL`, so a second SIGTERM kills at once (as a
second Ctrl-C would). A forked child starts with `SIG_DFL` again: a process worker
killed with SIGTERM must die, not raise in the task it runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from ._exceptions import Terminated

__all__ = ("claim", "release", "terminating", "wait_interruptibly")

_depth = 0  # open claims (main thread only: no lock needed)
_terminating = False


def terminating() -> bool:
    """True once a SIGTERM handled by asyncflow has started unwinding the program."""
    return _terminating


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminating
    _terminating = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends us at once
    raise Terminated()


# The longest a Ctrl-C or SIGTERM handler waits while the main thread blocks (s).
SIGNAL_SLICE = 0.05


def wait_interruptibly(wait: Callable[[float | None], bool], timeout: float | None) -> bool:
    """`wait(timeout)` (an event's wait, a lock's acquire), such that a signal handler
    still runs soon when the main thread blocks with no timeout.

    The kernel may deliver a process-directed SIGINT or SIGTERM to any thread; Python
    then runs the handler only when the main thread next executes bytecode, which a
    wait never does until it ends: the script would hang in `.result()` or at a
    runner's exit instead of unwinding. In the main thread a wait is made of
    `SIGNAL_SLICE` s slices; other threads' waits are passed through unchanged.
    """
    if threading.current_thread() is not threading.main_thread() or (
        timeout is not None and timeout <= SIGNAL_SLICE
    ):
        return wait(timeout)
    if timeout is None:
        while not wait(SIGNAL_SLICE):
            pass
        return True
    deadline = time.monotonic() + timeout
    while not wait(min(SIGNAL_SLICE, max(deadline - time.monotonic(), 0.0))):
        if time.monotonic() >= deadline:
            return False
    return True


def claim(enabled: Callable[[], bool]) -> bool:
    """A scope that may own SIGTERM opens; True if it holds a claim (then `release`
    it when the scope closes). `enabled()` is asked only when the handler would be
    installed now."""
    global _depth
    if _terminating or threading.current_thread() is not threading.main_thread():
        return False
    if _depth == 0:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL or not enabled():
            return False
        signal.signal(signal.SIGTERM, _on_sigterm)
    _depth += 1
    return True


def release() -> None:
    """The scope of a successful `claim` closed; the last one restores `SIG_DFL`."""
    global _depth
    _depth -= 1
    if _depth == 0 and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _after_fork_in_child() -> None:
    global _depth, _terminating
    _depth, _terminating = 0, False
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # forked from a thread CPython does not treat as main: nothing set
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
