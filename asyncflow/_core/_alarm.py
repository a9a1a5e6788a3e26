"""Interrupting a sync direct call at its deadline, where Python allows it.

A thread cannot be interrupted in Python, so a timed-out sync run in a pool thread is
abandoned: its run ends `TimedOut` at the deadline and the body goes on to its end
(docs/policies.md "Timeouts"). The main thread can be interrupted, by a signal: a
sync task called directly there (`slow()` in a script) with `timeout_seconds` gets a
real-time timer (`setitimer(ITIMER_REAL)`) whose SIGALRM handler raises `TaskTimeout`
inside the body, as Prefect interrupts it.

The rule for using SIGALRM: only in the main thread, only where the platform has
`setitimer`, and only when nobody has claimed the signal: its handler is the default
one and no real-time timer runs (a user's alarm, or an enclosing timed call, which
keeps the signal: an inner timed call then just runs to its end). On exit the timer
is stopped and the default handler put back.

The engine stays the judge of the timeout: its deadline timer (on the engine loop)
ends the run `TimedOut`; the handler only interrupts the body, once that happened
(`run.cancel_reason`, read without the lock: the signal may arrive while this thread
holds it). Until then, and while the thread is in asyncflow's own code (not the
task's: say, completing the run, or waiting on a future), it re-arms itself a few
milliseconds later instead of raising. It raises once; a body that catches it goes on.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from ._attempt import CancelReason, Phase
from ._exceptions import TaskTimeout

if TYPE_CHECKING:
    from ._engine import Run

__all__ = ("DeadlineAlarm",)

_RETRY_SECONDS = 0.005  # how soon to look again when the body cannot be interrupted yet
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # asyncflow/


def _signal_is_free() -> bool:
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        return False
    return signal.getsignal(signal.SIGALRM) is signal.SIG_DFL and signal.getitimer(
        signal.ITIMER_REAL
    ) == (0.0, 0.0)


class DeadlineAlarm:
    """`with DeadlineAlarm(run):` around a sync run executing in this thread: its body
    is interrupted at the run's deadline when the rule above allows; else nothing."""

    __slots__ = ("_armed", "_raised", "_run")

    def __init__(self, run: Run) -> None:
        self._run = run
        self._armed = False
        self._raised = False

    def __enter__(self) -> DeadlineAlarm:
        timeout = self._run.timeout
        if timeout is not None and timeout > 0 and _signal_is_free():
            signal.signal(signal.SIGALRM, self._on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            self._armed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            self._armed = False

    def _on_alarm(self, _signum: int, frame: FrameType | None) -> None:
        run = self._run
        if self._raised or not self._armed:
            return
        timed_out = run.cancel_reason is CancelReason.TIMED_OUT
        if timed_out and not (frame is not None and frame.f_code.co_filename.startswith(_PACKAGE)):
            self._raised = True
            raise TaskTimeout(f"task {run.name!r} exceeded its timeout of {run.timeout} s")
        if timed_out or (run.cancel_reason is None and run.phase is not Phase.FINAL):
            signal.setitimer(signal.ITIMER_REAL, _RETRY_SECONDS)  # look again shortly
