"""The parts of a run record that come from outside the core.

The engine's `Run` (in `_engine.py`) is everything the core needs to carry one
submission to its final state: the future it completes, the call it executes
(`CallSpec`), the task's `RunOptions` (built once per task, shared by all its runs),
the runner that owns it (`RunOwner`: where the call executes), the submitter's
context, and its attempts' bookkeeping, inherited from the sans-I/O attempt machine
(`_attempt.Attempts`). A runner sees a run through that record only: to execute the
call here it calls `run.call()`; to ship it to another process or machine it asks
`run.call.parts()` for the function and its resolved arguments.

This module holds the protocols and the options; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._engine import Run
    from ._policy import RetryPolicy, RunLimit
    from ._states import State

__all__ = ("NO_OPTIONS", "CallSpec", "RunOptions", "RunOwner")


class RunOptions:
    """A task's execution options, built once per task and shared by its runs.

    `retry` (None: no retries), `timeout` (seconds for the whole run, None: none),
    `limit` (the task's concurrency limit, None: none; a run whose tags have limits
    gets one of its own, see `_policy.RunLimit`), `on_final` (called with the
    final state and the run, e.g. the task's hooks; None: nothing to call),
    `on_running` (called with the Running state and the run as each attempt begins,
    on the thread that begins it; None: nothing to call).
    """

    __slots__ = ("limit", "on_final", "on_running", "retry", "timeout")

    def __init__(
        self,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        limit: RunLimit | None = None,
        on_final: Callable[[State, Run], object] | None = None,
        on_running: Callable[[State, Run], object] | None = None,
    ) -> None:
        self.retry = retry
        self.timeout = timeout
        self.limit = limit
        self.on_final = on_final
        self.on_running = on_running

    def __repr__(self) -> str:
        return (
            f"RunOptions(retry={self.retry!r}, timeout={self.timeout!r}, "
            f"limit={self.limit!r}, on_final={self.on_final!r})"
        )


NO_OPTIONS = RunOptions()


class CallSpec(Protocol):
    """The call a run executes (implemented by the task layer's `Call`).

    `call()` runs it here with resolved arguments: the value (sync) or a coroutine
    (async). `parts()` gives `(function, args, kwargs)`, arguments resolved, for a
    runner that executes the call elsewhere; `function` is the task's own function
    (a coroutine function for an async task), or with `by_name=True` a callable that
    pickles by name when the task is defined at module level (the other process
    imports its module); `stand_in(upstream_future)` may replace an upstream future
    among the parameters by something else than its value (None: its value). `task`
    is the task object itself (a runner may cache per task).
    """

    is_async: bool
    task: Any

    def __call__(self) -> Any: ...

    def parts(
        self, by_name: bool = False, stand_in: Callable[[Any], Any] | None = None
    ) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]: ...


class RunOwner(Protocol):
    """What the engine needs from a task runner."""

    def start_run(self, run: Run) -> None:
        """Begin executing `run` (all its upstreams are final and acceptable)."""

    def release_run(self, run: Run) -> None:
        """`run` reached a final state; drop any bookkeeping for it."""

    def withdraw(self, run: Run) -> None:
        """`run` has not started here and is about to be stopped: make sure it never
        starts. A runner that hands runs to a remote queue asks the queue; if a worker
        took the run before the stop arrived, it reports the run Running
        (`run.report_remote`) before returning, and the stop treats it as executing."""

    def can_stop(self, run: Run) -> bool:
        """Can the runner interrupt `run`'s executing attempt (kill its worker, cancel
        it remotely)? Asked before a cancel or a deadline is decided; no side effect."""
        ...

    def stop_running(self, run: Run) -> None:
        """Interrupt `run`'s executing attempt; its outcome is reported afterwards as
        usual (any outcome: the attempt machine turns it into the stop's result)."""
