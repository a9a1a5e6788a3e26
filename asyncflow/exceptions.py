"""Every error asyncflow raises (a task's own exceptions are re-raised unchanged)."""

from ._concurrency._errors import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from ._core import (
    AsyncflowError,
    CircularDependency,
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
from ._public import publish
from ._validation import ParameterTypeError

__all__ = (
    "AcquireConcurrencySlotTimeoutError",
    "AsyncflowError",
    "CircularDependency",
    "ConcurrencySlotAcquisitionError",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "MissingResult",
    "ParameterTypeError",
    "RemoteError",
    "RunnerNotStarted",
    "SerializationError",
    "TaskCancelled",
    "TaskCrashed",
    "TaskExited",
    "TaskFailed",
    "TaskTimeout",
    "UpstreamFailed",
    "WouldDeadlock",
)

publish(__name__, __all__, globals())
