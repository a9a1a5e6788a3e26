"""Every error asyncflow raises. Public through `asyncflow.exceptions` (its `__all__`
names them; `ExitInWorker` and `Terminated` are private).

Each class says what went wrong and, in its message, what to do. Where Python users
expect a builtin type (`ValueError` for bad input, `TimeoutError` for timeouts,
`RuntimeError` for a call in the wrong place), the class also derives from it, so
`except ValueError` keeps working.
"""

from __future__ import annotations


class AsyncflowError(Exception):
    """Base class of every error defined by asyncflow."""


class UpstreamFailed(AsyncflowError):
    """A task did not run because a task it depends on did not complete.

    `__cause__` is the upstream's own exception. Wrap the argument in
    `allow_failure(future)` to run the downstream anyway.
    """


class MappingLengthMismatch(AsyncflowError, ValueError):
    """`.map()` got iterables of different lengths."""


class MappingMissingIterable(AsyncflowError, ValueError):
    """`.map()` got no iterable argument to map over."""


class TaskTimeout(AsyncflowError, TimeoutError):
    """A task run exceeded its `timeout_seconds` (state name "TimedOut")."""


class TaskCancelled(AsyncflowError):
    """The task run was cancelled before it could produce a result."""


class TaskCrashed(AsyncflowError):
    """The task run ended abnormally outside its own code (e.g. its worker died)."""


class TaskFailed(AsyncflowError):
    """The run ended FAILED with no exception of its own: its task or flow returned
    `asyncflow.states.Failed(message=...)` without an exception as `data` (Prefect's
    `FailedRun`). The message is the state's; return `Failed(data=exc)` to have
    `.result()` raise `exc` itself."""


class MissingResult(AsyncflowError, LookupError):
    """`State.result()` was asked of a state that carries no outcome: one that is not
    final, or a run's own state (`future.state`), whose value lives in its future
    (`future.result()`); a call with `return_state=True` returns a state that has it."""


class TaskExited(AsyncflowError):
    """The task's own code called `sys.exit()` (or raised `SystemExit`).

    That is the task failing, not the program exiting: the run ends FAILED (and is
    retried like any failure), and this error, not `SystemExit`, reaches whoever looks
    at its result. `code` is the exit code the task passed; `__cause__` is the
    `SystemExit` itself. To stop the whole program from a task, let it return a value
    the caller acts on.
    """

    def __init__(self, message: str, code: object = None) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[type[TaskExited], tuple[str, object]]:
        return (type(self), (str(self), self.code))


class ExitInWorker(Exception):
    """Private: carries a `sys.exit()` made by a task on an engine that would let a
    `SystemExit` kill its worker (Dask), back to the client, where `task_error` turns
    it into `TaskExited` like any other `SystemExit` raised by task code."""

    def __init__(self, code: object = None) -> None:
        super().__init__(code)
        self.code = code


class Terminated(SystemExit):
    """Private (not in `asyncflow.exceptions`: a `SystemExit` cannot also be an
    `AsyncflowError`; catch `SystemExit`). Raised in the main thread of a script when
    the process receives SIGTERM while asyncflow owns that signal (docs/policies.md).

    Like `KeyboardInterrupt` on Ctrl-C, it unwinds the script: `finally` blocks and
    `atexit` handlers run, runners end their runs Cancelled, and the interpreter exits
    with status 143 (128 + SIGTERM, what a shell reports for a terminated process).
    """

    def __init__(self, code: int = 143) -> None:
        super().__init__(code)

    def __str__(self) -> str:
        return f"terminated by SIGTERM (exit status {self.code})"


class CircularDependency(AsyncflowError, ValueError):
    """A task run would wait, directly or not, on its own completion."""


class RunnerNotStarted(AsyncflowError, RuntimeError):
    """Work was submitted to a task runner that is not started (use `with runner:`)."""


class WouldDeadlock(AsyncflowError, RuntimeError):
    """A blocking call was made on the event loop that must complete the awaited work."""


class SerializationError(AsyncflowError, TypeError):
    """A task's argument or result could not be pickled to cross to or from a worker
    process. The message names the task and the value's type; define the value at
    module level, or convert it to plain data before passing it."""


class RemoteError(AsyncflowError):
    """Stands in for an exception raised in a worker process that could not itself be
    pickled back. Carries the original's type name, message and traceback text."""

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.traceback))
