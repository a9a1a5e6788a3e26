"""asyncflow's engine core. Self-contained: imports nothing from the rest of asyncflow.

Modules: `_resolver` (sans-I/O dependency graph), `_attempt` (sans-I/O life of a run),
`_future` (the dual future), `_engine` (drives both, executes runs), `_workers` (the
thread pool), `_portal` (the background loop for sync callers), `_signals`, `_states`,
`_exceptions`, `_validate`, `_policy`, `_waiting`, `_events`, `_generators`,
`_alarm` (interrupting a timed-out sync call in the main thread).

The rest of asyncflow imports the core through this package only, and only the names
in `__all__` (`tests/test_core_exports.py` checks it): this list is the core's API.
Names that would be ambiguous out of their module get a prefix here (`check_*` for
the validators, `*_sigterm` for the signal claim, `*_engine_loop` for the portal).
"""

from ._alarm import DeadlineAlarm
from ._attempt import Attempts, CancelReason, Retry, ReturnedState
from ._attempt import ending_of as ending_of_returned_state
from ._context import current_run, enter_blocking, exit_blocking, sync_scope
from ._engine import (
    Run,
    begin_many,
    cancelled,
    check_cancelled,
    complete,
    crashed,
    execute_async,
    execute_sync,
    start_on_loop,
    stop_runs,
    upstream_failed,
)
from ._engine import admit as admit_parked_run
from ._engine import release_limit as release_limit_slot
from ._engine import submit as submit_run
from ._exceptions import (
    AsyncflowError,
    CircularDependency,
    ExitInWorker,
    MappingLengthMismatch,
    MappingMissingIterable,
    MissingResult,
    RemoteError,
    RunnerNotStarted,
    SerializationError,
    TaskCancelled,
    TaskCrashed,
    TaskExited,
    TaskFailed,
    TaskTimeout,
    UpstreamFailed,
    WouldDeadlock,
)
from ._future import (
    Deferred,
    FutureList,
    Suspend,
    TaskFuture,
    block_until_final,
    check_can_block,
    check_not_self,
    error_of,
    has_dependents,
    is_deferred,
    load_deferred,
    outcome,
    running_loop,
    state_of,
    was_observed,
)
from ._generators import awaitable_result, consume_generator
from ._policy import (
    MAX_PENDING_RUNS,
    ConcurrencyLimit,
    PendingLimit,
    RetryPolicy,
    RunLimit,
    validate_delay,
)
from ._portal import get_loop as engine_loop
from ._portal import stop as stop_engine_loop
from ._run import NO_OPTIONS, RunOptions
from ._signals import claim as claim_sigterm
from ._signals import release as release_sigterm
from ._signals import terminating
from ._states import State, StateType
from ._states import with_data as state_with_data
from ._validate import count as check_count
from ._validate import factor as check_factor
from ._validate import timeout as check_timeout
from ._waiting import DoneAndNotDone, as_completed, drain, drain_async, wait
from ._workers import WorkerPool

__all__ = (
    "MAX_PENDING_RUNS",
    "NO_OPTIONS",
    "AsyncflowError",
    "Attempts",
    "CancelReason",
    "CircularDependency",
    "ConcurrencyLimit",
    "DeadlineAlarm",
    "Deferred",
    "DoneAndNotDone",
    "ExitInWorker",
    "FutureList",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "MissingResult",
    "PendingLimit",
    "RemoteError",
    "Retry",
    "RetryPolicy",
    "ReturnedState",
    "Run",
    "RunLimit",
    "RunOptions",
    "RunnerNotStarted",
    "SerializationError",
    "State",
    "StateType",
    "Suspend",
    "TaskCancelled",
    "TaskCrashed",
    "TaskExited",
    "TaskFailed",
    "TaskFuture",
    "TaskTimeout",
    "UpstreamFailed",
    "WorkerPool",
    "WouldDeadlock",
    "admit_parked_run",
    "as_completed",
    "awaitable_result",
    "begin_many",
    "block_until_final",
    "cancelled",
    "check_can_block",
    "check_cancelled",
    "check_count",
    "check_factor",
    "check_not_self",
    "check_timeout",
    "claim_sigterm",
    "complete",
    "consume_generator",
    "crashed",
    "current_run",
    "drain",
    "drain_async",
    "ending_of_returned_state",
    "engine_loop",
    "enter_blocking",
    "error_of",
    "execute_async",
    "execute_sync",
    "exit_blocking",
    "has_dependents",
    "is_deferred",
    "load_deferred",
    "outcome",
    "release_limit_slot",
    "release_sigterm",
    "running_loop",
    "start_on_loop",
    "state_of",
    "state_with_data",
    "stop_engine_loop",
    "stop_runs",
    "submit_run",
    "sync_scope",
    "terminating",
    "upstream_failed",
    "validate_delay",
    "wait",
    "was_observed",
)
