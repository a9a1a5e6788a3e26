"""Execution policies of a run: retries (delays, jitter, condition), timeout, limits,
and state hooks. Pure data plus decisions; the engine applies them the same way to
thread, loop and process runs.

    >>> p = RetryPolicy(retries=3, delay=[1, 2, 4], jitter=0.0)
    >>> [p.delay_for(a) for a in (1, 2, 3)]
    [1.0, 2.0, 4.0]
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import _validate
from ._context import current_run, sync_scope
from ._exceptions import WouldDeadlock

if TYPE_CHECKING:
    import random

__all__ = ("ConcurrencyLimit", "PendingLimit", "RetryPolicy", "RunLimit", "validate_delay")

logger = logging.getLogger("asyncflow")

# A callable is `f(attempt) -> seconds`, or Prefect's `f(retries) -> [seconds per retry]`.
Delay = float | Sequence[float] | Callable[[int], float] | Callable[[int], Sequence[float]]


def validate_delay(value: Any) -> Delay:
    """`retry_delay_seconds`: a delay, a non-empty list of delays (one per attempt), or a
    callable of the attempt number (whose result `RetryPolicy.delay_for` checks)."""
    if callable(value):
        return value  # type: ignore[no-any-return]  # a Callable[[int], float] by contract
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("retry_delay_seconds must not be an empty list")
        return [_validate.delay("retry_delay_seconds[]", v) for v in value]
    return _validate.delay("retry_delay_seconds", value)


class RetryPolicy:
    """When to retry a failed attempt, and how long to wait first.

    `condition(exc)` says whether to retry after `exc` (with `condition_wants_run`:
    `condition(exc, run)`, the run being judged, for conditions that describe it). A
    condition that raises is a bug in it, not in the task: the run is not retried, it
    fails with the task's own error, and the condition's error is logged (naming the
    task) and added to that error as a note, so retries never stop silently.
    """

    __slots__ = ("condition", "condition_wants_run", "delay", "jitter", "retries")

    def __init__(
        self,
        retries: int,
        delay: Delay = 0.0,
        jitter: float | None = None,
        condition: Callable[..., bool] | None = None,
        condition_wants_run: bool = False,
    ) -> None:
        self.retries = retries
        self.delay = delay
        self.jitter = jitter
        self.condition = condition
        self.condition_wants_run = condition_wants_run

    def should_retry(self, exc: BaseException, attempt: int, run: Any = None) -> bool:
        if attempt > self.retries or not isinstance(exc, Exception):
            return False
        if self.condition is None:
            return True
        try:
            if self.condition_wants_run:
                return bool(self.condition(exc, run))
            return bool(self.condition(exc))
        except Exception as broken:
            name = getattr(run, "name", "?")
            logger.exception(
                "retry_condition_fn of task %r raised; the run is not retried and fails "
                "with its own error",
                name,
            )
            if sys.version_info >= (3, 11):  # the traceback shows why it was not retried
                exc.add_note(
                    f"not retried: retry_condition_fn of task {name!r} raised "
                    f"{type(broken).__name__}: {broken}"
                )
            return False

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        delay = self.delay
        if callable(delay):
            base = _called_delay(delay, attempt, self.retries)
        elif isinstance(delay, (int, float)):
            base = float(delay)
        else:
            base = float(delay[min(attempt, len(delay)) - 1])
        if self.jitter:
            # Uniform in [base * (1 - j), base * (1 + j)]: spreads a thundering herd
            # while keeping the average delay what the user asked for.
            spread = base * self.jitter
            if rng is None:
                import random  # only jittered retries pay for this import

                rng = random.Random()
            base += rng.uniform(-spread, spread)
        return max(0.0, base)


def _called_delay(delay: Callable[[int], Any], attempt: int, retries: int) -> float:
    """What a `retry_delay_seconds` callable asks for; a broken one is logged, and the
    retry happens at once (raising here would leave the run without a final state).

    Two forms: asyncflow's `f(attempt) -> seconds`, and Prefect's `f(retries) ->
    [seconds per retry]` (what `exponential_backoff` returns), told apart by the result:
    a list is Prefect's form, so the delay is item `attempt` of `f(retries)`.
    """
    try:
        asked = delay(attempt)
        if isinstance(asked, (list, tuple)):
            delays = delay(retries)
            asked = delays[min(attempt, len(delays)) - 1]
        return _validate.delay("retry_delay_seconds", asked)
    except Exception:
        logger.exception("retry_delay_seconds(%d) failed; retrying without a delay", attempt)
        return 0.0


class RunLimit(Protocol):
    """What the engine asks of a run's limit (`RunOptions.limit`), when the run is
    ready (`acquire_or_park`) and when it is final holding its slot (`release`).

    `acquire_or_park(run)`: True if the run may start now (it holds its slot); else
    the run is parked, Pending, and gets its slot later: either `release()` of another
    run returns it (the engine starts it), or the limit calls the engine's `admit`
    itself (a limit whose slots are granted by another party, from any thread).
    `release()`: free the slot; returns a parked run that now holds it, or None. The
    engine calls it again while the run it returned turns out to be final already.
    """

    def acquire_or_park(self, run: Any, /) -> bool: ...

    def release(self) -> Any | None: ...


class ConcurrencyLimit:
    """At most `limit` runs at once, across threads, loops and processes of the parent.

    Runs that cannot start are parked in FIFO order and started as slots free up.
    """

    __slots__ = ("_active", "_lock", "_parked", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        self._lock = threading.Lock()
        self._parked: collections.deque[Any] = collections.deque()

    def acquire_or_park(self, item: Any) -> bool:
        """True if `item` may start now; else it is parked until `release` hands it out."""
        with self._lock:
            if self._active < self.limit:
                self._active += 1
                return True
            self._parked.append(item)
            return False

    def release(self) -> Any | None:
        """Free a slot; returns a parked item that now holds it (the caller starts it)."""
        with self._lock:
            if self._parked:
                return self._parked.popleft()  # the slot passes straight to it
            self._active -= 1
            return None


MAX_PENDING_RUNS = "ASYNCFLOW_MAX_PENDING_RUNS"


class PendingLimit:
    """Backpressure for `.submit()` in a loop: at most `limit` runs of one runner that
    are not final yet. A submission over the bound waits, in its thread, until a run
    finishes (docs/policies.md "Backpressure").

    Two kinds of submitter may not wait. A task run submitting children does not take
    a slot: the pending runs it would wait for include itself and its ancestors, so it
    could wait for ever. An event-loop thread gets `WouldDeadlock` instead of blocking
    its loop, which may be the one that must run the pending runs.
    """

    __slots__ = ("_room", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._room = threading.Semaphore(limit)

    def acquire(self, task_name: str) -> bool:
        """Take a slot for a new run of `task_name` (waiting if need be); False if this
        submission is exempt (nested) and takes none."""
        if current_run.get() is not None:
            return False
        if self._room.acquire(blocking=False):
            return True
        if asyncio._get_running_loop() is not None and not sync_scope.get():
            raise WouldDeadlock(
                f"cannot submit task {task_name!r}: this runner already has "
                f"{self.limit} runs not finished ({MAX_PENDING_RUNS}={self.limit}), and "
                "waiting for one on an event loop's thread could deadlock; await some of "
                f"the futures you hold first, or stream the inputs with "
                f"`{task_name}.map_iter(...)`, which keeps a bounded window of runs"
            )
        self._room.acquire()
        return True

    def release(self, _fut: object = None) -> None:
        """A run that holds a slot is final (a done callback)."""
        self._room.release()
