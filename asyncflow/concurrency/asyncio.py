"""Named limits for async code (Prefect's `prefect.concurrency.asyncio`): `async with
concurrency("database", occupy=1):` and `await rate_limit("api")`. They share their
limits with `asyncflow.concurrency.sync`. See `asyncflow.concurrency`.
"""

from .._concurrency._asyncio import concurrency, rate_limit
from .._concurrency._errors import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
)
from .._public import publish

__all__ = (
    "AcquireConcurrencySlotTimeoutError",
    "ConcurrencySlotAcquisitionError",
    "concurrency",
    "rate_limit",
)

publish(__name__, __all__, globals())
