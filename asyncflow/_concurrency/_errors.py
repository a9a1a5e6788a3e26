"""The errors of named limits (public through `asyncflow.exceptions` and
`asyncflow.concurrency`), with Prefect's names."""

from __future__ import annotations

from .._core import AsyncflowError

__all__ = ("AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError")


class ConcurrencySlotAcquisitionError(AsyncflowError):
    """Slots could not be acquired: the limit does not exist and `strict=True` was
    given, or `rate_limit` was asked of a limit without `slot_decay_per_second`."""


class AcquireConcurrencySlotTimeoutError(AsyncflowError, TimeoutError):
    """The slots were not acquired within `timeout_seconds` (a `TimeoutError`)."""
